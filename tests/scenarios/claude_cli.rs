//! The real `claude` CLI (npm `@anthropic-ai/claude-code`, every pinned version in
//! `install::VERSIONS`) beside ours, on one credential file. Each scenario runs in its own network namespace whose only interface is
//! `lo` (`unshare --net`, as root): the CLI reaches "platform.claude.com" and
//! "api.anthropic.com" through a loopback proxy that terminates its TLS with a throw-away CA
//! and answers with the loopback token endpoint (which rotates refresh tokens and revokes the
//! whole login when a spent one comes back) and Messages API. Every scenario that refreshes
//! asserts exactly one refresh grant and no spent token ever presented again.
//!
//! Without npm, or where a network namespace cannot be made, the scenarios are skipped with a
//! message that says so.

mod install;
mod proxy;
mod sandbox;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::support::{finish, text, until_requests};
use claude_code_auth_testkit::loopback::{Handler, MessagesApi, Reply, Response, TokenEndpoint};
use serde_json::{Value, json};

/// Where the scenario runner tells a scenario which `claude` to run, and which version it is.
const CLAUDE_ENV: &str = "CLAUDE_CODE_AUTH_PEER_CLAUDE";
const VERSION_ENV: &str = "CLAUDE_CODE_AUTH_PEER_VERSION";

/// A scenario, and the first CLI version whose protocol it is about (the CLI 2.1.197 has no
/// owner record, no `loginEnded`, no `claude auth logout` that deletes the login).
struct Scenario {
    name: &'static str,
    since: &'static str,
}

/// Scenarios run in a sandbox made with `bwrap` (Debian's `bubblewrap`).
fn in_a_sandbox(name: &str) -> bool {
    name.contains("sandbox")
}

/// The scenarios, each run in a fresh network namespace against every version it applies to.
const SCENARIOS: [Scenario; 12] = [
    Scenario {
        name: "ours_first_while_the_cli_waits",
        since: "2.1.197",
    },
    Scenario {
        name: "the_cli_first_and_ours_adopts",
        since: "2.1.197",
    },
    Scenario {
        name: "both_storming_at_once",
        since: "2.1.197",
    },
    Scenario {
        name: "the_cli_blanks_the_login_and_ours_says_run_claude_login",
        since: "2.1.197",
    },
    Scenario {
        name: "other_logins_in_the_file_survive_ours_and_the_clis_writes",
        since: "2.1.197",
    },
    Scenario {
        name: "ours_killed_holding_the_lock_the_cli_takes_over_in_seconds",
        since: "2.1.332",
    },
    Scenario {
        name: "the_cli_killed_holding_the_lock_ours_takes_over_at_once",
        since: "2.1.332",
    },
    Scenario {
        name: "the_cli_ends_a_login_at_its_time_limit_and_ours_says_so",
        since: "2.1.332",
    },
    Scenario {
        name: "the_cli_logs_out_and_ours_says_not_logged_in",
        since: "2.1.332",
    },
    Scenario {
        name: "a_sandboxed_cli_works_through_a_refresh_with_no_refresh_token_in_reach",
        since: "2.1.197",
    },
    Scenario {
        name: "a_sandboxed_cli_with_a_config_dir_of_its_own_reads_its_login_from_a_mirror",
        since: "2.1.197",
    },
    Scenario {
        name: "three_sandboxes_and_the_host_cli_share_one_login",
        since: "2.1.197",
    },
];

/// `a` is the same release as `b` or a later one (dotted numbers).
fn at_least(a: &str, b: &str) -> bool {
    let parts = |v: &str| -> Vec<u32> { v.split('.').map(|p| p.parse().unwrap_or(0)).collect() };
    parts(a) >= parts(b)
}

#[test]
fn the_real_claude_cli_as_a_peer() {
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
    crate::support::warm_component_cache();
    // The fault shim, built before any namespace needs it.
    let _ = crate::faults::shim();
    let this = std::env::current_exe().unwrap();
    for version in install::VERSIONS {
        let claude = match install::claude(version) {
            Ok(path) => path,
            Err(why) => {
                visible(&format!(
                    "SKIPPED the real claude CLI {version} scenarios (tests/scenarios/claude_cli.rs): {why}"
                ));
                continue;
            }
        };
        let bwrap = Command::new("bwrap")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        for scenario in SCENARIOS.iter().filter(|s| at_least(version, s.since)) {
            let name = scenario.name;
            if in_a_sandbox(name) && !bwrap {
                visible(&format!(
                    "SKIPPED real claude CLI {version}: {name}: bwrap (Debian's bubblewrap) is not installed"
                ));
                continue;
            }
            let started = Instant::now();
            let output = Command::new("unshare")
                .args(["--net", "--"])
                .arg(&this)
                .args(["--ignored", "--exact", "--nocapture", "--test-threads=1"])
                .arg(format!("claude_cli::inside::{name}"))
                .env(CLAUDE_ENV, &claude)
                .env(VERSION_ENV, version)
                .output()
                .unwrap();
            let (stdout, stderr) = text(&output);
            assert!(
                output.status.success() && stdout.contains("1 passed"),
                "claude {version}, {name}:\n{stdout}\n{stderr}"
            );
            let summary = stderr
                .lines()
                .filter(|l| l.starts_with("peer:"))
                .collect::<Vec<_>>()
                .join("\n");
            visible(&format!(
                "real claude CLI {version}: {name} ({:.1?}):\n{summary}",
                started.elapsed()
            ));
        }
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
    version: String,
    home: tempfile::TempDir,
    endpoint: TokenEndpoint,
    api: MessagesApi,
    proxy: proxy::Proxy,
    gate: Arc<Gate>,
}

/// Holds the CLI's refresh requests at the proxy when asked: they never reach the token
/// endpoint (nothing is rotated) and are never answered.
#[derive(Default)]
struct Gate {
    hold: AtomicBool,
    held: AtomicUsize,
}

impl Bed {
    /// `None` outside the namespace the runner makes (a scenario run by hand).
    async fn start() -> Option<Self> {
        let claude = PathBuf::from(std::env::var_os(CLAUDE_ENV)?);
        let version = std::env::var(VERSION_ENV).unwrap_or_default();
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
        let gate = Arc::new(Gate::default());
        let token: Handler = {
            let (gate, endpoint) = (gate.clone(), endpoint.handler());
            Arc::new(move |request| {
                if gate.hold.load(Ordering::SeqCst) {
                    gate.held.fetch_add(1, Ordering::SeqCst);
                    return Reply::Delay(
                        Duration::from_secs(600),
                        Response::json(503, &json!({"error": "held"})),
                    );
                }
                endpoint(request)
            })
        };
        let routes = proxy::routes(token, api.handler(), "claude_max");
        let proxy = proxy::Proxy::start(routes, home.path()).await;
        std::fs::create_dir(home.path().join(".claude")).unwrap();
        Some(Self {
            claude,
            version,
            home,
            endpoint,
            api,
            proxy,
            gate,
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
        self.write_document(&self.login_document(access, refresh, -60_000));
    }

    /// A document holding this login, expiring `expires_in_ms` from now, and an MCP token.
    fn login_document(&self, access: &str, refresh: &str, expires_in_ms: i64) -> Value {
        json!({
            "claudeAiOauth": {
                "accessToken": access,
                "refreshToken": refresh,
                "expiresAt": crate::support::real_now_ms() + expires_in_ms,
                "scopes": ["user:inference", "user:profile", "user:sessions:claude_code"],
                "subscriptionType": "max",
                "rateLimitTier": "default_claude_max_20x",
            },
            "mcpOAuth": {"peer": {"accessToken": "kept-by-both"}},
        })
    }

    fn write_document(&self, doc: &Value) {
        std::fs::write(self.credentials(), doc.to_string()).unwrap();
        set_private(&self.credentials());
    }

    fn stored(&self) -> Value {
        serde_json::from_slice(&std::fs::read(self.credentials()).unwrap()).unwrap()
    }

    /// `claude -p hello`, talking to the proxy only.
    fn claude(&self) -> Command {
        self.claude_with(&["-p", "hello"])
    }

    /// `claude <args>`, talking to the proxy only.
    fn claude_with(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.claude);
        command
            .args(args)
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

    /// Our CLI with `args` alone (no credential file: `--broker`, say).
    fn ours_bare(&self, args: &[&str]) -> Command {
        let mut command = crate::support::cli_command(self.home.path());
        command
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    }

    /// The bearer token of the Messages API's last request.
    fn last_api_token(&self) -> Option<String> {
        self.api.requests().last().and_then(|request| {
            request
                .header("authorization")
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::to_owned)
        })
    }

    /// What every scenario ends with: exactly one grant, nothing revoked, the stored refresh
    /// token the live one, other keys kept.
    fn assert_one_grant_and_no_reuse(&self) {
        self.assert_one_grant_and_no_reuse_over(1);
    }

    /// The same after `grants` grants.
    fn assert_one_grant_and_no_reuse_over(&self, grants: u64) {
        assert_eq!(self.endpoint.grants_served(), grants, "{}", self.report());
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
        let second = finish(spawn(second)).await;
        let first = finish(first).await;
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
            let output = finish(child).await;
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

    /// Wait up to 30 s for `done`.
    async fn until(what: &str, done: impl Fn() -> bool) {
        let started = Instant::now();
        while !done() {
            assert!(started.elapsed() < Duration::from_secs(30), "never: {what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// The config dir's refresh locks: `.oauth_refresh.lock` and the legacy `realpath(dir).lock`.
    fn refresh_locks(bed: &Bed) -> [PathBuf; 2] {
        let real = std::fs::canonicalize(bed.config_dir()).unwrap();
        let mut legacy = real.file_name().unwrap().to_os_string();
        legacy.push(".lock");
        [
            bed.config_dir().join(".oauth_refresh.lock"),
            real.with_file_name(legacy),
        ]
    }

    /// Ours is killed (`kill -9`) while it holds both refresh locks, before it sends anything:
    /// the owner record it left proves it gone, and the CLI 2.1.332 takes the lock over and
    /// refreshes within seconds instead of waiting out the 60 s stale time (meanwhile an expired
    /// login would fail every `claude` command). One grant: the CLI's.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "runs inside a network namespace, started by the_real_claude_cli_as_a_peer"]
    async fn ours_killed_holding_the_lock_the_cli_takes_over_in_seconds() {
        let Some(bed) = Bed::start().await else {
            return;
        };
        bed.expired_login();
        let mark = bed.home.path().join("paused-here");
        let mut ours = bed.ours(&["token"]);
        crate::faults::paused_at(&mut ours, "owner", &mark, 120_000);
        let mut ours = spawn(ours);
        until("ours holds the locks with its record", || mark.exists()).await;
        ours.kill().unwrap();
        ours.wait().unwrap();
        assert!(refresh_locks(&bed).iter().all(|lock| lock.exists()));
        assert!(bed.config_dir().join(".oauth_refresh.lock.owner").exists());
        let started = Instant::now();
        let claude = run(bed.claude()).await;
        let took = started.elapsed();
        claude_succeeded(&claude, &bed);
        assert!(
            took < Duration::from_secs(15),
            "the CLI took {took:?}\n{}",
            bed.report()
        );
        bed.assert_one_grant_and_no_reuse();
        assert_eq!(bed.refreshes_by_the_cli(), 1);
        eprintln!("peer: the CLI took the lock over and refreshed in {took:.1?}");
        eprintln!("{}", bed.report());
    }

    /// The CLI is killed (`kill -9`) while it holds both refresh locks, its refresh request
    /// held at the proxy (nothing rotated): its owner record proves it gone — the pid, the
    /// start time, and the locks' birth times as its runtime gives them, compared with ours —
    /// and ours takes the lock over at once. One grant: ours.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "runs inside a network namespace, started by the_real_claude_cli_as_a_peer"]
    async fn the_cli_killed_holding_the_lock_ours_takes_over_at_once() {
        let Some(bed) = Bed::start().await else {
            return;
        };
        bed.expired_login();
        bed.gate.hold.store(true, Ordering::SeqCst);
        let mut claude = spawn(bed.claude());
        until("the CLI sends its refresh", || {
            bed.gate.held.load(Ordering::SeqCst) > 0
        })
        .await;
        let record_path = bed.config_dir().join(".oauth_refresh.lock.owner");
        let record: Value = serde_json::from_slice(&std::fs::read(&record_path).unwrap()).unwrap();
        assert_eq!(record["pid"], claude.id(), "{record}");
        claude.kill().unwrap();
        claude.wait().unwrap();
        bed.gate.hold.store(false, Ordering::SeqCst);
        assert!(refresh_locks(&bed).iter().all(|lock| lock.exists()));
        let started = Instant::now();
        let ours = run(bed.ours(&["token"])).await;
        let took = started.elapsed();
        ours_printed_the_stored_token(&ours, &bed);
        assert!(
            took < Duration::from_secs(5),
            "ours took {took:?}\n{}",
            bed.report()
        );
        bed.assert_one_grant_and_no_reuse();
        assert_eq!(
            bed.endpoint.requests().len(),
            1,
            "only ours reached the endpoint"
        );
        assert!(refresh_locks(&bed).iter().all(|lock| !lock.exists()));
        assert!(!record_path.exists(), "the dead holder's record is gone");
        eprintln!("peer: ours took the lock over and refreshed in {took:.1?}");
        eprintln!("{}", bed.report());
    }

    /// The endpoint answers the CLI's refresh `invalid_grant` "Refresh token expired" (the
    /// login's time limit): the CLI blanks the login with `"loginEnded":"time_limit"`, and ours
    /// then says the login reached its time limit (exit 4), sending and writing nothing.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "runs inside a network namespace, started by the_real_claude_cli_as_a_peer"]
    async fn the_cli_ends_a_login_at_its_time_limit_and_ours_says_so() {
        let Some(bed) = Bed::start().await else {
            return;
        };
        bed.expired_login();
        bed.endpoint.inject(Reply::Respond(Response::json(
            400,
            &json!({"error": "invalid_grant", "error_description": "Refresh token expired"}),
        )));
        let claude = run(bed.claude()).await;
        let (stdout, stderr) = text(&claude);
        let stored = bed.stored();
        assert_eq!(
            (
                &stored["claudeAiOauth"]["accessToken"],
                &stored["claudeAiOauth"]["refreshToken"],
                &stored["claudeAiOauth"]["loginEnded"],
            ),
            (&json!(""), &json!(""), &json!("time_limit")),
            "claude said {stdout}{stderr}\n{}",
            bed.report()
        );
        let before = std::fs::read(bed.credentials()).unwrap();
        let requests = bed.endpoint.requests().len();
        for args in [&["token"][..], &["status"][..]] {
            let ours = run(bed.ours(args)).await;
            let (_, stderr) = text(&ours);
            assert_eq!(ours.status.code(), Some(4), "{args:?}: {stderr}");
            assert!(
                stderr.contains("reached its time limit") && stderr.contains("claude login"),
                "{args:?}: {stderr}"
            );
        }
        assert_eq!(std::fs::read(bed.credentials()).unwrap(), before);
        assert_eq!(bed.endpoint.requests().len(), requests, "ours sent nothing");
        eprintln!("{}", bed.report());
    }

    /// `claude auth logout` (2.1.332) deletes the login from the file: ours then says "not
    /// logged in" and to run `claude login` (exit 3), for `token` and `status` alike.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "runs inside a network namespace, started by the_real_claude_cli_as_a_peer"]
    async fn the_cli_logs_out_and_ours_says_not_logged_in() {
        let Some(bed) = Bed::start().await else {
            return;
        };
        let login = bed.endpoint.login();
        let mut doc = bed.login_document(&login.access_token, &login.refresh_token, 3_600_000);
        // A key of another tool, which the logout leaves.
        doc["someOtherTool"] = json!({"setting": 1});
        bed.write_document(&doc);
        let logout = run(bed.claude_with(&["auth", "logout"])).await;
        let (stdout, stderr) = text(&logout);
        // Seen: it removes the whole file (its plaintext storage's `remove`); a `/logout` in a
        // session deletes `claudeAiOauth` from it. Either is "not logged in".
        let left = std::fs::read(bed.credentials())
            .ok()
            .map(|bytes| serde_json::from_slice::<Value>(&bytes).unwrap());
        assert!(
            left.as_ref()
                .is_none_or(|doc| doc.get("claudeAiOauth").is_none()),
            "claude auth logout said {stdout}{stderr}; the file holds {left:?}"
        );
        let requests = bed.endpoint.requests().len();
        for args in [&["token"][..], &["status"][..]] {
            let ours = run(bed.ours(args)).await;
            let (stdout, stderr) = text(&ours);
            assert_eq!(ours.status.code(), Some(3), "{args:?}: {stderr}");
            assert!(
                stdout.is_empty()
                    && stderr.contains("not logged in")
                    && stderr.contains("run `claude login`"),
                "{args:?}: {stderr}"
            );
        }
        assert_eq!(bed.endpoint.requests().len(), requests, "ours sent nothing");
        eprintln!(
            "peer: claude {} auth logout left {}",
            bed.version,
            left.map_or("no file".to_owned(), |doc| format!(
                "keys {:?}",
                doc.as_object().map(|o| o.keys().collect::<Vec<_>>())
            ))
        );
        eprintln!("{}", bed.report());
    }

    /// A document that also holds the other logins 2.1.332 keeps beside `claudeAiOauth` — with
    /// numbers written as no serializer would — and their refresh locks held: our refresh
    /// leaves every one of them as it was (keys, values, numbers to the last digit) and their
    /// locks untouched; the CLI then uses the login we stored. One grant.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "runs inside a network namespace, started by the_real_claude_cli_as_a_peer"]
    async fn other_logins_in_the_file_survive_ours_and_the_clis_writes() {
        let Some(bed) = Bed::start().await else {
            return;
        };
        let login = bed.endpoint.login();
        let base = bed
            .login_document(&login.access_token, &login.refresh_token, -60_000)
            .to_string();
        let far = crate::support::real_now_ms() + 30 * 86_400_000;
        // Written as text: no serializer writes numbers this way.
        let others = format!(
            r#""cloudSessionsOauth":{{"accessToken":"sk-ant-oat01-cloud","refreshToken":"sk-ant-ort01-cloud","expiresAt":{far},"scopes":["user:sessions"],"x":1.50e3}},"cloudSessionsSignInEnded":false,"designOauth":{{"accessToken":"design","refreshToken":"design-r","expiresAt":{far}.0,"clientId":"59637612-477b-4836-a601-b0589eda7704"}},"hybridOauth":{{"accessToken":"hybrid","expiresAt":{far},"big":123456789012345678901234567890}},"hybridGatewayIdp":{{"idToken":"idp","expiresAt":{far},"neg":-0,"tiny":1e-7}}"#
        );
        let text = format!("{},{others}}}", base.strip_suffix('}').unwrap());
        std::fs::write(bed.credentials(), &text).unwrap();
        set_private(&bed.credentials());
        // Their own refresh locks, held by someone (a 20 s old directory, not stale).
        let their_locks = [
            ".cloud_sessions_oauth_refresh.lock",
            ".design_oauth_refresh.lock",
            ".hybrid_oauth_refresh.lock",
            ".hybrid_gateway_idp_refresh.lock",
        ]
        .map(|name| bed.config_dir().join(name));
        let twenty_ago = std::time::SystemTime::now() - Duration::from_secs(20);
        for lock in &their_locks {
            std::fs::create_dir(lock).unwrap();
            std::fs::File::open(lock)
                .unwrap()
                .set_modified(twenty_ago)
                .unwrap();
        }
        let mtimes = || {
            their_locks
                .iter()
                .map(|lock| std::fs::metadata(lock).unwrap().modified().unwrap())
                .collect::<Vec<_>>()
        };
        let locks_before = mtimes();

        let ours = run(bed.ours(&["token"])).await;
        ours_printed_the_stored_token(&ours, &bed);
        // Byte for byte: the other logins' text is in the file as it was written.
        let text_after = std::fs::read_to_string(bed.credentials()).unwrap();
        assert!(
            text_after.contains(&others),
            "the other logins changed: {text_after}"
        );
        assert_eq!(mtimes(), locks_before, "their locks were touched");

        let claude = run(bed.claude()).await;
        claude_succeeded(&claude, &bed);
        bed.assert_one_grant_and_no_reuse();
        assert_eq!(
            bed.refreshes_by_the_cli(),
            0,
            "the CLI used the login we stored"
        );
        assert!(their_locks.iter().all(|lock| lock.exists()));
        eprintln!("{}", bed.report());
    }

    /// `serve` on the bed's login with a mirror and a socket in the bed's home; ready.
    async fn broker(bed: &Bed, mirrors: &[PathBuf]) -> (std::process::Child, PathBuf) {
        let socket = bed.home.path().join("broker.sock");
        let ready = bed.home.path().join("broker.ready");
        let mut args: Vec<String> = vec![
            "serve".into(),
            "--socket".into(),
            socket.display().to_string(),
        ];
        for mirror in mirrors {
            args.extend(["--mirror".into(), mirror.display().to_string()]);
        }
        args.extend(["--ready-file".into(), ready.display().to_string()]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let broker = spawn(bed.ours(&args));
        until("the broker is ready", || ready.exists()).await;
        (broker, socket)
    }

    fn sandboxed(bed: &Bed, mirror: &Path, socket: &Path, steps: &[String]) -> sandbox::Sandbox {
        sandboxed_as(sandbox::Layout::ConfigDir, bed, mirror, socket, steps)
    }

    fn sandboxed_as(
        layout: sandbox::Layout,
        bed: &Bed,
        mirror: &Path,
        socket: &Path,
        steps: &[String],
    ) -> sandbox::Sandbox {
        sandbox::Sandbox::start(
            layout,
            &bed.claude,
            &crate::support::cli_binary(),
            mirror,
            Some(socket),
            &bed.proxy.url(),
            bed.proxy.ca(),
            steps,
        )
    }

    /// The real CLI in a sandbox whose config dir is a broker's mirror, read-only: it answers
    /// `claude -p` with the mirrored token; the broker refreshes (forced); the sandboxed CLI's
    /// next `claude -p` uses the new token (the old one revoked meanwhile). No refresh token —
    /// neither the one the login started with nor any since — is in any file the sandbox can
    /// read, nor in its processes' environment or command lines.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "runs inside a network namespace, started by the_real_claude_cli_as_a_peer"]
    async fn a_sandboxed_cli_works_through_a_refresh_with_no_refresh_token_in_reach() {
        sandboxed_cli_through_a_refresh(sandbox::Layout::ConfigDir).await;
    }

    /// The same with the CLI's config dir its own and writable, and the mirror (read-only)
    /// named by `CLAUDE_SECURESTORAGE_CONFIG_DIR` as where its login is (2.1.197 reads it too):
    /// the setup that keeps the CLI's history and settings in the sandbox.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "runs inside a network namespace, started by the_real_claude_cli_as_a_peer"]
    async fn a_sandboxed_cli_with_a_config_dir_of_its_own_reads_its_login_from_a_mirror() {
        sandboxed_cli_through_a_refresh(sandbox::Layout::SecureStorageDir).await;
    }

    async fn sandboxed_cli_through_a_refresh(layout: sandbox::Layout) {
        let Some(bed) = Bed::start().await else {
            return;
        };
        bed.expired_login();
        let mut refresh_tokens = vec![refresh_token(&bed)];
        let mirror = bed.home.path().join("mirror");
        let (mut broker, socket) = broker(&bed, std::slice::from_ref(&mirror)).await;
        refresh_tokens.push(refresh_token(&bed));
        let cli = sandbox::CLAUDE;
        let ours = format!("{} --broker {}", sandbox::OURS, sandbox::SOCKET);
        let sandbox = sandboxed_as(
            layout,
            &bed,
            &mirror,
            &socket,
            &[
                format!("{cli} -p hello"),
                format!("{cli} -p hello"),
                format!("{ours} token"),
                format!("ls -A {}", sandbox::CONFIG),
            ],
        );
        sandbox.go(0);
        let (rc, out, err) = sandbox.done(0);
        assert!(
            rc == 0 && out.contains("loopback Messages API"),
            "claude in the sandbox: {rc} {out}{err}\n{}",
            bed.report()
        );
        let first = mirrored_token(&mirror);
        assert_eq!(bed.last_api_token().as_deref(), Some(first.as_str()));

        // The broker refreshes; the old token stops working.
        let forced = run(bed.ours_bare(&[
            "--broker",
            &socket.display().to_string(),
            "refresh",
            "--force",
        ]))
        .await;
        assert!(
            text(&forced).0.starts_with("refreshed"),
            "{:?}",
            text(&forced)
        );
        refresh_tokens.push(refresh_token(&bed));
        let second = mirrored_token(&mirror);
        assert_ne!(second, first, "the mirror was re-stamped");
        bed.endpoint.revoke_access_token(&first);
        sandbox.go(1);
        let (rc, out, err) = sandbox.done(1);
        assert!(
            rc == 0 && out.contains("loopback Messages API"),
            "claude in the sandbox after the refresh: {rc} {out}{err}\n{}",
            bed.report()
        );
        assert_eq!(bed.last_api_token().as_deref(), Some(second.as_str()));
        sandbox.go(2);
        let (rc, out, err) = sandbox.done(2);
        assert_eq!(
            (rc, out.trim()),
            (0, second.as_str()),
            "ours in the sandbox: {err}"
        );

        // The search sees what the sandbox sees: the access token is in its mirror.
        let mirrored = match layout {
            sandbox::Layout::ConfigDir => format!("{}/.credentials.json", sandbox::CONFIG),
            sandbox::Layout::SecureStorageDir => format!("{}/.credentials.json", sandbox::LOGIN),
        };
        let seen = sandbox.files_holding(&[second.as_str()]);
        assert!(seen.iter().any(|(path, _)| *path == mirrored), "{seen:?}");
        sandbox.go(3);
        let (rc, listing, err) = sandbox.done(3);
        assert_eq!(rc, 0, "{err}");
        if layout == sandbox::Layout::SecureStorageDir {
            // The CLI used its own config dir, and wrote no login there.
            assert!(
                !listing.trim().is_empty(),
                "the CLI kept nothing in its config dir"
            );
            assert!(!listing.contains(".credentials.json"), "{listing}");
        }
        let secrets: Vec<&str> = refresh_tokens.iter().map(String::as_str).collect();
        let found = sandbox.files_holding(&secrets);
        assert!(
            found.is_empty(),
            "a refresh token in reach of the sandbox: {found:?}"
        );
        let ended = sandbox.end();
        assert!(ended.starts_with("exit status: 0"), "{ended}");
        broker_stops(&mut broker);
        assert_eq!(bed.endpoint.grants_served(), 2, "{}", bed.report());
        assert_eq!(bed.endpoint.revoked_families(), 0);
        eprintln!(
            "peer: a sandboxed claude {} used the mirror ({layout:?}) through a refresh; no refresh token in reach",
            bed.version
        );
        eprintln!("{}", bed.report());
    }

    /// Three sandboxes, each with two real CLIs reading its mirror and two of ours asking the
    /// socket, and the host's own real CLI on the same login, over three cycles in which the
    /// stored token is made to expire: each cycle spends one grant (the broker's or the host
    /// CLI's, whoever takes the locks first), no spent token is presented, everyone is served.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "runs inside a network namespace, started by the_real_claude_cli_as_a_peer"]
    async fn three_sandboxes_and_the_host_cli_share_one_login() {
        let Some(bed) = Bed::start().await else {
            return;
        };
        bed.expired_login();
        let mirrors: Vec<PathBuf> = (0..3)
            .map(|i| bed.home.path().join(format!("mirror-{i}")))
            .collect();
        let (mut broker, socket) = broker(&bed, &mirrors).await;
        assert_eq!(bed.endpoint.grants_served(), 1);
        const CYCLES: usize = 3;
        let cli = sandbox::CLAUDE;
        let ours = format!("{} --broker {} token", sandbox::OURS, sandbox::SOCKET);
        let step = format!("{cli} -p hello & {cli} -p hello & {ours} & {ours} & wait");
        let steps: Vec<String> = (0..CYCLES).map(|_| step.clone()).collect();
        let sandboxes: Vec<_> = mirrors
            .iter()
            .map(|m| sandboxed(&bed, m, &socket, &steps))
            .collect();
        for cycle in 0..CYCLES {
            // The stored token expires: the broker and the host's CLI both want to refresh.
            let mut doc = bed.stored();
            doc["claudeAiOauth"]["expiresAt"] = (crate::support::real_now_ms() - 60_000).into();
            bed.write_document(&doc);
            let grants = bed.endpoint.grants_served();
            // Every other cycle the host's CLI refreshes first (its answer slow), and the broker
            // and the sandboxes meet its locks.
            let host_first = cycle % 2 == 1;
            let by_cli = bed.refreshes_by_the_cli();
            bed.endpoint.set_latency(if host_first {
                Duration::from_millis(1500)..Duration::from_millis(1501)
            } else {
                Duration::ZERO..Duration::ZERO
            });
            let host = spawn(bed.claude());
            if host_first {
                until("the host's CLI refreshes", || {
                    bed.refreshes_by_the_cli() > by_cli
                })
                .await;
            }
            let ask = spawn(bed.ours_bare(&["--broker", &socket.display().to_string(), "token"]));
            for sandbox in &sandboxes {
                sandbox.go(cycle);
            }
            for (i, sandbox) in sandboxes.iter().enumerate() {
                let (rc, out, err) = sandbox.done(cycle);
                assert_eq!(
                    rc,
                    0,
                    "sandbox {i}, cycle {cycle}: {out}{err}\n{}",
                    bed.report()
                );
                assert_eq!(
                    out.matches("loopback Messages API").count(),
                    2,
                    "sandbox {i}, cycle {cycle}: {out}{err}"
                );
            }
            claude_succeeded(&finish(host).await, &bed);
            let asked = finish(ask).await;
            assert!(asked.status.success(), "{}", text(&asked).1);
            assert_eq!(
                bed.endpoint.grants_served(),
                grants + 1,
                "cycle {cycle}: {}",
                bed.report()
            );
            if host_first {
                assert_eq!(
                    bed.refreshes_by_the_cli(),
                    by_cli + 1,
                    "the host's CLI refreshed"
                );
            }
            assert_eq!(
                bed.endpoint.revoked_families(),
                0,
                "cycle {cycle}: {}",
                bed.report()
            );
        }
        for sandbox in sandboxes {
            let ended = sandbox.end();
            assert!(ended.starts_with("exit status: 0"), "{ended}");
        }
        broker_stops(&mut broker);
        bed.assert_one_grant_and_no_reuse_over(1 + CYCLES as u64);
        eprintln!(
            "peer: 3 sandboxes x (2 claude {} + 2 ours) and the host's claude, {CYCLES} cycles: one grant each",
            bed.version
        );
        eprintln!("{}", bed.report());
    }

    fn refresh_token(bed: &Bed) -> String {
        bed.stored()["claudeAiOauth"]["refreshToken"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    fn mirrored_token(mirror: &Path) -> String {
        let doc: Value =
            serde_json::from_slice(&std::fs::read(mirror.join(".credentials.json")).unwrap())
                .unwrap();
        assert!(doc["claudeAiOauth"].get("refreshToken").is_none());
        doc["claudeAiOauth"]["accessToken"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    fn broker_stops(broker: &mut std::process::Child) {
        let _ = Command::new("kill")
            .args(["-TERM", &broker.id().to_string()])
            .status();
        let status = broker.wait().unwrap();
        assert_eq!(status.code(), Some(0), "the broker: {status:?}");
    }
}
