//! Many processes, crashes and the `claude` CLI's own locks, with real processes against the
//! loopback token endpoint, which rotates refresh tokens and revokes a family on reuse.

use std::hash::{BuildHasher, RandomState};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant, SystemTime};

use crate::support::{Scenario, cli, cli_command, expired_login, text, without_token_fields};
use claude_code_auth_testkit::loopback::TokenEndpoint;
use entelix_auth_claude_code::{
    ClaudeCodeAuthError, ClaudeCodeOAuthProvider, FileCredentialStore, RefreshMode,
};
use serde_json::Value;

/// A random duration below `max`.
fn random_below(max: Duration) -> Duration {
    let nanos = RandomState::new().hash_one(Instant::now()) % max.as_nanos() as u64;
    Duration::from_nanos(nanos)
}

fn spawn_token(scenario: &Scenario, url: &str) -> Child {
    cli_command(scenario.dir())
        .args([
            "token",
            "--credentials",
            scenario.path.to_str().unwrap(),
            "--token-url",
            url,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// `claude-code-auth token` on `scenario`'s file against the endpoint at `url`.
async fn token(scenario: &Scenario, url: &str) -> std::process::Output {
    let path = scenario.path.to_str().unwrap();
    cli(
        scenario.dir(),
        &["token", "--credentials", path, "--token-url", url],
    )
    .await
}

/// The two lock directories the `claude` CLI uses for credentials in `dir`.
fn cli_lock_dirs(dir: &Path) -> [PathBuf; 2] {
    let real = std::fs::canonicalize(dir).unwrap();
    let mut legacy = real.file_name().unwrap().to_os_string();
    legacy.push(".lock");
    [dir.join(".oauth_refresh.lock"), real.with_file_name(legacy)]
}

fn leftovers(dir: &Path) -> Vec<String> {
    let mut found: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".tmp"))
        .collect();
    for lock in cli_lock_dirs(dir) {
        if lock.exists() {
            found.push(lock.display().to_string());
        }
        // Staging directories of a lock being taken (`<lock>.<pid>.staging`).
        let name = lock.file_name().unwrap().to_string_lossy().into_owned();
        let parent = lock.parent().unwrap();
        found.extend(
            std::fs::read_dir(parent)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(&name) && n.ends_with(".staging")),
        );
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_processes_spends_exactly_one_refresh_grant() {
    const PROCESSES: usize = 12;
    let endpoint = TokenEndpoint::start().await.unwrap();
    // A slow answer keeps the first refresher inside the lock while the others arrive.
    endpoint.set_latency(Duration::from_millis(300)..Duration::from_millis(400));
    let scenario = expired_login(&endpoint);
    let before = scenario.json();
    let url = endpoint.url();
    let children: Vec<Child> = (0..PROCESSES)
        .map(|_| spawn_token(&scenario, &url))
        .collect();
    let outputs = crate::support::finish_all(children).await;

    let stored = scenario.oauth("accessToken");
    for output in &outputs {
        let (stdout, stderr) = text(output);
        assert!(output.status.success(), "a process failed: {stderr}");
        assert_eq!(
            stdout.trim(),
            stored,
            "every process prints the stored token"
        );
    }
    assert_eq!(endpoint.grants_served(), 1, "exactly one refresh grant");
    assert_eq!(endpoint.requests().len(), 1, "nobody else even asked");
    assert_eq!(endpoint.revoked_families(), 0, "nobody was logged out");
    assert!(endpoint.accepts_access_token(&stored));
    assert_eq!(
        without_token_fields(scenario.json()),
        without_token_fields(before)
    );
    assert_eq!(scenario.mode(), 0o600);
    assert!(
        leftovers(scenario.dir()).is_empty(),
        "{:?}",
        leftovers(scenario.dir())
    );
    eprintln!(
        "storm: {PROCESSES} processes, {} grant served, 0 families revoked",
        endpoint.grants_served()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_random_moments_never_corrupts_never_blocks() {
    const ROUNDS: usize = 50;
    let endpoint = TokenEndpoint::start().await.unwrap();
    endpoint.set_latency(Duration::ZERO..Duration::from_millis(30));
    let url = endpoint.url();
    let (mut finished, mut before_grant, mut between_grant_and_write, mut after_write) =
        (0, 0, 0, 0);
    let mut slowest_next = Duration::ZERO;
    for round in 0..ROUNDS {
        let scenario = expired_login(&endpoint);
        let original = scenario.json();
        let (old_access, old_refresh) = (
            scenario.oauth("accessToken"),
            scenario.oauth("refreshToken"),
        );
        let requests = endpoint.requests().len();

        // Kill at a random moment: in even rounds from the start (loading, locking, sending),
        // in odd rounds once the request reached the endpoint (waiting for the answer, parsing,
        // writing, exiting).
        let mut child = spawn_token(&scenario, &url);
        let started = Instant::now();
        if round % 2 == 1 {
            while endpoint.requests().len() == requests && child.try_wait().unwrap().is_none() {
                assert!(
                    started.elapsed() < Duration::from_secs(10),
                    "round {round}: no request"
                );
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        tokio::time::sleep(random_below(Duration::from_millis(35))).await;
        let exited_by_itself = child.try_wait().unwrap().is_some();
        let _ = child.kill();
        child.wait().unwrap();

        // Whatever the moment, the file parses, stays private, and keeps every other key.
        let after = scenario.json();
        assert_eq!(scenario.mode(), 0o600, "round {round}");
        assert_eq!(
            without_token_fields(after.clone()),
            without_token_fields(original.clone()),
            "round {round}"
        );
        let (access, refresh) = (
            scenario.oauth("accessToken"),
            scenario.oauth("refreshToken"),
        );
        let rewritten = access != old_access;
        assert_eq!(
            rewritten,
            refresh != old_refresh,
            "round {round}: tokens written as a pair"
        );

        // The next process is not blocked by what the dead one held, and cleans up after it.
        let revoked = endpoint.revoked_families();
        let started = Instant::now();
        let output = token(&scenario, &url).await;
        let took = started.elapsed();
        slowest_next = slowest_next.max(took);
        assert!(
            took < Duration::from_secs(10),
            "round {round}: the next process took {took:?}"
        );
        let (stdout, stderr) = text(&output);
        // The one loss nothing on our side can prevent: the dead process spent the refresh token
        // (the endpoint may even process its request after the kill) and its answer died with
        // it; the next process presents the spent token and the endpoint revokes the family.
        let lost_answer = endpoint.revoked_families() > revoked;
        if lost_answer {
            assert!(
                !rewritten && !output.status.success() && stderr.contains("invalid_grant"),
                "round {round}: {stderr}"
            );
        } else {
            assert!(output.status.success(), "round {round}: {stderr}");
            assert_eq!(stdout.trim(), scenario.oauth("accessToken"));
        }
        match (exited_by_itself, lost_answer, rewritten) {
            (true, _, _) => finished += 1,
            (false, true, _) => between_grant_and_write += 1,
            (false, false, true) => after_write += 1,
            (false, false, false) => before_grant += 1,
        }
        // A dead holder's lock directories and half-written files go with the next refresh
        // (until then they only wait out their stale window).
        let output = cli(
            scenario.dir(),
            &[
                "refresh",
                "--force",
                "--credentials",
                scenario.path.to_str().unwrap(),
                "--token-url",
                &url,
            ],
        )
        .await;
        assert!(
            output.status.success() || lost_answer,
            "round {round}: {}",
            text(&output).1
        );
        assert!(
            leftovers(scenario.dir()).is_empty(),
            "round {round}: {:?}",
            leftovers(scenario.dir())
        );
    }
    eprintln!(
        "crash: {ROUNDS} rounds; killed before the grant {before_grant}, between grant and write \
         {between_grant_and_write}, after the write {after_write}; finished first {finished}; \
         slowest next process {slowest_next:?}"
    );
    assert!(
        before_grant + between_grant_and_write + after_write >= ROUNDS / 2,
        "most rounds must kill"
    );
}

/// Hold `lock` from another process for `hold`, the way the CLI does (mkdir, then rmdir).
fn hold_from_another_process(lock: &Path, hold: Duration) -> Child {
    let script = format!(
        "mkdir '{0}' && sleep {1} && rmdir '{0}'",
        lock.display(),
        hold.as_secs_f64()
    );
    let child = std::process::Command::new("sh")
        .args(["-c", &script])
        .spawn()
        .unwrap();
    let started = Instant::now();
    while !lock.exists() {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the holder never took {}",
            lock.display()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child
}

#[tokio::test]
async fn a_lock_held_by_the_claude_cli_makes_us_wait_then_proceed() {
    crate::support::warm_component_cache();
    for which in 0..2 {
        let endpoint = TokenEndpoint::start().await.unwrap();
        let scenario = expired_login(&endpoint);
        let lock = cli_lock_dirs(scenario.dir())[which].clone();
        let hold = Duration::from_millis(1500);
        let mut holder = hold_from_another_process(&lock, hold);
        let started = Instant::now();
        let output = token(&scenario, &endpoint.url()).await;
        let waited = started.elapsed();
        holder.wait().unwrap();
        assert!(output.status.success(), "{}", text(&output).1);
        assert!(
            waited >= hold - Duration::from_millis(200),
            "{} did not make us wait ({waited:?})",
            lock.display()
        );
        assert_eq!(endpoint.grants_served(), 1);
        assert!(leftovers(scenario.dir()).is_empty());
    }
}

fn set_mtime(path: &Path, at: SystemTime) {
    std::fs::File::open(path).unwrap().set_modified(at).unwrap();
}

#[tokio::test]
async fn stale_locks_are_taken_over_at_once_and_future_dated_ones_once_left_untouched() {
    let now = SystemTime::now();
    // (which lock, its mtime, taken within): both are stale after 60 s, as for the CLI 2.1.332;
    // a lock dated in the future is watched for a touch interval first
    // (`the_clock_stepping_back_does_not_make_a_live_lock_stale`).
    let cases = [
        (0, now - Duration::from_secs(61), Duration::from_secs(3)),
        (1, now - Duration::from_secs(61), Duration::from_secs(3)),
        (0, now + Duration::from_secs(3600), Duration::from_secs(9)),
        (1, now + Duration::from_secs(86_400), Duration::from_secs(9)),
    ];
    for (which, mtime, within) in cases {
        let endpoint = TokenEndpoint::start().await.unwrap();
        let scenario = expired_login(&endpoint);
        let lock = cli_lock_dirs(scenario.dir())[which].clone();
        std::fs::create_dir(&lock).unwrap();
        set_mtime(&lock, mtime);
        let started = Instant::now();
        let output = token(&scenario, &endpoint.url()).await;
        assert!(output.status.success(), "{}", text(&output).1);
        assert!(
            started.elapsed() < within,
            "{} mtime {mtime:?}: {:?}",
            lock.display(),
            started.elapsed()
        );
        assert!(!lock.exists());
    }
}

#[tokio::test]
async fn a_lock_that_is_never_released_fails_clearly_or_bridges_with_a_valid_token() {
    let endpoint = TokenEndpoint::start().await.unwrap();
    let scenario = expired_login(&endpoint);
    let lock = cli_lock_dirs(scenario.dir())[0].clone();
    // Held far longer than this test runs; removed by hand at the end.
    let mut holder = hold_from_another_process(&lock, Duration::from_secs(120));
    let before = scenario.bytes();
    let config = entelix_auth_claude_code::ClaudeCodeOAuthConfig::new()
        .with_token_url(endpoint.url())
        .with_lock_timeout(Duration::from_millis(800));
    let provider = ClaudeCodeOAuthProvider::with_config(
        FileCredentialStore::with_path(&scenario.path),
        config.clone(),
    );
    let error = provider.header_value().await.unwrap_err();
    assert!(
        matches!(&error, ClaudeCodeAuthError::LockTimeout { lock: named, .. } if named.ends_with(".oauth_refresh.lock")),
        "{error}"
    );
    assert!(error.to_string().contains(".oauth_refresh.lock"), "{error}");
    assert_eq!(scenario.bytes(), before);
    assert!(endpoint.requests().is_empty());

    // A token that expires within the skew but has not expired is used while the lock is busy.
    let mut doc: Value = serde_json::from_slice(&before).unwrap();
    let soon = crate::support::real_now_ms() + 120_000;
    doc["claudeAiOauth"]["expiresAt"] = soon.into();
    std::fs::write(&scenario.path, doc.to_string()).unwrap();
    let report = provider.refresh(RefreshMode::IfNeeded).await.unwrap();
    assert_eq!(
        report.outcome,
        entelix_auth_claude_code::RefreshOutcome::Deferred
    );
    assert_eq!(report.status.expires_at_ms, Some(soon));
    holder.kill().unwrap();
    holder.wait().unwrap();
    std::fs::remove_dir(&lock).unwrap();
}

/// The CLI's read-modify-write protocol for its credential store, as another process: every
/// write under `<dir>/.storage-write.lock` (mkdir; stale after 15 s; 10 tries 100 ms–1 s),
/// the whole document re-read, one key changed (a counter in `mcpOAuth`, as an MCP server's
/// token would be), written to `.credentials.json.tmp.<hex>` and renamed over. Runs until
/// `<dir>/stop` appears; after each write it records the counter in `<dir>/writer.count`.
#[test]
#[ignore = "run as a child process by cli_protocol_writes_during_our_refreshes_lose_nothing"]
fn cli_protocol_writer() {
    let Some(path) = std::env::var_os("CLI_PROTOCOL_WRITER_FILE").map(PathBuf::from) else {
        return;
    };
    let dir = path.parent().unwrap().to_path_buf();
    let lock = dir.join(".storage-write.lock");
    let mut written = 0u64;
    while !dir.join("stop").exists() {
        let mut taken = false;
        for _ in 0..10 {
            match std::fs::create_dir(&lock) {
                Ok(()) => {
                    taken = true;
                    break;
                }
                Err(_) => {
                    let stale = std::fs::metadata(&lock)
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|m| SystemTime::now().duration_since(m).ok())
                        .is_some_and(|age| age > Duration::from_secs(15));
                    if stale {
                        let _ = std::fs::remove_dir(&lock);
                    } else {
                        std::thread::sleep(
                            Duration::from_millis(100) + random_below(Duration::from_millis(900)),
                        );
                    }
                }
            }
        }
        assert!(taken, "the writer never got the write lock");
        let mut doc: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let next = doc["mcpOAuth"]["writer"].as_u64().unwrap_or(0) + 1;
        doc["mcpOAuth"]["writer"] = next.into();
        // A read-modify-write takes a moment: widen it, so refreshes land inside.
        std::thread::sleep(Duration::from_millis(3));
        let temp = dir.join(format!(
            ".credentials.json.tmp.{:08x}",
            RandomState::new().hash_one(next) as u32
        ));
        std::fs::write(&temp, doc.to_string()).unwrap();
        std::fs::rename(&temp, &path).unwrap();
        std::fs::remove_dir(&lock).unwrap();
        written = next;
        std::fs::write(dir.join("writer.count"), written.to_string()).unwrap();
        std::thread::sleep(Duration::from_millis(5) + random_below(Duration::from_millis(10)));
    }
    eprintln!("cli protocol writer: {written} writes");
}

#[tokio::test]
async fn cli_protocol_writes_during_our_refreshes_lose_nothing() {
    const REFRESHES: usize = 20;
    crate::support::warm_component_cache();
    let endpoint = TokenEndpoint::start().await.unwrap();
    // The answer takes a moment, as a real one does: writes land during the exchange.
    endpoint.set_latency(Duration::from_millis(20)..Duration::from_millis(60));
    let scenario = expired_login(&endpoint);
    let writer = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "processes::cli_protocol_writer",
            "--nocapture",
        ])
        .env("CLI_PROTOCOL_WRITER_FILE", &scenario.path)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let count = scenario.dir().join("writer.count");
    while !count.exists() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let url = endpoint.url();
    for round in 0..REFRESHES {
        let output = crate::support::finish(crate::support::spawn_cli(
            &scenario.path,
            &url,
            &["refresh", "--force"],
        ))
        .await;
        assert!(
            output.status.success(),
            "refresh {round}: {}",
            text(&output).1
        );
    }
    std::fs::write(scenario.dir().join("stop"), "").unwrap();
    let writer_done = tokio::task::spawn_blocking(move || writer.wait_with_output().unwrap())
        .await
        .unwrap();
    assert!(writer_done.status.success(), "{}", text(&writer_done).1);

    assert_eq!(endpoint.revoked_families(), 0, "a spent token came back");
    assert_eq!(endpoint.grants_served(), REFRESHES as u64);
    // Our last rotation is what is stored, and the writer's last update too.
    let stored = scenario.json();
    assert!(
        endpoint.refresh_token_is_live(stored["claudeAiOauth"]["refreshToken"].as_str().unwrap())
    );
    let writes: u64 = std::fs::read_to_string(&count).unwrap().parse().unwrap();
    assert!(writes > 0);
    assert_eq!(
        stored["mcpOAuth"]["writer"], writes,
        "the writer lost an update"
    );
    eprintln!(
        "cli protocol: {REFRESHES} forced refreshes beside {writes} writes of another process"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_symlink_and_its_target_take_one_lock() {
    const PROCESSES: usize = 12;
    let endpoint = TokenEndpoint::start().await.unwrap();
    endpoint.set_latency(Duration::from_millis(300)..Duration::from_millis(400));
    let scenario = expired_login(&endpoint);
    // `~/.claude/.credentials.json` a link into a dotfiles folder.
    let home = tempfile::tempdir().unwrap();
    let link_dir = home.path().join(".claude");
    std::fs::create_dir(&link_dir).unwrap();
    let link = link_dir.join(".credentials.json");
    std::os::unix::fs::symlink(&scenario.path, &link).unwrap();
    let url = endpoint.url();
    crate::support::warm_component_cache();
    let children: Vec<Child> = (0..PROCESSES)
        .map(|i| {
            let path = if i % 2 == 0 { &link } else { &scenario.path };
            crate::support::spawn_cli(path, &url, &["token"])
        })
        .collect();
    let outputs = crate::support::finish_all(children).await;
    for output in &outputs {
        let (stdout, stderr) = text(output);
        assert!(output.status.success(), "{stderr}");
        assert_eq!(stdout.trim(), scenario.oauth("accessToken"));
    }
    assert_eq!(endpoint.grants_served(), 1, "one refresh for both names");
    assert_eq!(endpoint.revoked_families(), 0);
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
}

/// A lock dated an hour ahead is what a live holder leaves when the clock steps back after its
/// last touch: it touches the lock again within its interval. Taking such a lock over at first
/// sight steals it; it is stale only if it stays untouched.
#[tokio::test]
async fn the_clock_stepping_back_does_not_make_a_live_lock_stale() {
    crate::support::warm_component_cache();
    let endpoint = TokenEndpoint::start().await.unwrap();
    let scenario = expired_login(&endpoint);
    let lock = cli_lock_dirs(scenario.dir())[0].clone();
    let ahead = SystemTime::now() + Duration::from_secs(3600);
    let ahead = ahead
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // The holder: takes the lock, its mtime an hour ahead, touches it 2 s later (its clock
    // stepped back), holds it 3 s more, releases it — `rmdir` fails if it was taken from it.
    let script = format!(
        "mkdir '{0}' && touch -d @{ahead} '{0}' && sleep 2 && touch '{0}' && sleep 3 && rmdir '{0}'",
        lock.display()
    );
    let holder = std::process::Command::new("sh")
        .args(["-c", &script])
        .spawn()
        .unwrap();
    while !lock.exists() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let started = Instant::now();
    let output = token(&scenario, &endpoint.url()).await;
    let waited = started.elapsed();
    let holder = crate::support::finish(holder).await;
    assert!(output.status.success(), "{}", text(&output).1);
    assert!(
        holder.status.success(),
        "the lock was taken from its live holder"
    );
    assert!(
        waited >= Duration::from_millis(4500),
        "waited only {waited:?}"
    );
    assert_eq!(endpoint.grants_served(), 1);
}

/// `import --force` of another login into the credential file while a refresh of it is under
/// way (its answer on the way): the import waits for the refresh lock, lands after the refresh's
/// write, and stays — the refresh never puts the old login's rotation back over it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_during_a_refresh_lands_after_it_and_stays() {
    let endpoint = TokenEndpoint::start().await.unwrap();
    endpoint.set_latency(Duration::from_millis(1000)..Duration::from_millis(1001));
    let scenario = expired_login(&endpoint);
    let refreshing =
        crate::support::spawn_cli(&scenario.path, &endpoint.url(), &["refresh", "--force"]);
    crate::support::until_requests(&endpoint, 1).await;
    let other = expired_login(&endpoint);
    let store = scenario.path.to_str().unwrap().to_owned();
    let import = cli(
        scenario.dir(),
        &[
            "--store",
            &store,
            "import",
            other.path.to_str().unwrap(),
            "--force",
        ],
    )
    .await;
    assert!(import.status.success(), "{:?}", text(&import));
    let refreshed = crate::support::finish(refreshing).await;
    assert!(refreshed.status.success(), "{:?}", text(&refreshed));
    assert_eq!(
        scenario.oauth("refreshToken"),
        other.oauth("refreshToken"),
        "the refresh wrote its rotation over the import"
    );
    assert_eq!(endpoint.revoked_families(), 0);
}
