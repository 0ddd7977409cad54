//! Shared pieces of the scenario tests: fixtures copied into temp dirs, the fixed clock, the
//! loopback token endpoint primed for a fixture, and the CLI run as a real process.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use claude_code_auth_testkit::loopback::TokenEndpoint;
use entelix_auth_claude_code::{ClaudeCodeAuthError, ClaudeCodeOAuthConfig};
use serde_json::Value;
use std::process::{Child, Stdio};
use tempfile::TempDir;

/// Exit codes the README documents for `claude-code-auth`: no credential, expired or logged
/// out, refused, unreachable. Written out here: the tests hold the CLI to its documentation.
pub const EXIT_MISSING: i32 = 3;
/// See [`EXIT_MISSING`].
pub const EXIT_EXPIRED: i32 = 4;
/// See [`EXIT_MISSING`].
pub const EXIT_REFUSED: i32 = 5;
/// See [`EXIT_MISSING`].
pub const EXIT_UNREACHABLE: i32 = 6;

/// The test clock: 2030-03-17T17:46:40Z. Fixture expiries are relative to it.
pub const NOW_MS: i64 = 1_900_000_000_000;

/// [`NOW_MS`] as a `SystemTime`.
pub fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(NOW_MS as u64)
}

/// A credential file in its own temp dir, copied from `tests/fixtures/<name>/`.
pub struct Scenario {
    _dir: TempDir,
    /// The credential file.
    pub path: PathBuf,
}

impl Scenario {
    /// The fixture as is, for tests that show the component the fixed clock.
    pub fn fixture(name: &str) -> Self {
        let scenario = Self::empty();
        std::fs::copy(fixture_path(name), &scenario.path).expect("copy fixture");
        set_private(&scenario.path);
        scenario
    }

    /// The fixture with every `expiresAt` moved so it lies as far from the real clock as it lay
    /// from [`NOW_MS`]: for processes, which see the real clock.
    pub fn fixture_now(name: &str) -> Self {
        let scenario = Self::empty();
        let mut doc: Value =
            serde_json::from_slice(&std::fs::read(fixture_path(name)).unwrap()).unwrap();
        let shift = real_now_ms() - NOW_MS;
        shift_expiries(&mut doc, shift);
        std::fs::write(&scenario.path, doc.to_string()).unwrap();
        set_private(&scenario.path);
        scenario
    }

    /// A temp dir with no credential file in it yet.
    pub fn empty() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join(".credentials.json");
        Self { _dir: dir, path }
    }

    /// The directory holding the credential file.
    pub fn dir(&self) -> &Path {
        self.path.parent().unwrap()
    }

    /// The file's bytes.
    pub fn bytes(&self) -> Vec<u8> {
        std::fs::read(&self.path).expect("read credential file")
    }

    /// The file as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.bytes()).expect("credential file is JSON")
    }

    /// `claudeAiOauth.<field>` as a string.
    pub fn oauth(&self, field: &str) -> String {
        self.json()["claudeAiOauth"][field]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Permission bits of the file.
    pub fn mode(&self) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(&self.path).unwrap().permissions().mode() & 0o7777
    }

    /// A token endpoint that accepts this scenario's refresh token.
    pub async fn endpoint(&self) -> TokenEndpoint {
        let endpoint = TokenEndpoint::start().await.expect("start token endpoint");
        if self.path.exists() {
            let refresh = self.oauth("refreshToken");
            if !refresh.is_empty() {
                endpoint.accept_refresh_token(&refresh);
            }
        }
        endpoint
    }
}

/// `tests/fixtures/<name>/.credentials.json`.
pub fn fixture_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(name)
        .join(".credentials.json")
}

/// The configuration tests use: the endpoint's URL and the fixed clock.
pub fn config(endpoint: &TokenEndpoint) -> ClaudeCodeOAuthConfig {
    ClaudeCodeOAuthConfig::new()
        .with_token_url(endpoint.url())
        .with_clock(now)
}

/// Everything but the token fields of `doc`, for "every other key survived" checks.
pub fn without_token_fields(mut doc: Value) -> Value {
    let oauth = doc["claudeAiOauth"].as_object_mut().expect("oauth section");
    for field in ["accessToken", "refreshToken", "expiresAt", "scopes"] {
        oauth.remove(field);
    }
    doc
}

fn shift_expiries(value: &mut Value, shift: i64) {
    match value {
        Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                match child {
                    Value::Number(n) if key == "expiresAt" => {
                        *child = Value::from(n.as_i64().unwrap() + shift);
                    }
                    other => shift_expiries(other, shift),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| shift_expiries(i, shift)),
        _ => {}
    }
}

fn set_private(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// The real clock in Unix milliseconds.
pub fn real_now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// The `claude-code-auth` binary the scenarios run: the one cargo built for this test, or the
/// one `CLAUDE_CODE_AUTH_TEST_BIN` names (to run the same scenarios against another build, such
/// as an earlier release, and see which fail there).
pub fn cli_binary() -> std::path::PathBuf {
    std::env::var_os("CLAUDE_CODE_AUTH_TEST_BIN")
        .map_or_else(|| env!("CARGO_BIN_EXE_claude-code-auth").into(), Into::into)
}

/// The compiled-component cache every CLI process of the tests shares, whatever `HOME` a test
/// gives it and whether or not the machine sets `XDG_CACHE_HOME`: else each process of a test
/// with a home of its own compiles the component (seconds in debug, 32 at once in the fleet
/// tests) and writes `.cache/` into that home (a full disk, a directory listing).
pub fn component_cache_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("component-cache")
}

/// Run the CLI once per test binary so the compiled component is cached before a test times
/// processes or starts them side by side (each would otherwise compile it, seconds in debug).
pub fn warm_component_cache() {
    static WARM: std::sync::Once = std::sync::Once::new();
    WARM.call_once(|| {
        let output = Command::new(cli_binary())
            .env("CLAUDE_CODE_AUTH_CACHE_DIR", component_cache_dir())
            .args(["status", "--credentials", "/nonexistent/.credentials.json"])
            .output()
            .expect("run claude-code-auth");
        let cached = std::fs::read_dir(component_cache_dir())
            .map(|entries| {
                entries
                    .flatten()
                    .any(|e| e.file_name().to_string_lossy().ends_with(".cwasm"))
            })
            .unwrap_or(false);
        assert!(
            cached,
            "the CLI cached no compiled component: {:?}",
            String::from_utf8_lossy(&output.stderr)
        );
    });
}

/// The `claude-code-auth` binary, with no credential location inherited from the machine.
pub fn cli_command(home: &Path) -> Command {
    let mut command = Command::new(cli_binary());
    without_machine_settings(&mut command, home);
    command
}

/// `command` (the CLI, or something that runs it) with no credential location inherited from
/// the machine, and `home` as its home; the compiled component cached first.
pub fn without_machine_settings(command: &mut Command, home: &Path) {
    warm_component_cache();
    command
        .env_remove("CLAUDE_CONFIG_DIR")
        .env_remove("CLAUDE_CODE_OAUTH_TOKEN")
        .env_remove("CLAUDE_CODE_AUTH_STORE")
        .env_remove("CLAUDE_CODE_AUTH_STORE_KEY")
        .env_remove("CLAUDE_CODE_AUTH_STORE_SECRET_FILE")
        .env_remove("CLAUDE_CODE_AUTH_STORE_CA_FILE")
        .env("HOME", home)
        .env_remove("USERPROFILE")
        .env("CLAUDE_CODE_AUTH_CACHE_DIR", component_cache_dir())
        // State of its own (rescue files, Redis marks), as a machine of its own has.
        .env("CLAUDE_CODE_AUTH_STATE_DIR", home.join(".ccauth-state"));
}

/// Run the CLI with `args` (on a blocking thread, so a loopback server in this process keeps
/// serving) and return its output.
pub async fn cli(home: &Path, args: &[&str]) -> Output {
    let mut command = cli_command(home);
    command.args(args);
    tokio::task::spawn_blocking(move || command.output().expect("run claude-code-auth"))
        .await
        .unwrap()
}

/// Stdout and stderr as text.
pub fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// How entelix is told to react to `error`: `missing`, `expired`, `refused` or `unreachable`.
pub fn reaction(error: &ClaudeCodeAuthError) -> &'static str {
    use entelix_core::auth::AuthError;
    match entelix_core::Error::Auth(error.to_auth_error()) {
        entelix_core::Error::Auth(AuthError::Missing { .. }) => "missing",
        entelix_core::Error::Auth(AuthError::Expired { .. }) => "expired",
        entelix_core::Error::Auth(AuthError::Refused { .. }) => "refused",
        entelix_core::Error::Auth(AuthError::SourceUnreachable { .. }) => "unreachable",
        _ => "other",
    }
}

/// An expired credential of a fresh login at `endpoint`, with the fixture's other keys, for
/// processes (expiries relative to the real clock).
pub fn expired_login(endpoint: &TokenEndpoint) -> Scenario {
    let scenario = Scenario::fixture_now("expired");
    let login = endpoint.login();
    let mut doc = scenario.json();
    doc["claudeAiOauth"]["accessToken"] = login.access_token.into();
    doc["claudeAiOauth"]["refreshToken"] = login.refresh_token.into();
    std::fs::write(&scenario.path, doc.to_string()).unwrap();
    scenario
}

/// `claude-code-auth <args> --credentials <path> --token-url <url>` as a child process.
pub fn spawn_cli(path: &Path, url: &str, args: &[&str]) -> Child {
    let home = path.parent().unwrap();
    cli_command(home)
        .args(args)
        .arg("--credentials")
        .arg(path)
        .args(["--token-url", url])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Wait for `child` off the async runtime (a loopback server in this process keeps serving).
pub async fn finish(child: Child) -> Output {
    tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap()
}

/// Wait until the token endpoint has seen `n` requests (at most 30 s).
pub async fn until_requests(endpoint: &TokenEndpoint, n: usize) {
    let started = std::time::Instant::now();
    while endpoint.requests().len() < n {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no request came"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// [`finish`] for each of `children`, in order.
pub async fn finish_all(children: Vec<Child>) -> Vec<Output> {
    tokio::task::spawn_blocking(move || {
        children
            .into_iter()
            .map(|c| c.wait_with_output().unwrap())
            .collect()
    })
    .await
    .unwrap()
}

/// A small Messages API request with `betas`, as an entelix application sends it.
pub fn messages_request(betas: &[&str]) -> entelix_core::ir::ModelRequest {
    use entelix_core::ir::{AnthropicExt, Message, ModelRequest, ProviderExtensions};
    ModelRequest {
        model: "claude-sonnet-4-5".into(),
        messages: vec![Message::user("Say hello.")],
        max_tokens: Some(64),
        provider_extensions: ProviderExtensions::default()
            .with_anthropic(AnthropicExt::default().with_betas(betas.iter().copied())),
        ..ModelRequest::default()
    }
}
