//! Stopped mid-refresh, still logged in. The loopback endpoint rotates the refresh token the
//! moment a request arrives (and revokes the whole login when a spent one comes back); the CLI,
//! a real process, is stopped at each instant of a refresh: while the answer is on its way (the
//! endpoint answers late), while the temporary file is filled, during its fsync, between the
//! fsync and the rename, after the rename before the directory's fsync (held there by the fault
//! shim). A signal waits until the answer is kept, then exits `128 + n`; a `kill -9` after the
//! answer was read leaves it for the next process. Either way the next `token` works and the
//! endpoint never sees a spent token. Outside a refresh in flight a signal acts at once.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use claude_code_auth_testkit::loopback::{DEFAULT_ACCESS_TTL, TokenEndpoint};
use entelix_auth_claude_code::{
    ClaudeCodeAuthError, ClaudeCodeOAuthConfig, ClaudeCodeOAuthProvider, FileCredentialStore,
    RefreshMode,
};
use secrecy::ExposeSecret;

use crate::support::{
    Scenario, cli_command, expired_login, finish, real_now_ms, spawn_cli, text,
    without_machine_settings,
};

/// The signals a process is stopped with, and their numbers.
const SIGNALS: [(&str, i32); 4] = [("TERM", 15), ("HUP", 1), ("INT", 2), ("QUIT", 3)];

/// Where a refresh is held for the signal (see `faults/shim.c`).
#[derive(Debug, Clone, Copy)]
enum Point {
    /// The request was received (and rotated); its answer is on its way.
    AnswerAwaited,
    /// The answer was read; the document is about to be written into the temporary file.
    Fill,
    /// The document is written; its fsync is under way.
    Fsync,
    /// Synced; about to be renamed over the credential file.
    Rename,
    /// Renamed; the directory's fsync is under way.
    DirSync,
}

impl Point {
    fn shim_name(self) -> Option<&'static str> {
        match self {
            Self::AnswerAwaited => None,
            Self::Fill => Some("fill"),
            Self::Fsync => Some("fsync"),
            Self::Rename => Some("rename"),
            Self::DirSync => Some("dirsync"),
        }
    }
}

/// How long the shim holds a process at its point, and the endpoint its answer.
const HELD: Duration = Duration::from_millis(1500);

/// One expired login, its endpoint, and a `claude-code-auth token` on it held at `point`.
struct Run {
    endpoint: TokenEndpoint,
    scenario: Scenario,
    child: Child,
    mark: PathBuf,
}

impl Run {
    async fn start(point: Point) -> Self {
        let endpoint = TokenEndpoint::start().await.unwrap();
        let scenario = expired_login(&endpoint);
        let mark = scenario.dir().join("paused-here");
        let mut command = cli_command(scenario.dir());
        command
            .args(["token", "--credentials"])
            .arg(&scenario.path)
            .args(["--token-url", &endpoint.url()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        match point.shim_name() {
            Some(name) => {
                crate::faults::paused_at(&mut command, name, &mark, HELD.as_millis());
            }
            None => endpoint.set_latency(HELD..HELD + Duration::from_millis(1)),
        }
        let child = command.spawn().unwrap();
        Self {
            endpoint,
            scenario,
            child,
            mark,
        }
    }

    /// Wait until the process is held at its point.
    async fn reach(&self, point: Point) {
        let started = Instant::now();
        loop {
            let there = match point {
                Point::AnswerAwaited => !self.endpoint.requests().is_empty(),
                _ => self.mark.exists(),
            };
            if there {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "never reached {point:?}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{name}");
    }
}

/// The next `token` on `scenario` succeeds without a new grant (the rotated login was kept) and
/// `endpoint` never saw a spent token.
async fn next_token_succeeds(scenario: &Scenario, endpoint: &TokenEndpoint, what: &str) {
    let output = finish(spawn_cli(&scenario.path, &endpoint.url(), &["token"])).await;
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{what}: {stderr}");
    assert!(
        endpoint.accepts_access_token(stdout.trim()),
        "{what}: not a live token"
    );
    assert_eq!(
        endpoint.revoked_families(),
        0,
        "{what}: a spent token was presented"
    );
    assert_eq!(endpoint.grants_served(), 1, "{what}: refreshed again");
}

/// Each signal at `point`: the process finishes keeping the answer, then exits `128 + n` with
/// nothing on stdout; the next `token` works, no spent token presented.
async fn signals_at(point: Point) {
    let mut runs = Vec::new();
    for (name, number) in SIGNALS {
        runs.push((name, number, Run::start(point).await));
    }
    for (name, _, run) in &runs {
        run.reach(point).await;
        run.signal(name);
        // A second one changes nothing.
        tokio::time::sleep(Duration::from_millis(50)).await;
        run.signal(name);
    }
    for (name, number, run) in runs {
        let what = format!("SIG{name} at {point:?}");
        let output = finish(run.child).await;
        let (stdout, stderr) = text(&output);
        assert_eq!(
            output.status.code(),
            Some(128 + number),
            "{what}: {:?} {stderr}",
            output.status
        );
        assert_eq!(stdout, "", "{what}: printed after the signal");
        next_token_succeeds(&run.scenario, &run.endpoint, &what).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_while_the_answer_is_on_its_way_waits_for_it() {
    signals_at(Point::AnswerAwaited).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_while_the_temporary_file_is_filled_waits_for_the_write() {
    signals_at(Point::Fill).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_during_the_fsync_waits_for_the_write() {
    signals_at(Point::Fsync).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_between_the_fsync_and_the_rename_waits_for_the_write() {
    signals_at(Point::Rename).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_after_the_rename_waits_for_the_directory_sync() {
    signals_at(Point::DirSync).await;
}

/// `kill -9` at `point`, after the answer was read: the next process rebuilds the login from
/// what the killed one kept (the answer, or the complete document), and presents no spent token.
async fn a_kill_at(point: Point) {
    let mut run = Run::start(point).await;
    run.reach(point).await;
    let killed_at = real_now_ms();
    run.child.kill().unwrap();
    let status = run.child.wait().unwrap();
    assert_eq!(status.signal(), Some(9), "{point:?}");
    assert_eq!(run.endpoint.grants_served(), 1, "{point:?}: spent");
    let what = format!("kill -9 at {point:?}");
    next_token_succeeds(&run.scenario, &run.endpoint, &what).await;
    // The lifetime counts from when the answer came, before the kill, whoever stored it.
    let expires_at = run.scenario.json()["claudeAiOauth"]["expiresAt"]
        .as_i64()
        .unwrap();
    let ttl_ms = i64::try_from(DEFAULT_ACCESS_TTL.as_millis()).unwrap();
    assert!(
        expires_at <= killed_at + ttl_ms,
        "{what}: expires {} ms after the answer's lifetime",
        expires_at - killed_at - ttl_ms
    );
    let leftovers: Vec<_> = listing(run.scenario.dir())
        .into_iter()
        .filter(|name| name.starts_with(".ccauth-"))
        .collect();
    assert!(leftovers.is_empty(), "{what}: {leftovers:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_before_the_document_is_written_loses_nothing() {
    a_kill_at(Point::Fill).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_during_the_fsync_loses_nothing() {
    a_kill_at(Point::Fsync).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_between_the_fsync_and_the_rename_loses_nothing() {
    a_kill_at(Point::Rename).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_after_the_rename_loses_nothing() {
    a_kill_at(Point::DirSync).await;
}

/// What `timeout 1 claude-code-auth token` does to a refresh whose answer takes 1.5 s: the
/// `SIGTERM` waits for the answer; the login goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_1_against_a_slow_endpoint_keeps_the_login() {
    let endpoint = TokenEndpoint::start().await.unwrap();
    endpoint.set_latency(HELD..HELD + Duration::from_millis(1));
    let scenario = expired_login(&endpoint);
    let mut command = Command::new("timeout");
    command
        .arg("1")
        .arg(crate::support::cli_binary())
        .args(["token", "--credentials"])
        .arg(&scenario.path)
        .args(["--token-url", &endpoint.url()]);
    without_machine_settings(&mut command, scenario.dir());
    let output = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    let (stdout, stderr) = text(&output);
    // `timeout` says 124 when it had to signal; what it signalled exited 143 after the answer.
    assert_eq!(output.status.code(), Some(124), "{stderr}");
    assert_eq!(stdout, "", "{stderr}");
    next_token_succeeds(&scenario, &endpoint, "timeout 1").await;
}

/// A process waiting for the refresh lock the `claude` CLI holds (a live lock directory) stops
/// at once on `SIGTERM`: exit 143, no lock of its own left, nothing sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_while_waiting_for_a_busy_lock_acts_at_once() {
    let endpoint = TokenEndpoint::start().await.unwrap();
    let scenario = expired_login(&endpoint);
    let held = scenario.dir().join(".oauth_refresh.lock");
    std::fs::create_dir(&held).unwrap();
    let before = listing(scenario.dir());
    let child = spawn_cli(&scenario.path, &endpoint.url(), &["token"]);
    // Waiting: its own OS lock is there and held.
    let flock = scenario.dir().join(".credentials.json.flock");
    let started = Instant::now();
    while !flock.exists() {
        assert!(started.elapsed() < Duration::from_secs(30));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let signalled = Instant::now();
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let output = finish(child).await;
    let took = signalled.elapsed();
    assert_eq!(output.status.code(), Some(143), "{:?}", text(&output));
    assert!(took < Duration::from_secs(2), "took {took:?}");
    assert!(endpoint.requests().is_empty(), "nothing may be sent");
    // Only what was there before (and our lock file, empty: no record of anything held).
    let mut after = listing(scenario.dir());
    after.retain(|name| name != ".credentials.json.flock");
    assert_eq!(after, before);
    assert_eq!(
        std::fs::read(&flock).unwrap(),
        b"",
        "a journal record was left"
    );
    let legacy = PathBuf::from(format!("{}.lock", scenario.dir().display()));
    assert!(!legacy.exists(), "the legacy lock was left behind");
}

fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn provider(path: &Path, endpoint: &TokenEndpoint) -> ClaudeCodeOAuthProvider {
    ClaudeCodeOAuthProvider::with_config(
        FileCredentialStore::with_path(path),
        ClaudeCodeOAuthConfig::new().with_token_url(endpoint.url()),
    )
}

/// `drain` while a refresh's answer is on its way waits for it to be kept; a refresh asked
/// afterwards does not start, and sends nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_waits_for_the_refresh_in_flight_and_starts_no_other() {
    let endpoint = TokenEndpoint::start().await.unwrap();
    endpoint.set_latency(Duration::from_millis(800)..Duration::from_millis(801));
    let scenario = expired_login(&endpoint);
    let provider = provider(&scenario.path, &endpoint);
    let resolving = tokio::spawn({
        let provider = provider.clone();
        async move { provider.header_value().await }
    });
    crate::support::until_requests(&endpoint, 1).await;
    let started = Instant::now();
    provider.drain().await;
    assert!(
        started.elapsed() > Duration::from_millis(300),
        "drained before the answer came: {:?}",
        started.elapsed()
    );
    // Kept by then: the file holds the rotated login.
    let stored = scenario.oauth("accessToken");
    assert!(endpoint.accepts_access_token(&stored));
    let header = resolving.await.unwrap().unwrap();
    assert_eq!(
        header.expose_secret().strip_prefix("Bearer ").unwrap(),
        stored
    );

    let error = provider.refresh(RefreshMode::Force).await.unwrap_err();
    assert!(matches!(error, ClaudeCodeAuthError::Draining), "{error}");
    // A clone is drained too; a header that needs no refresh is still served.
    let clone = provider.clone();
    assert!(matches!(
        clone.refresh(RefreshMode::Force).await,
        Err(ClaudeCodeAuthError::Draining)
    ));
    assert_eq!(
        provider.header_value().await.unwrap().expose_secret(),
        header.expose_secret()
    );
    assert_eq!(endpoint.requests().len(), 1, "nothing more was sent");
    assert_eq!(endpoint.revoked_families(), 0);
}

/// `drain` while a refresh waits for a lock another process holds: the wait ends at once with
/// `Draining`, nothing was sent, and no lock of ours is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_ends_a_wait_for_the_lock_at_once() {
    let endpoint = TokenEndpoint::start().await.unwrap();
    let scenario = expired_login(&endpoint);
    std::fs::create_dir(scenario.dir().join(".oauth_refresh.lock")).unwrap();
    let before = listing(scenario.dir());
    let provider = provider(&scenario.path, &endpoint);
    let waiting = tokio::spawn({
        let provider = provider.clone();
        async move { provider.refresh(RefreshMode::Force).await }
    });
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(!waiting.is_finished(), "it should be waiting for the lock");
    let started = Instant::now();
    provider.drain().await;
    let result = tokio::time::timeout(Duration::from_secs(2), waiting)
        .await
        .expect("the wait ended at once")
        .unwrap();
    assert!(
        matches!(result, Err(ClaudeCodeAuthError::Draining)),
        "{result:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(endpoint.requests().is_empty());
    let mut after = listing(scenario.dir());
    after.retain(|name| name != ".credentials.json.flock");
    assert_eq!(after, before);
    let legacy = PathBuf::from(format!("{}.lock", scenario.dir().display()));
    assert!(!legacy.exists(), "the legacy lock was left behind");
}
