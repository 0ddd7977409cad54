//! Bad input gets a clear typed error, never a panic or a hang, and loses nothing: a corpus of
//! hostile credential files and hostile token endpoint answers. For every case: the error's
//! variant and entelix reaction, a message that names the problem, no secret in the message,
//! and the credential file byte-identical with the same mode afterwards.

use std::os::unix::fs::{FileTypeExt, PermissionsExt, symlink};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::{NOW_MS, Scenario, config, reaction};
use claude_code_auth_testkit::loopback::{Reply, Response, TokenEndpoint};
use entelix_auth_claude_code::{ClaudeCodeAuthError, ClaudeCodeOAuthProvider, FileCredentialStore};
use serde_json::json;

const ACCESS: &str = "sk-ant-oat01-corpus-access-SECRET";
pub(crate) const REFRESH: &str = "sk-ant-ort01-corpus-refresh-SECRET";

/// The expired credential every endpoint case starts from, with `patch` spliced into the section.
fn expired(patch: &str) -> Vec<u8> {
    format!(
        r#"{{"claudeAiOauth":{{"accessToken":"{ACCESS}","refreshToken":"{REFRESH}","expiresAt":{}{patch}}},"mcpOAuth":{{"s":{{"accessToken":"mcp"}}}}}}"#,
        NOW_MS - 60_000
    )
    .into_bytes()
}

fn doc(text: &str) -> Vec<u8> {
    text.replace("ACCESS", ACCESS)
        .replace("REFRESH", REFRESH)
        .into_bytes()
}

pub(crate) enum FileSetup {
    Bytes(Vec<u8>),
    Absent,
    Directory,
    SymlinkLoop,
    DanglingSymlink,
    /// A named pipe: opening it for reading would wait for a writer forever.
    Fifo,
    /// A link to a character device that never ends.
    LinkToDevZero,
}

pub(crate) enum Endpoint {
    /// Knows the refresh token; answers the queued replies first.
    Knows(Vec<Reply>),
    /// Never issued the refresh token.
    Stranger,
    /// Nothing listens.
    ClosedPort,
}

pub(crate) struct Case {
    pub(crate) name: &'static str,
    pub(crate) file: FileSetup,
    pub(crate) endpoint: Endpoint,
    /// Error variant, entelix reaction, text the message must contain.
    want: (&'static str, &'static str, &'static str),
}

fn case(
    name: &'static str,
    file: FileSetup,
    endpoint: Endpoint,
    want: (&'static str, &'static str, &'static str),
) -> Case {
    Case {
        name,
        file,
        endpoint,
        want,
    }
}

fn json_reply(status: u16, body: serde_json::Value) -> Reply {
    Reply::Respond(Response::json(status, &body))
}

fn times(n: usize, reply: &Reply) -> Vec<Reply> {
    vec![reply.clone(); n]
}

pub(crate) fn file_cases() -> Vec<Case> {
    use Endpoint::Stranger;
    use FileSetup::{Absent, Bytes, DanglingSymlink, Directory, Fifo, LinkToDevZero, SymlinkLoop};
    let invalid = |name, bytes, says| {
        case(
            name,
            Bytes(bytes),
            Stranger,
            ("InvalidDocument", "refused", says),
        )
    };
    let mut deep = "[".repeat(100_000).into_bytes();
    deep.extend("]".repeat(100_000).bytes());
    let mut nul_in_string = expired("");
    nul_in_string.splice(20..20, [0u8]);
    let mut bad_utf8 = expired("");
    bad_utf8.splice(30..30, [0xc3, 0x28]);
    vec![
        invalid("empty file", Vec::new(), "EOF while parsing"),
        invalid("not JSON", b"claudeAiOauth=yes".to_vec(), "expected value"),
        invalid("a JSON array", b"[1,2,3]".to_vec(), "found an array"),
        invalid(
            "a JSON string",
            b"\"sk-ant-oat01-SECRET\"".to_vec(),
            "found a string",
        ),
        invalid("JSON null", b"null".to_vec(), "found null"),
        invalid("a number", b"42".to_vec(), "found a number"),
        invalid(
            "trailing garbage",
            [expired(""), b"}x".to_vec()].concat(),
            "trailing characters",
        ),
        invalid(
            "a byte-order mark",
            [b"\xef\xbb\xbf".to_vec(), expired("")].concat(),
            "expected value",
        ),
        invalid(
            "expiresAt as a string",
            doc(
                r#"{"claudeAiOauth":{"accessToken":"ACCESS","refreshToken":"REFRESH","expiresAt":"REFRESH"}}"#,
            ),
            "`claudeAiOauth.expiresAt` in the credential document must be a number",
        ),
        invalid(
            "scopes as a string",
            expired(r#","scopes":"user:inference user:profile""#),
            "`claudeAiOauth.scopes` in the credential document must be a list of strings, found a string",
        ),
        invalid(
            "scopes holding numbers",
            expired(r#","scopes":[1,2]"#),
            "must be a list of strings, found a number",
        ),
        case(
            "the CLI's logged-out shape",
            Bytes(doc(
                r#"{"claudeAiOauth":{"accessToken":"","refreshToken":"","expiresAt":0,"scopes":[]},"mcpOAuth":{}}"#,
            )),
            Stranger,
            ("LoggedOut", "expired", "not logged in"),
        ),
        case(
            "no token at all",
            Bytes(doc(r#"{"claudeAiOauth":{"expiresAt":1}}"#)),
            Stranger,
            ("LoggedOut", "expired", "run `claude login`"),
        ),
        invalid(
            "accessToken as a number",
            doc(r#"{"claudeAiOauth":{"accessToken":7,"refreshToken":"REFRESH"}}"#),
            "`claudeAiOauth.accessToken` in the credential document must be a string",
        ),
        invalid(
            "refreshToken as an object",
            doc(
                r#"{"claudeAiOauth":{"accessToken":"ACCESS","refreshToken":{"t":"REFRESH"},"expiresAt":1}}"#,
            ),
            "`claudeAiOauth.refreshToken` in the credential document must be a string",
        ),
        invalid(
            "the section as an array",
            doc(r#"{"claudeAiOauth":["ACCESS"]}"#),
            "`claudeAiOauth` in the credential document must be an object",
        ),
        invalid(
            "the section as a string",
            doc(r#"{"claudeAiOauth":"ACCESS"}"#),
            "must be an object, found a string",
        ),
        invalid("a raw NUL byte", nul_in_string, "control character"),
        invalid("a file of NUL bytes", vec![0; 4096], "expected value"),
        invalid("invalid UTF-8", bad_utf8, "not UTF-8 text"),
        invalid(
            "a 10 MiB file",
            vec![b' '; 10 << 20],
            "larger than 1024 KiB",
        ),
        invalid("100 000-deep nesting", deep, "recursion limit"),
        invalid(
            "duplicate top-level keys",
            [
                expired("")[..expired("").len() - 1].to_vec(),
                br#","claudeAiOauth":{}}"#.to_vec(),
            ]
            .concat(),
            "duplicate key `claudeAiOauth`",
        ),
        invalid(
            "duplicate keys in the section",
            expired(&format!(r#","accessToken":"{ACCESS}""#)),
            "duplicate key `accessToken`",
        ),
        case(
            "no file",
            Absent,
            Stranger,
            ("CredentialsMissing", "missing", "claude login"),
        ),
        case(
            "a dangling symlink",
            DanglingSymlink,
            Stranger,
            ("CredentialsMissing", "missing", "claude login"),
        ),
        case(
            "a directory where the file should be",
            Directory,
            Stranger,
            ("Io", "refused", "directory"),
        ),
        case(
            "a FIFO where the file should be",
            Fifo,
            Stranger,
            ("Io", "refused", "not a regular file"),
        ),
        case(
            "a link to /dev/zero",
            LinkToDevZero,
            Stranger,
            ("Io", "refused", "not a regular file"),
        ),
        case(
            "a symlink loop",
            SymlinkLoop,
            Stranger,
            ("Io", "refused", "symbolic links"),
        ),
        case(
            "no OAuth section",
            Bytes(doc(r#"{"mcpOAuth":{"s":{"accessToken":"ACCESS"}}}"#)),
            Stranger,
            ("OAuthSectionMissing", "missing", "claude login"),
        ),
        case(
            "a null OAuth section",
            Bytes(doc(r#"{"claudeAiOauth":null}"#)),
            Stranger,
            ("OAuthSectionMissing", "missing", "claudeAiOauth"),
        ),
        case(
            "expired without a refresh token",
            Bytes(doc(&format!(
                r#"{{"claudeAiOauth":{{"accessToken":"ACCESS","expiresAt":{}}}}}"#,
                NOW_MS - 1
            ))),
            Stranger,
            ("RefreshTokenMissing", "expired", "claude login"),
        ),
        case(
            "a negative expiresAt (refresh refused)",
            Bytes(doc(
                r#"{"claudeAiOauth":{"accessToken":"ACCESS","refreshToken":"REFRESH","expiresAt":-5}}"#,
            )),
            Stranger,
            ("RefreshRejected", "expired", "invalid_grant"),
        ),
        case(
            "an enormous expiresAt (refresh refused)",
            Bytes(doc(
                r#"{"claudeAiOauth":{"accessToken":"ACCESS","refreshToken":"REFRESH","expiresAt":1e300}}"#,
            )),
            Stranger,
            ("RefreshRejected", "expired", "invalid_grant"),
        ),
    ]
}

pub(crate) fn endpoint_cases() -> Vec<Case> {
    use Endpoint::{ClosedPort, Knows};
    let file = || FileSetup::Bytes(expired(""));
    let unusable = |name, replies, says| {
        case(
            name,
            file(),
            Knows(replies),
            ("RefreshHttp", "unreachable", says),
        )
    };
    let answer = |body: serde_json::Value| vec![json_reply(200, body)];
    let reset = Reply::ResetAfter(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 200\r\n\r\n{\"access_tok".to_vec());
    vec![
        unusable(
            "HTML with 200",
            vec![Reply::Respond(Response::raw(
                200,
                "text/html",
                "<html><body>Sign in</body></html>",
            ))],
            "not JSON",
        ),
        unusable(
            "an empty body",
            vec![Reply::Respond(Response::raw(200, "application/json", ""))],
            "empty body",
        ),
        unusable(
            "a JSON array body",
            answer(json!([ACCESS])),
            "must be a JSON object, found an array",
        ),
        unusable(
            "a 20 MiB body",
            vec![Reply::Endless { bytes: 20 << 20 }],
            "1048576 bytes",
        ),
        unusable(
            "a body that stalls past the timeout",
            vec![Reply::StallBody {
                status: 200,
                announced: 500,
                sent: 20,
                stall: Duration::from_secs(30),
            }],
            "refresh timeout",
        ),
        unusable(
            "no answer before the timeout",
            vec![Reply::Delay(
                Duration::from_secs(30),
                Response::json(200, &json!({})),
            )],
            "refresh timeout",
        ),
        unusable(
            "access_token as a number",
            answer(json!({"access_token": 5, "expires_in": 3600})),
            "`access_token` must be a string",
        ),
        case(
            "flat invalid_grant",
            file(),
            Knows(vec![json_reply(
                400,
                json!({"error": "invalid_grant", "error_description": format!("token {REFRESH} revoked")}),
            )]),
            ("RefreshRejected", "expired", "invalid_grant"),
        ),
        case(
            "nested invalid_request_error",
            file(),
            Knows(vec![json_reply(
                400,
                json!({"type": "error", "error": {"type": "invalid_request_error", "message": "Invalid request format"}}),
            )]),
            (
                "RefreshRefused",
                "refused",
                "invalid_request_error: Invalid request format",
            ),
        ),
        case(
            "401 invalid_client",
            file(),
            Knows(vec![json_reply(401, json!({"error": "invalid_client"}))]),
            ("RefreshRefused", "refused", "HTTP 401 invalid_client"),
        ),
        case(
            "404",
            file(),
            Knows(vec![Reply::Respond(Response::raw(
                404,
                "text/html",
                "<h1>Not Found</h1>",
            ))]),
            ("RefreshRefused", "refused", "HTTP 404"),
        ),
        unusable(
            "429 asking for more than the timeout",
            vec![Reply::Respond(
                Response::raw(429, "application/json", "{}").with_header("retry-after", "120"),
            )],
            "HTTP 429",
        ),
        unusable(
            "429 four times",
            times(
                4,
                &Reply::Respond(
                    Response::raw(429, "application/json", "{}").with_header("retry-after", "0"),
                ),
            ),
            "after 4 attempts",
        ),
        // Backoff (0.25 s, 0.5 s, 1 s, plus jitter) meets the 2 s budget before a fourth attempt.
        unusable(
            "500 every time",
            times(4, &Reply::Respond(Response::raw(500, "text/plain", "oops"))),
            "unavailable (HTTP 500)",
        ),
        unusable(
            "a reset in the middle of the answer",
            times(4, &reset),
            "unavailable",
        ),
        case(
            "connection refused",
            file(),
            ClosedPort,
            ("RefreshHttp", "unreachable", "connection refused"),
        ),
    ]
}

fn variant(error: &ClaudeCodeAuthError) -> &'static str {
    match error {
        ClaudeCodeAuthError::CredentialsMissing { .. } => "CredentialsMissing",
        ClaudeCodeAuthError::OAuthSectionMissing { .. } => "OAuthSectionMissing",
        ClaudeCodeAuthError::RefreshTokenMissing => "RefreshTokenMissing",
        ClaudeCodeAuthError::LoggedOut { .. } => "LoggedOut",
        ClaudeCodeAuthError::RefreshHttp { .. } => "RefreshHttp",
        ClaudeCodeAuthError::RefreshRejected { .. } => "RefreshRejected",
        ClaudeCodeAuthError::RefreshRefused { .. } => "RefreshRefused",
        ClaudeCodeAuthError::InvalidStorage { .. } => "InvalidStorage",
        ClaudeCodeAuthError::InvalidDocument { .. } => "InvalidDocument",
        ClaudeCodeAuthError::Io { .. } => "Io",
        _ => "other",
    }
}

/// What the file system holds at `path`: kind, bytes or link target, and mode.
fn snapshot(path: &Path) -> Option<(String, Vec<u8>, u32)> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    let mode = meta.permissions().mode();
    if meta.file_type().is_symlink() {
        let target = std::fs::read_link(path).unwrap();
        return Some((
            "link".into(),
            target.into_os_string().into_encoded_bytes(),
            mode,
        ));
    }
    if meta.is_dir() {
        return Some(("dir".into(), Vec::new(), mode));
    }
    if meta.file_type().is_fifo() {
        return Some(("fifo".into(), Vec::new(), mode));
    }
    Some(("file".into(), std::fs::read(path).unwrap(), mode))
}

/// Run one case; `Err` describes how it failed.
async fn run(case: Case) -> Result<(), String> {
    let scenario = Scenario::empty();
    let path = &scenario.path;
    match case.file {
        FileSetup::Bytes(bytes) => {
            std::fs::write(path, bytes).unwrap();
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        FileSetup::Absent => {}
        FileSetup::Directory => std::fs::create_dir(path).unwrap(),
        FileSetup::SymlinkLoop => symlink(".credentials.json", path).unwrap(),
        FileSetup::DanglingSymlink => symlink("nowhere.json", path).unwrap(),
        FileSetup::Fifo => {
            let made = std::process::Command::new("mkfifo")
                .args(["-m", "600"])
                .arg(path)
                .status()
                .unwrap();
            assert!(made.success(), "mkfifo failed");
        }
        FileSetup::LinkToDevZero => symlink("/dev/zero", path).unwrap(),
    }
    let endpoint = TokenEndpoint::start().await.unwrap();
    let mut config = config(&endpoint).with_refresh_timeout(Duration::from_secs(2));
    match case.endpoint {
        Endpoint::Knows(replies) => {
            endpoint.accept_refresh_token(REFRESH);
            replies.into_iter().for_each(|r| endpoint.inject(r));
        }
        Endpoint::Stranger => {}
        Endpoint::ClosedPort => config = config.with_token_url("http://127.0.0.1:1/v1/oauth/token"),
    }
    let before = snapshot(path);
    let started = Instant::now();
    let provider =
        ClaudeCodeOAuthProvider::with_config(FileCredentialStore::with_path(path), config);
    let result = tokio::time::timeout(Duration::from_secs(20), provider.header_value()).await;
    let elapsed = started.elapsed();
    let error = match result {
        Err(_) => return Err("hung for 20 s".into()),
        Ok(Ok(_)) => return Err("succeeded".into()),
        Ok(Err(error)) => error,
    };
    let message = error.to_string();
    let (want_variant, want_reaction, says) = case.want;
    let mut problems = Vec::new();
    if variant(&error) != want_variant {
        problems.push(format!("variant {} (want {want_variant})", variant(&error)));
    }
    if reaction(&error) != want_reaction {
        problems.push(format!(
            "reaction {} (want {want_reaction})",
            reaction(&error)
        ));
    }
    if !message.contains(says) {
        problems.push(format!("message lacks {says:?}"));
    }
    if message.contains("SECRET") || message.contains("sk-ant") {
        problems.push("message holds a secret".into());
    }
    if snapshot(path) != before {
        problems.push("the file changed".into());
    }
    if elapsed > Duration::from_secs(10) {
        problems.push(format!("took {elapsed:?}"));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("{}; message: {message}", problems.join(", ")))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_hostile_input_is_a_typed_error_that_loses_nothing() {
    let cases: Vec<Case> = file_cases().into_iter().chain(endpoint_cases()).collect();
    let count = cases.len();
    assert!(count >= 45, "the corpus has {count} cases");
    eprintln!("hostile inputs: {count} cases");
    let runs: Vec<_> = cases
        .into_iter()
        .map(|case| {
            let name = case.name;
            (name, tokio::spawn(run(case)))
        })
        .collect();
    let mut failures = Vec::new();
    for (name, run) in runs {
        match run.await {
            Ok(Ok(())) => {}
            Ok(Err(why)) => failures.push(format!("{name}: {why}")),
            Err(panic) => failures.push(format!("{name}: panicked: {panic}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {count} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
