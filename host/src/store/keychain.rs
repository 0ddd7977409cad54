//! [`KeychainCredentialStore`]: where the `claude` CLI keeps its credential on macOS — a generic
//! password in the login keychain, read and written with the `security` command.
//!
//! The item's service is `Claude Code-credentials`, with `-<first 8 hex digits of
//! sha256(config dir)>` appended when `CLAUDE_CONFIG_DIR` is set; its account is the user name;
//! its password is the same JSON document the file holds elsewhere. Commands go through a
//! [`CommandRunner`], so the logic is tested anywhere with a fake. Writes pass the document on
//! `security`'s stdin (hex-encoded), never on its command line, where other users could read it.

use std::fmt::Write as _;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::credential::CredentialFile;
use crate::error::{ClaudeCodeAuthError, ClaudeCodeAuthResult};

use super::session::{self, Session, Site};
use super::{CredentialStore, RefreshLock, blocking, parse_document, render_document};

/// The service name the `claude` CLI gives its keychain item.
pub const KEYCHAIN_SERVICE: &str = "Claude Code-credentials";

/// `security`'s exit status when the item does not exist (errSecItemNotFound).
const ITEM_NOT_FOUND: i32 = 44;

/// What a command printed and how it ended.
#[derive(Clone, PartialEq, Eq)]
pub struct CommandOutput {
    /// Exit status; `None` when killed by a signal.
    pub status: Option<i32>,
    /// Standard output.
    pub stdout: Vec<u8>,
    /// Standard error.
    pub stderr: Vec<u8>,
}

impl std::fmt::Debug for CommandOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Stdout carries the keychain password.
        f.debug_struct("CommandOutput")
            .field("status", &self.status)
            .field("stdout_bytes", &self.stdout.len())
            .field("stderr", &String::from_utf8_lossy(&self.stderr))
            .finish()
    }
}

/// Runs a program: the seam between the keychain logic and the `security` binary.
pub trait CommandRunner: Send + Sync + 'static {
    /// Run `program` with `args`, writing `stdin` to it, and wait for it. Blocking.
    fn run(&self, program: &str, args: &[&str], stdin: Option<&[u8]>) -> io::Result<CommandOutput>;
}

/// Runs programs for real.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemRunner;

impl CommandRunner for SystemRunner {
    fn run(&self, program: &str, args: &[&str], stdin: Option<&[u8]>) -> io::Result<CommandOutput> {
        use std::io::Write;
        use std::process::{Command, Stdio};
        let mut child = Command::new(program)
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(input)?;
        }
        let output = child.wait_with_output()?;
        Ok(CommandOutput {
            status: output.status.code(),
            stdout: output.stdout,
            stderr: output.stderr,
        })
    }
}

/// The `claude` CLI's credential in the macOS keychain.
#[derive(Clone)]
pub struct KeychainCredentialStore {
    service: String,
    account: String,
    config_dir: PathBuf,
    runner: Arc<dyn CommandRunner>,
}

impl std::fmt::Debug for KeychainCredentialStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeychainCredentialStore")
            .field("service", &self.service)
            .field("account", &self.account)
            .field("config_dir", &self.config_dir)
            .finish_non_exhaustive()
    }
}

impl KeychainCredentialStore {
    /// The item the `claude` CLI of this user and environment uses, through the real `security`.
    pub fn for_claude_cli() -> ClaudeCodeAuthResult<Self> {
        let config_dir_env = std::env::var_os("CLAUDE_CONFIG_DIR").filter(|v| !v.is_empty());
        let config_dir = match &config_dir_env {
            Some(dir) => PathBuf::from(dir),
            None => std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|home| PathBuf::from(home).join(".claude"))
                .ok_or(ClaudeCodeAuthError::HomeUnresolved)?,
        };
        let account = ["USER", "LOGNAME"]
            .into_iter()
            .find_map(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
            .ok_or(ClaudeCodeAuthError::HomeUnresolved)?;
        let service = service_name(config_dir_env.as_deref().and_then(|d| d.to_str()));
        Ok(Self::with_runner(
            service,
            account,
            config_dir,
            SystemRunner,
        ))
    }

    /// A store for the item `service` / `account`, whose refresh lock belongs to `config_dir`,
    /// running commands through `runner`.
    pub fn with_runner(
        service: impl Into<String>,
        account: impl Into<String>,
        config_dir: impl Into<PathBuf>,
        runner: impl CommandRunner,
    ) -> Self {
        Self {
            service: service.into(),
            account: account.into(),
            config_dir: config_dir.into(),
            runner: Arc::new(runner),
        }
    }

    /// The item's service name.
    pub fn service(&self) -> &str {
        &self.service
    }

    fn failure(&self, doing: &str, output: &CommandOutput) -> ClaudeCodeAuthError {
        let said = String::from_utf8_lossy(&output.stderr);
        ClaudeCodeAuthError::Io {
            path: self.location(),
            source: io::Error::other(format!(
                "`security` could not {doing} (exit status {}): {}",
                output
                    .status
                    .map_or_else(|| "none".into(), |s| s.to_string()),
                said.trim()
            )),
        }
    }

    fn read(&self) -> ClaudeCodeAuthResult<Option<String>> {
        let args = [
            "find-generic-password",
            "-a",
            &self.account,
            "-s",
            &self.service,
            "-w",
        ];
        let output =
            self.runner
                .run(SECURITY, &args, None)
                .map_err(|source| ClaudeCodeAuthError::Io {
                    path: self.location(),
                    source,
                })?;
        let stdout = Zeroizing::new(output.stdout.clone());
        match output.status {
            Some(0) => {}
            Some(ITEM_NOT_FOUND) => return Ok(None),
            _ => return Err(self.failure("read the item", &output)),
        }
        let text =
            std::str::from_utf8(&stdout).map_err(|e| ClaudeCodeAuthError::InvalidDocument {
                path: self.location(),
                problem: format!(
                    "the item is not UTF-8 text (invalid byte at offset {})",
                    e.valid_up_to()
                ),
            })?;
        // `security -w` ends the password with a newline.
        Ok(Some(text.strip_suffix('\n').unwrap_or(text).to_owned()))
    }

    fn write(&self, document: &str) -> ClaudeCodeAuthResult<()> {
        let unsafe_name = |what: &str| ClaudeCodeAuthError::InvalidDocument {
            path: self.location(),
            problem: format!(
                "the keychain {what} holds a control character (a newline would start another `security` command); refusing to write"
            ),
        };
        let account = quoted(&self.account).ok_or_else(|| unsafe_name("account name"))?;
        let service = quoted(&self.service).ok_or_else(|| unsafe_name("service name"))?;
        let mut command = Zeroizing::new(String::with_capacity(document.len() * 2 + 128));
        let _ = write!(
            command,
            "add-generic-password -U -a {account} -s {service} -X "
        );
        for byte in document.as_bytes() {
            let _ = write!(command, "{byte:02x}");
        }
        command.push('\n');
        let output = self
            .runner
            .run(SECURITY, &["-i"], Some(command.as_bytes()))
            .map_err(|source| ClaudeCodeAuthError::Io {
                path: self.location(),
                source,
            })?;
        match output.status {
            Some(0) => Ok(()),
            _ => Err(self.failure("write the item", &output)),
        }
    }
}

/// The service name for a `CLAUDE_CONFIG_DIR` value (none: the default config dir).
pub fn service_name(config_dir: Option<&str>) -> String {
    match config_dir {
        None => KEYCHAIN_SERVICE.to_owned(),
        Some(dir) => {
            let digest = Sha256::digest(dir.as_bytes());
            let hex: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
            format!("{KEYCHAIN_SERVICE}-{hex}")
        }
    }
}

/// An argument for `security -i`, which splits its input lines like a shell; `None` for a value
/// with a control character (a newline would end the command and start another).
fn quoted(value: &str) -> Option<String> {
    if value.chars().any(char::is_control) {
        return None;
    }
    Some(format!(
        "\"{}\"",
        value.replace('\\', "\\\\").replace('"', "\\\"")
    ))
}

/// `security` by its absolute path: a `PATH` that leads elsewhere gets no credential.
const SECURITY: &str = "/usr/bin/security";

#[async_trait]
impl CredentialStore for KeychainCredentialStore {
    async fn load(&self) -> ClaudeCodeAuthResult<Option<CredentialFile>> {
        match self.load_document().await? {
            Some(text) => parse_document(&Zeroizing::new(text), || self.location()).map(Some),
            None => Ok(None),
        }
    }

    async fn save(&self, file: &CredentialFile) -> ClaudeCodeAuthResult<()> {
        let text = Zeroizing::new(render_document(file, || self.location())?);
        self.save_document(&text).await
    }

    async fn load_document(&self) -> ClaudeCodeAuthResult<Option<String>> {
        let store = self.clone();
        blocking(move || store.read()).await
    }

    async fn save_document(&self, document: &str) -> ClaudeCodeAuthResult<()> {
        let store = self.clone();
        let document = Zeroizing::new(document.to_owned());
        blocking(move || store.write(&document)).await
    }

    async fn lock_refresh(&self, wait: Duration) -> ClaudeCodeAuthResult<RefreshLock> {
        let site = Site::new(&self.config_dir, ".credentials.keychain.flock".as_ref());
        session::lock(vec![site], wait).await
    }

    /// The CLI takes `.storage-write.lock` of its config dir around keychain writes too.
    async fn lock_write(&self, lock: &mut RefreshLock, wait: Duration) -> ClaudeCodeAuthResult<()> {
        match lock.guard::<Session>() {
            Some(session) => session.with(move |held| held.lock_write(wait)).await,
            None => Ok(()),
        }
    }

    async fn save_refreshed(
        &self,
        lock: &mut RefreshLock,
        document: &str,
    ) -> ClaudeCodeAuthResult<()> {
        let written = self.save_document(document).await;
        if let Some(session) = lock.guard::<Session>() {
            session
                .with(|held| {
                    held.unlock_write();
                    Ok(())
                })
                .await?;
        }
        written
    }

    fn location(&self) -> String {
        format!(
            "macOS keychain item `{}` (account `{}`)",
            self.service, self.account
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A `security` that keeps one item in memory and records every call.
    #[derive(Default)]
    struct FakeSecurity {
        item: Mutex<Option<String>>,
        calls: Mutex<Vec<(Vec<String>, Option<String>)>>,
        broken: bool,
    }

    impl CommandRunner for Arc<FakeSecurity> {
        fn run(
            &self,
            program: &str,
            args: &[&str],
            stdin: Option<&[u8]>,
        ) -> io::Result<CommandOutput> {
            assert_eq!(program, "/usr/bin/security");
            let stdin = stdin.map(|s| String::from_utf8(s.to_vec()).unwrap());
            self.calls.lock().unwrap().push((
                args.iter().map(|a| (*a).to_owned()).collect(),
                stdin.clone(),
            ));
            let ok = |stdout: Vec<u8>| CommandOutput {
                status: Some(0),
                stdout,
                stderr: Vec::new(),
            };
            if self.broken {
                return Ok(CommandOutput {
                    status: Some(51),
                    stdout: Vec::new(),
                    stderr:
                        b"security: SecKeychainSearchCopyNext: User interaction is not allowed."
                            .to_vec(),
                });
            }
            match args {
                [
                    "find-generic-password",
                    "-a",
                    "ada",
                    "-s",
                    KEYCHAIN_SERVICE,
                    "-w",
                ] => Ok(match self.item.lock().unwrap().clone() {
                    Some(item) => ok(format!("{item}\n").into_bytes()),
                    None => CommandOutput {
                        status: Some(ITEM_NOT_FOUND),
                        stdout: Vec::new(),
                        stderr: b"not found".to_vec(),
                    },
                }),
                ["-i"] => {
                    let line = stdin.unwrap();
                    let hex = line
                        .strip_prefix(&format!(
                            "add-generic-password -U -a \"ada\" -s \"{KEYCHAIN_SERVICE}\" -X "
                        ))
                        .and_then(|rest| rest.strip_suffix('\n'))
                        .expect("an add-generic-password line");
                    let bytes: Vec<u8> = (0..hex.len())
                        .step_by(2)
                        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                        .collect();
                    *self.item.lock().unwrap() = Some(String::from_utf8(bytes).unwrap());
                    Ok(ok(Vec::new()))
                }
                other => panic!("unexpected security call {other:?}"),
            }
        }
    }

    fn store(fake: &Arc<FakeSecurity>, dir: &std::path::Path) -> KeychainCredentialStore {
        KeychainCredentialStore::with_runner(KEYCHAIN_SERVICE, "ada", dir, fake.clone())
    }

    #[test]
    fn service_names_follow_the_cli() {
        assert_eq!(service_name(None), "Claude Code-credentials");
        let digest = Sha256::digest(b"/Users/ada/.claude-work");
        let want = format!(
            "Claude Code-credentials-{:02x}{:02x}{:02x}{:02x}",
            digest[0], digest[1], digest[2], digest[3]
        );
        assert_eq!(service_name(Some("/Users/ada/.claude-work")), want);
        assert_eq!(want.len(), "Claude Code-credentials-".len() + 8);
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
        assert!(fake.calls.lock().unwrap().is_empty());
        assert_eq!(
            quoted("a \"b\" \\c").as_deref(),
            Some("\"a \\\"b\\\" \\\\c\"")
        );
    }

    #[tokio::test]
    async fn reads_writes_and_never_puts_the_secret_on_a_command_line() {
        let dir = tempfile::tempdir().unwrap();
        let fake = Arc::new(FakeSecurity::default());
        let store = store(&fake, dir.path());
        assert_eq!(store.load_document().await.unwrap(), None);
        let doc = r#"{"claudeAiOauth":{"accessToken":"sk-ant-oat01-SECRET","expiresAt":1},"x":"a \"quoted\" value"}"#;
        store.save_document(doc).await.unwrap();
        assert_eq!(store.load_document().await.unwrap().as_deref(), Some(doc));
        for (args, _) in fake.calls.lock().unwrap().iter() {
            assert!(args.iter().all(|a| !a.contains("SECRET")), "{args:?}");
        }
        let stdin_lines: Vec<_> = fake
            .calls
            .lock()
            .unwrap()
            .iter()
            .filter_map(|(_, s)| s.clone())
            .collect();
        assert_eq!(stdin_lines.len(), 1);
        assert!(
            !stdin_lines[0].contains("SECRET"),
            "hex-encoded on stdin too"
        );
    }

    #[tokio::test]
    async fn a_failing_security_is_a_typed_error_naming_the_item() {
        let dir = tempfile::tempdir().unwrap();
        let fake = Arc::new(FakeSecurity {
            broken: true,
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
        *fake.item.lock().unwrap() = Some(format!(
            r#"{{"claudeAiOauth":{{"accessToken":"{}","refreshToken":"{}","expiresAt":1,"scopes":["user:inference"]}},"mcpOAuth":{{}}}}"#,
            login.access_token, login.refresh_token
        ));
        let provider = crate::ClaudeCodeOAuthProvider::with_config(
            store(&fake, dir.path()),
            crate::ClaudeCodeOAuthConfig::new().with_token_url(endpoint.url()),
        );
        let header = provider.header_value().await.unwrap();
        let item: serde_json::Value =
            serde_json::from_str(&fake.item.lock().unwrap().clone().unwrap()).unwrap();
        assert_eq!(
            header.expose_secret(),
            format!(
                "Bearer {}",
                item["claudeAiOauth"]["accessToken"].as_str().unwrap()
            )
        );
        assert_eq!(item["mcpOAuth"], serde_json::json!({}));
        assert_eq!(endpoint.grants_served(), 1);
    }
}
