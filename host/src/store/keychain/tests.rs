//! The keychain store through its seam: a `security` (and `id`) that keeps items in memory and
//! records every command line, checked against the lines the `claude` CLI 2.1.332's own code
//! makes (`testdata/cli-2.1.332.json`, produced by `testdata/cli-2.1.332.mjs`).

use std::collections::HashMap;
use std::ffi::OsString;
use std::sync::Mutex;

use serde_json::Value;

use super::command::{ascii_json, quoted};
use super::*;

/// One command run: the program, its arguments, its stdin.
type Call = (String, Vec<String>, Option<String>);

/// A `security` that keeps items in memory (by account and service) and records every call;
/// `id -un` answers `os_user`.
#[derive(Default)]
struct FakeSecurity {
    items: Mutex<HashMap<(String, String), String>>,
    calls: Mutex<Vec<Call>>,
    os_user: Option<String>,
    /// Exit status every `security` call answers instead (a broken or locked keychain).
    failing: Option<i32>,
    /// Exit status every write answers instead.
    refusing_writes: Option<i32>,
}

impl FakeSecurity {
    fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    fn item(&self, account: &str, service: &str) -> Option<String> {
        self.items
            .lock()
            .unwrap()
            .get(&(account.to_owned(), service.to_owned()))
            .cloned()
    }

    fn put(&self, account: &str, service: &str, text: &str) {
        self.items
            .lock()
            .unwrap()
            .insert((account.to_owned(), service.to_owned()), text.to_owned());
    }

    /// `add-generic-password -U -a A -s S -X HEX`, as arguments (after the shell-like split of
    /// `security -i`'s line, or from the command line).
    fn add(&self, args: &[String]) -> CommandOutput {
        let [verb, update, a, account, s, service, x, hex] = args else {
            panic!("unexpected add-generic-password {args:?}");
        };
        assert_eq!(
            (
                verb.as_str(),
                update.as_str(),
                a.as_str(),
                s.as_str(),
                x.as_str()
            ),
            ("add-generic-password", "-U", "-a", "-s", "-X")
        );
        if let Some(status) = self.refusing_writes {
            return exit(
                status,
                "security: SecKeychainItemCreateFromContent: refused",
            );
        }
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        self.put(account, service, &String::from_utf8(bytes).unwrap());
        exit(0, "")
    }
}

fn exit(status: i32, stderr: &str) -> CommandOutput {
    CommandOutput {
        status: Some(status),
        stdout: Vec::new(),
        stderr: stderr.as_bytes().to_vec(),
    }
}

/// `security -i`'s split of one input line: words, double quotes grouping (no escapes in
/// what the CLI writes).
fn split_line(line: &str) -> Vec<String> {
    let line = line
        .strip_suffix('\n')
        .expect("one line, newline-terminated");
    assert!(!line.contains('\n'), "one command per write");
    let mut words = Vec::new();
    let (mut word, mut quoted, mut any) = (String::new(), false, false);
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            ' ' if !quoted => {
                if any {
                    words.push(std::mem::take(&mut word));
                    any = false;
                }
            }
            c => {
                word.push(c);
                any = true;
            }
        }
    }
    if any {
        words.push(word);
    }
    words
}

impl CommandRunner for Arc<FakeSecurity> {
    fn run(&self, program: &str, args: &[&str], stdin: Option<&[u8]>) -> io::Result<CommandOutput> {
        let stdin = stdin.map(|s| String::from_utf8(s.to_vec()).unwrap());
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        self.calls
            .lock()
            .unwrap()
            .push((program.to_owned(), args.clone(), stdin.clone()));
        if program == "/usr/bin/id" {
            assert_eq!(args, ["-un"]);
            return Ok(match &self.os_user {
                Some(user) => CommandOutput {
                    status: Some(0),
                    stdout: format!("{user}\n").into_bytes(),
                    stderr: Vec::new(),
                },
                None => exit(1, "id: cannot find name for user ID 501"),
            });
        }
        assert_eq!(program, "/usr/bin/security");
        if let Some(status) = self.failing {
            return Ok(exit(
                status,
                "security: SecKeychainSearchCopyNext: User interaction is not allowed.",
            ));
        }
        let words: Vec<&str> = args.iter().map(String::as_str).collect();
        Ok(match words.as_slice() {
            ["find-generic-password", "-a", account, "-w", "-s", service] => {
                match self.item(account, service) {
                    Some(item) => CommandOutput {
                        status: Some(0),
                        stdout: format!("{item}\n").into_bytes(),
                        stderr: Vec::new(),
                    },
                    None => exit(
                        ITEM_NOT_FOUND,
                        "security: SecKeychainSearchCopyNext: The specified item could not be found in the keychain.",
                    ),
                }
            }
            ["delete-generic-password", "-a", account, "-s", service] => {
                let removed = self
                    .items
                    .lock()
                    .unwrap()
                    .remove(&((*account).to_owned(), (*service).to_owned()));
                exit(if removed.is_some() { 0 } else { ITEM_NOT_FOUND }, "")
            }
            ["-i"] => self.add(&split_line(stdin.as_deref().expect("a line on stdin"))),
            ["add-generic-password", ..] => self.add(&args),
            other => panic!("unexpected security call {other:?}"),
        })
    }
}

fn store(fake: &Arc<FakeSecurity>, dir: &std::path::Path) -> KeychainCredentialStore {
    KeychainCredentialStore::with_runner(KEYCHAIN_SERVICE, "ada", dir, fake.clone())
}

/// One case of `testdata/cli-2.1.332.json`.
struct Case {
    name: String,
    env: HashMap<String, String>,
    os_user: Option<String>,
    document: String,
    expected: Value,
}

fn cases() -> Vec<Case> {
    let all: Value = serde_json::from_str(include_str!("testdata/cli-2.1.332.json")).unwrap();
    all.as_array()
        .unwrap()
        .iter()
        .map(|case| Case {
            name: case["name"].as_str().unwrap().to_owned(),
            env: case["env"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
                .collect(),
            os_user: case["osUser"].as_str().map(str::to_owned),
            document: case["document"].as_str().unwrap().to_owned(),
            expected: case["expected"].clone(),
        })
        .collect()
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

/// Ours, in each environment the CLI's code was run in, names the item as the CLI does, reads
/// it with the CLI's command line, and writes each document with the CLI's exact command: the
/// same `security -i` line, or — over 4032 characters — the same arguments.
#[tokio::test]
async fn the_command_lines_are_the_clis() {
    let cases = cases();
    assert!(cases.len() >= 12);
    for case in cases {
        let dir = tempfile::tempdir().unwrap();
        let mut env = case.env.clone();
        // Home is this test's; the service name comes from the variables the case set.
        env.insert("HOME".into(), dir.path().display().to_string());
        let fake = Arc::new(FakeSecurity {
            os_user: case.os_user.clone(),
            ..FakeSecurity::default()
        });
        let lookup = |name: &str| env.get(name).map(OsString::from);
        let store = KeychainCredentialStore::for_claude_cli_with(lookup, fake.clone()).unwrap();
        let what = &case.name;
        assert_eq!(store.service(), case.expected["service"], "{what}");
        assert_eq!(store.account(), case.expected["account"], "{what}");

        fake.calls.lock().unwrap().clear();
        let read = store.read_item().map(|item| matches!(item, Item::Absent));
        assert!(read.unwrap(), "{what}");
        let read_call = fake.calls().remove(0);
        assert_eq!(read_call.0, "/usr/bin/security", "{what}");
        assert_eq!(read_call.1, strings(&case.expected["read"]), "{what}");

        fake.calls.lock().unwrap().clear();
        store.write(&case.document).unwrap();
        let writes: Vec<Call> = fake
            .calls()
            .into_iter()
            .filter(|(_, args, _)| {
                args.first().map(String::as_str) != Some("find-generic-password")
            })
            .collect();
        assert_eq!(writes.len(), 1, "{what}: {writes:?}");
        let (program, args, stdin) = &writes[0];
        assert_eq!(program, "/usr/bin/security", "{what}");
        assert_eq!(*args, strings(&case.expected["write"]["argv"]), "{what}");
        assert_eq!(
            stdin.as_deref(),
            case.expected["write"]["stdin"].as_str(),
            "{what}"
        );
        // What the item holds reads back as the document.
        let back: Value = serde_json::from_str(
            &fake
                .item(store.account(), store.service())
                .expect("written"),
        )
        .unwrap();
        let sent: Value = serde_json::from_str(&case.document).unwrap();
        assert_eq!(back, sent, "{what}");
    }
}

/// Whitespace between tokens is dropped and only strings are escaped: a pretty-printed
/// document goes in compact, its meaning whole.
#[test]
fn the_item_holds_compact_ascii_json() {
    let pretty = "{\n  \"a\": \"caf\u{e9} \\n\\\" {x}\",\n\t\"b\": [1, 2]\r\n}";
    let item = ascii_json(pretty);
    assert_eq!(
        item.as_str(),
        "{\"a\":\"caf\\u00e9 \\n\\\" {x}\",\"b\":[1,2]}"
    );
    assert_eq!(
        serde_json::from_str::<Value>(&item).unwrap(),
        serde_json::from_str::<Value>(pretty).unwrap()
    );
}

/// `USER` is the account name: one with a newline would have injected a second command
/// into `security -i`. Refused before `security` runs.
#[tokio::test]
async fn names_with_control_characters_never_reach_security() {
    let dir = tempfile::tempdir().unwrap();
    let fake = Arc::new(FakeSecurity::default());
    let store = KeychainCredentialStore::with_runner(
        KEYCHAIN_SERVICE,
        "user\ndelete-generic-password -s \"Claude Code-credentials\"",
        dir.path(),
        fake.clone(),
    );
    let error = store.save_document("{}").await.unwrap_err();
    assert!(error.to_string().contains("control character"), "{error}");
    assert!(
        fake.calls()
            .iter()
            .all(|(_, args, _)| args.first().map(String::as_str) == Some("find-generic-password")),
        "only read: {:?}",
        fake.calls()
    );
    assert_eq!(
        quoted("a \"b\" \\c").as_deref(),
        Some("\"a \\\"b\\\" \\\\c\"")
    );
}

#[tokio::test]
async fn reads_writes_and_never_puts_a_short_secret_on_a_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let fake = Arc::new(FakeSecurity::default());
    let store = store(&fake, dir.path());
    assert_eq!(store.load_document().await.unwrap(), None);
    let doc = r#"{"claudeAiOauth":{"accessToken":"sk-ant-oat01-SECRET","expiresAt":1},"x":"a \"quoted\" value"}"#;
    store.save_document(doc).await.unwrap();
    assert_eq!(store.load_document().await.unwrap().as_deref(), Some(doc));
    for (_, args, stdin) in fake.calls() {
        assert!(args.iter().all(|a| !a.contains("SECRET")), "{args:?}");
        assert!(
            stdin.is_none_or(|line| !line.contains("SECRET")),
            "hex-encoded on stdin too"
        );
    }
}

#[tokio::test]
async fn a_failing_security_is_a_typed_error_naming_the_item() {
    let dir = tempfile::tempdir().unwrap();
    let fake = Arc::new(FakeSecurity {
        failing: Some(51),
        ..FakeSecurity::default()
    });
    let err = store(&fake, dir.path()).load_document().await.unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, ClaudeCodeAuthError::Io { .. }), "{message}");
    assert!(
        message.contains("Claude Code-credentials")
            && message.contains("exit status 51")
            && message.contains("User interaction is not allowed"),
        "{message}"
    );
    let locked = Arc::new(FakeSecurity {
        failing: Some(KEYCHAIN_LOCKED),
        ..FakeSecurity::default()
    });
    let message = store(&locked, dir.path())
        .load_document()
        .await
        .unwrap_err()
        .to_string();
    assert!(message.contains("the keychain is locked"), "{message}");
}

/// An item whose login the CLI sealed into overflow items is refused, not rewritten without
/// them.
#[tokio::test]
async fn an_item_split_into_overflow_items_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let fake = Arc::new(FakeSecurity::default());
    let item = r#"{"claudeAiOauth":{"accessToken":"a","refreshToken":"r","expiresAt":1},"keychainOverflow":{"slot":"a","key":"c2VhbGVk"}}"#;
    fake.put("ada", KEYCHAIN_SERVICE, item);
    let store = store(&fake, dir.path());
    let error = store.load_document().await.unwrap_err();
    assert!(
        matches!(&error, ClaudeCodeAuthError::InvalidDocument { problem, .. } if problem.contains("keychainOverflow")),
        "{error}"
    );
    let error = store.save_document("{}").await.unwrap_err();
    assert!(error.to_string().contains("keychainOverflow"), "{error}");
    assert_eq!(fake.item("ada", KEYCHAIN_SERVICE).as_deref(), Some(item));
}

/// The CLI's fallback: no item, the file is read; a write into the empty item removes the
/// file; a keychain that refuses writes for good has them go to the file (and its item
/// deleted); a locked one has nothing written anywhere.
#[tokio::test]
async fn the_credential_file_is_the_keychains_fallback_as_for_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(".credentials.json");
    let doc = r#"{"claudeAiOauth":{"accessToken":"from-file","expiresAt":1}}"#;
    std::fs::write(&file, doc).unwrap();
    let fake = Arc::new(FakeSecurity::default());
    let keychain = store(&fake, dir.path()).with_file_fallback(&file);
    assert_eq!(
        keychain.load_document().await.unwrap().as_deref(),
        Some(doc)
    );
    let newer = r#"{"claudeAiOauth":{"accessToken":"newer","expiresAt":2}}"#;
    keychain.save_document(newer).await.unwrap();
    assert_eq!(fake.item("ada", KEYCHAIN_SERVICE).as_deref(), Some(newer));
    assert!(!file.exists(), "the file the keychain now replaces is gone");

    // Refused for good (no login keychain): the file takes it, the stale item goes.
    let refusing = Arc::new(FakeSecurity {
        refusing_writes: Some(50),
        ..FakeSecurity::default()
    });
    refusing.put("ada", KEYCHAIN_SERVICE, doc);
    let keychain = store(&refusing, dir.path()).with_file_fallback(&file);
    keychain.save_document(newer).await.unwrap();
    assert_eq!(std::fs::read_to_string(&file).unwrap(), newer);
    assert_eq!(refusing.item("ada", KEYCHAIN_SERVICE), None);
    assert_eq!(
        keychain.load_document().await.unwrap().as_deref(),
        Some(newer)
    );

    // Locked: an error, and the file is not written.
    std::fs::remove_file(&file).unwrap();
    let locked = Arc::new(FakeSecurity {
        refusing_writes: Some(KEYCHAIN_LOCKED),
        ..FakeSecurity::default()
    });
    let keychain = store(&locked, dir.path()).with_file_fallback(&file);
    let error = keychain.save_document(newer).await.unwrap_err();
    assert!(error.to_string().contains("locked"), "{error}");
    assert!(!file.exists());

    // Without a fallback, a refused write is an error.
    let keychain = store(&refusing, dir.path());
    assert!(keychain.save_document(newer).await.is_err());
}

#[tokio::test]
async fn the_refresh_lock_honours_the_cli_locks_of_the_config_dir() {
    let dir = tempfile::tempdir().unwrap();
    let fake = Arc::new(FakeSecurity::default());
    let lock = store(&fake, dir.path())
        .lock_refresh(Duration::ZERO)
        .await
        .unwrap();
    assert!(dir.path().join(".oauth_refresh.lock").is_dir());
    drop(lock);
    assert!(!dir.path().join(".oauth_refresh.lock").exists());
}

#[tokio::test]
async fn the_provider_refreshes_through_the_keychain() {
    use secrecy::ExposeSecret;
    let dir = tempfile::tempdir().unwrap();
    let fake = Arc::new(FakeSecurity::default());
    let endpoint = claude_code_auth_testkit::loopback::TokenEndpoint::start()
        .await
        .unwrap();
    let login = endpoint.login();
    fake.put(
        "ada",
        KEYCHAIN_SERVICE,
        &format!(
            r#"{{"claudeAiOauth":{{"accessToken":"{}","refreshToken":"{}","expiresAt":1,"scopes":["user:inference"]}},"mcpOAuth":{{"k":"café"}}}}"#,
            login.access_token, login.refresh_token
        ),
    );
    let provider = crate::ClaudeCodeOAuthProvider::with_config(
        store(&fake, dir.path()),
        crate::ClaudeCodeOAuthConfig::new().with_token_url(endpoint.url()),
    );
    let header = provider.header_value().await.unwrap();
    let item: Value = serde_json::from_str(&fake.item("ada", KEYCHAIN_SERVICE).unwrap()).unwrap();
    assert_eq!(
        header.expose_secret(),
        format!(
            "Bearer {}",
            item["claudeAiOauth"]["accessToken"].as_str().unwrap()
        )
    );
    // Non-ASCII went in escaped and reads back as itself.
    assert_eq!(item["mcpOAuth"]["k"], "caf\u{e9}");
    assert!(fake.item("ada", KEYCHAIN_SERVICE).unwrap().is_ascii());
    assert_eq!(endpoint.grants_served(), 1);
}
