//! The real `claude` CLI (npm `@anthropic-ai/claude-code`, pinned) beside ours, on one
//! credential file. Each scenario runs in its own network namespace whose only interface is
//! `lo` (`unshare --net`, as root): the CLI reaches "platform.claude.com" and
//! "api.anthropic.com" through a loopback proxy that terminates its TLS with a throw-away CA
//! and answers with the loopback token endpoint (which rotates refresh tokens and revokes the
//! whole login when a spent one comes back) and Messages API. Every scenario asserts exactly one
//! refresh grant and no spent token ever presented again.
//!
//! Without npm, or where a network namespace cannot be made, the scenarios are skipped with a
//! message that says so.

mod install;
mod proxy;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::text;
use claude_code_auth_testkit::loopback::{MessagesApi, TokenEndpoint};
use serde_json::{Value, json};

/// Where the scenario runner tells a scenario which `claude` to run.
const CLAUDE_ENV: &str = "CLAUDE_CODE_AUTH_PEER_CLAUDE";

/// The scenarios, each run in a fresh network namespace.
const SCENARIOS: [&str; 4] = [
    "ours_first_while_the_cli_waits",
    "the_cli_first_and_ours_adopts",
    "both_storming_at_once",
    "the_cli_blanks_the_login_and_ours_says_run_claude_login",
];

#[test]
fn the_real_claude_cli_as_a_peer() {
    let claude = match install::claude() {
        Ok(path) => path,
        Err(why) => {
            visible(&format!(
                "SKIPPED the real claude CLI scenarios (tests/scenarios/claude_cli.rs): {why}"
            ));
            return;
        }
    };
    crate::support::warm_component_cache();
    let probe = Command::new("unshare")
        .args(["--net", "ip", "link", "set", "lo", "up"])
        .output();
    if !probe.as_ref().is_ok_and(|o| o.status.success()) {
        visible(&format!(
            "SKIPPED the real claude CLI scenarios (tests/scenarios/claude_cli.rs): a network namespace \
             with `lo` up cannot be made here (`unshare --net` needs root, `ip` iproute2): \
             {probe:?}"
        ));
        return;
    }
    let this = std::env::current_exe().unwrap();
    for scenario in SCENARIOS {
        let started = Instant::now();
        let output = Command::new("unshare")
            .args(["--net", "--"])
            .arg(&this)
            .args(["--ignored", "--exact", "--nocapture", "--test-threads=1"])
            .arg(format!("claude_cli::inside::{scenario}"))
            .env(CLAUDE_ENV, &claude)
            .output()
            .unwrap();
        let (stdout, stderr) = text(&output);
        assert!(
            output.status.success() && stdout.contains("1 passed"),
            "{scenario}:\n{stdout}\n{stderr}"
        );
        let summary = stderr
            .lines()
            .filter(|l| l.starts_with("peer:"))
            .collect::<Vec<_>>()
            .join("\n");
        visible(&format!(
            "real claude CLI {}: {scenario} ({:.1?}):\n{summary}",
            install::VERSION,
            started.elapsed()
        ));
    }
}

/// A line on the terminal even when the test harness captures output (it captures `eprintln!`,
/// not writes to the stream itself): a skip must be seen.
fn visible(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// Behind a corporate proxy that inspects TLS, as the CLI is (`HTTPS_PROXY`, and the proxy's CA
/// added with `SSL_CERT_FILE`): ours refreshes through its tunnel, reaching only the token
/// endpoint; without the CA it says the certificate is not trusted, once, and does not retry as
/// if the service were down. No network namespace needed: ours talks to the loopback proxy only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ours_through_a_proxy_that_inspects_tls() {
    let endpoint = TokenEndpoint::start().await.unwrap();
    let api = MessagesApi::start(endpoint.access_token_checker())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let routes = proxy::routes(endpoint.handler(), api.handler(), "claude_max");
    let proxy = proxy::Proxy::start(routes, dir.path()).await;
    let url = "https://platform.claude.com/v1/oauth/token";
    let ours = |path: &Path, trust: bool| {
        let mut command = crate::support::cli_command(path.parent().unwrap());
        command
            .args(["token", "--credentials"])
            .arg(path)
            .args(["--token-url", url])
            .env("HTTPS_PROXY", proxy.url())
            .env_remove("NO_PROXY")
            .env_remove("no_proxy")
            .env_remove("NODE_EXTRA_CA_CERTS")
            .env_remove("SSL_CERT_FILE");
        if trust {
            command.env("SSL_CERT_FILE", proxy.ca());
        }
        command
    };

    let scenario = crate::support::expired_login(&endpoint);
    let output = run(ours(&scenario.path, true)).await;
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    assert!(endpoint.accepts_access_token(stdout.trim()));
    assert_eq!(endpoint.grants_served(), 1);
    let through: Vec<_> = proxy
        .seen()
        .iter()
        .map(|(host, r)| format!("{host} {}", r.path))
        .collect();
    assert_eq!(through, ["platform.claude.com /v1/oauth/token"]);

    let scenario = crate::support::expired_login(&endpoint);
    let tunnels = proxy.tunnels();
    let requests = endpoint.requests().len();
    let output = run(ours(&scenario.path, false)).await;
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(5), "{stderr}");
    assert!(
        stderr.contains("certificate is not trusted") && stderr.contains("SSL_CERT_FILE"),
        "{stderr}"
    );
    assert_eq!(
        proxy.tunnels(),
        tunnels + 1,
        "retried as if the service were down"
    );
    assert_eq!(
        endpoint.requests().len(),
        requests,
        "nothing reached the endpoint"
    );
}

/// One scenario's world, inside its network namespace.
struct Bed {
    claude: PathBuf,
    home: tempfile::TempDir,
    endpoint: TokenEndpoint,
    _api: MessagesApi,
    proxy: proxy::Proxy,
}

impl Bed {
    /// `None` outside the namespace the runner makes (a scenario run by hand).
    async fn start() -> Option<Self> {
        let claude = PathBuf::from(std::env::var_os(CLAUDE_ENV)?);
        let up = Command::new("ip")
            .args(["link", "set", "lo", "up"])
            .status()
            .unwrap();
        assert!(up.success(), "cannot bring lo up");
        let endpoint = TokenEndpoint::start().await.unwrap();
        let api = MessagesApi::start(endpoint.access_token_checker())
            .await
            .unwrap();
        let home = tempfile::tempdir().unwrap();
        let routes = proxy::routes(endpoint.handler(), api.handler(), "claude_max");
        let proxy = proxy::Proxy::start(routes, home.path()).await;
        std::fs::create_dir(home.path().join(".claude")).unwrap();
        Some(Self {
            claude,
            home,
            endpoint,
            _api: api,
            proxy,
        })
    }

    fn config_dir(&self) -> PathBuf {
        self.home.path().join(".claude")
    }

    fn credentials(&self) -> PathBuf {
        self.config_dir().join(".credentials.json")
    }

    /// An expired login of the endpoint's, as the CLI writes it.
    fn expired_login(&self) {
        let login = self.endpoint.login();
        self.write_login(&login.access_token, &login.refresh_token);
    }

    fn write_login(&self, access: &str, refresh: &str) {
        let doc = json!({
            "claudeAiOauth": {
                "accessToken": access,
                "refreshToken": refresh,
                "expiresAt": crate::support::real_now_ms() - 60_000,
                "scopes": ["user:inference", "user:profile", "user:sessions:claude_code"],
                "subscriptionType": "max",
                "rateLimitTier": "default_claude_max_20x",
            },
            "mcpOAuth": {"peer": {"accessToken": "kept-by-both"}},
        });
        std::fs::write(self.credentials(), doc.to_string()).unwrap();
        set_private(&self.credentials());
    }

    fn stored(&self) -> Value {
        serde_json::from_slice(&std::fs::read(self.credentials()).unwrap()).unwrap()
    }

    /// `claude -p hello`, talking to the proxy only.
    fn claude(&self) -> Command {
        let mut command = Command::new(&self.claude);
        command
            .args(["-p", "hello"])
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.home.path())
            .env("CLAUDE_CONFIG_DIR", self.config_dir())
            .env("HTTPS_PROXY", self.proxy.url())
            .env("HTTP_PROXY", self.proxy.url())
            .env("https_proxy", self.proxy.url())
            .env("http_proxy", self.proxy.url())
            .env("NODE_EXTRA_CA_CERTS", self.proxy.ca())
            .env("DISABLE_AUTOUPDATER", "1")
            .env("DISABLE_TELEMETRY", "1")
            .env("DISABLE_ERROR_REPORTING", "1")
            .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    }

    /// Our CLI on the same file, against the same token endpoint.
    fn ours(&self, args: &[&str]) -> Command {
        let mut command = crate::support::cli_command(self.home.path());
        command
            .args(args)
            .arg("--credentials")
            .arg(self.credentials())
            .args(["--token-url", &self.endpoint.url()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    }

    /// What every scenario ends with: exactly one grant, nothing revoked, the stored refresh
    /// token the live one, other keys kept.
    fn assert_one_grant_and_no_reuse(&self) {
        assert_eq!(self.endpoint.grants_served(), 1, "{}", self.report());
        assert_eq!(self.endpoint.revoked_families(), 0, "{}", self.report());
        let stored = self.stored();
        let refresh = stored["claudeAiOauth"]["refreshToken"].as_str().unwrap();
        assert!(
            self.endpoint.refresh_token_is_live(refresh),
            "{}",
            self.report()
        );
        assert_eq!(stored["mcpOAuth"]["peer"]["accessToken"], "kept-by-both");
    }

    /// Refresh requests the CLI made (through the proxy; ours go to the endpoint directly).
    fn refreshes_by_the_cli(&self) -> usize {
        self.proxy
            .seen()
            .iter()
            .filter(|(_, r)| r.path == "/v1/oauth/token")
            .count()
    }

    /// What reached the endpoint and the proxy, for failure messages and the summary.
    fn report(&self) -> String {
        let token_requests = self.endpoint.requests();
        let through_proxy: Vec<String> = self
            .proxy
            .seen()
            .iter()
            .map(|(host, r)| format!("{host} {} {}", r.method, r.path))
            .collect();
        format!(
            "peer: grants {}, revoked families {}, token requests {} (user agents {:?}); through the proxy: {:?}",
            self.endpoint.grants_served(),
            self.endpoint.revoked_families(),
            token_requests.len(),
            token_requests
                .iter()
                .map(|r| r.header("user-agent").unwrap_or("-").to_owned())
                .collect::<Vec<_>>(),
            through_proxy
        )
    }
}

fn set_private(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// Run `command` to its end off the async runtime (the stand-ins in this process keep serving).
async fn run(mut command: Command) -> Output {
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

fn spawn(mut command: Command) -> std::process::Child {
    command.spawn().unwrap()
}

async fn wait_for(child: std::process::Child) -> Output {
    tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap()
}

/// Wait until the token endpoint has seen `n` requests.
async fn until_requests(endpoint: &TokenEndpoint, n: usize) {
    let started = Instant::now();
    while endpoint.requests().len() < n {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no request came"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn ours_printed_the_stored_token(output: &Output, bed: &Bed) {
    let (stdout, stderr) = text(output);
    assert!(output.status.success(), "ours: {stderr}\n{}", bed.report());
    assert_eq!(
        stdout.trim(),
        bed.stored()["claudeAiOauth"]["accessToken"],
        "{}",
        bed.report()
    );
}

fn claude_succeeded(output: &Output, bed: &Bed) {
    let (stdout, stderr) = text(output);
    assert!(
        output.status.success() && stdout.contains("loopback Messages API"),
        "claude: {stdout}\n{stderr}\n{}",
        bed.report()
    );
}

mod inside {
    use super::*;

    /// Ours refreshes (a slow answer keeps it inside the locks), the CLI starts meanwhile: it
    /// waits for our locks and then uses the token we stored.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "runs inside a network namespace, started by the_real_claude_cli_as_a_peer"]
    async fn ours_first_while_the_cli_waits() {
        one_refreshes_the_other_waits(false).await;
    }

    /// The CLI refreshes first (its answer slow); ours starts meanwhile, waits for the CLI's
    /// locks and adopts the token the CLI stored, without a refresh of its own.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "runs inside a network namespace, started by the_real_claude_cli_as_a_peer"]
    async fn the_cli_first_and_ours_adopts() {
        one_refreshes_the_other_waits(true).await;
    }

    /// One refreshes (the CLI when `cli_first`, else ours), its answer slow; the other starts
    /// once the request is out, waits for its locks, and uses the token it stored.
    async fn one_refreshes_the_other_waits(cli_first: bool) {
        let Some(bed) = Bed::start().await else {
            return;
        };
        bed.expired_login();
        bed.endpoint
            .set_latency(Duration::from_millis(2000)..Duration::from_millis(2001));
        let (first, second) = if cli_first {
            (bed.claude(), bed.ours(&["token"]))
        } else {
            (bed.ours(&["token"]), bed.claude())
        };
        let first = spawn(first);
        until_requests(&bed.endpoint, 1).await;
        let second = wait_for(spawn(second)).await;
        let first = wait_for(first).await;
        let (ours, claude) = if cli_first {
            (second, first)
        } else {
            (first, second)
        };
        ours_printed_the_stored_token(&ours, &bed);
        claude_succeeded(&claude, &bed);
        bed.assert_one_grant_and_no_reuse();
        assert_eq!(
            bed.refreshes_by_the_cli(),
            usize::from(cli_first),
            "only the first refreshed"
        );
        eprintln!("{}", bed.report());
    }

    /// Three CLIs and six of ours on one expired login at once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "runs inside a network namespace, started by the_real_claude_cli_as_a_peer"]
    async fn both_storming_at_once() {
        let Some(bed) = Bed::start().await else {
            return;
        };
        bed.expired_login();
        bed.endpoint
            .set_latency(Duration::from_millis(300)..Duration::from_millis(400));
        let mut children = Vec::new();
        for i in 0..9 {
            let mut command = if i % 3 == 0 {
                bed.claude()
            } else {
                bed.ours(&["token"])
            };
            children.push((i % 3 == 0, command.spawn().unwrap()));
        }
        for (is_claude, child) in children {
            let output = wait_for(child).await;
            if is_claude {
                claude_succeeded(&output, &bed);
            } else {
                ours_printed_the_stored_token(&output, &bed);
            }
        }
        bed.assert_one_grant_and_no_reuse();
        eprintln!("{}", bed.report());
    }

    /// The CLI presents a refresh token the service rejects: it blanks the login in place (its
    /// logged-out shape); ours then says to run `claude login`, exits 4, and writes nothing.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "runs inside a network namespace, started by the_real_claude_cli_as_a_peer"]
    async fn the_cli_blanks_the_login_and_ours_says_run_claude_login() {
        let Some(bed) = Bed::start().await else {
            return;
        };
        bed.write_login(
            "sk-ant-oat01-never-issued",
            "sk-ant-ort01-unknown-to-the-endpoint",
        );
        let claude = run(bed.claude()).await;
        let (stdout, stderr) = text(&claude);
        let stored = bed.stored();
        assert_eq!(
            (
                &stored["claudeAiOauth"]["accessToken"],
                &stored["claudeAiOauth"]["refreshToken"],
                &stored["claudeAiOauth"]["expiresAt"],
            ),
            (&json!(""), &json!(""), &json!(0)),
            "the CLI's logged-out shape; claude said {stdout}{stderr}\n{}",
            bed.report()
        );
        let before = std::fs::read(bed.credentials()).unwrap();
        let requests = bed.endpoint.requests().len();
        let ours = run(bed.ours(&["token"])).await;
        let (stdout, stderr) = text(&ours);
        assert_eq!(ours.status.code(), Some(4), "{stderr}");
        assert!(
            stdout.is_empty() && stderr.contains("run `claude login`"),
            "{stderr}"
        );
        let status = run(bed.ours(&["status", "--json"])).await;
        assert_eq!(status.status.code(), Some(4));
        let json: Value = serde_json::from_slice(&status.stdout).unwrap();
        assert_eq!(json["loggedIn"], false);
        assert_eq!(std::fs::read(bed.credentials()).unwrap(), before);
        assert_eq!(bed.endpoint.requests().len(), requests, "ours sent nothing");
        assert_eq!(bed.endpoint.grants_served(), 0);
        eprintln!("{}", bed.report());
    }
}
