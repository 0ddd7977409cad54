//! The owner record the `claude` CLI 2.1.332 keeps beside its refresh lock
//! (`.oauth_refresh.lock.owner`), between real processes: ours leaves one as the CLI writes it
//! while it holds the locks, so that a holder killed with `kill -9` blocks the others for
//! seconds; a record that proves its holder gone — as the CLI proves it — lets ours take the
//! lock over at once; a record that proves nothing leaves the lock alone until it is stale
//! (60 s, both locks, as for the CLI). The real CLI's side of it is in `claude_cli.rs`.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use claude_code_auth_testkit::loopback::TokenEndpoint;
use entelix_auth_claude_code::{
    ClaudeCodeAuthError, ClaudeCodeOAuthConfig, ClaudeCodeOAuthProvider, FileCredentialStore,
};
use serde_json::{Value, json};

use crate::support::{Scenario, cli_command, expired_login, finish, spawn_cli, text};

/// The owner record beside the CLI's refresh lock.
pub(crate) const RECORD: &str = ".oauth_refresh.lock.owner";

/// The main refresh lock and the legacy one (`realpath(dir).lock`) of the login in `dir`.
pub(crate) fn lock_dirs(dir: &Path) -> (PathBuf, PathBuf) {
    let real = std::fs::canonicalize(dir).unwrap();
    let mut legacy = real.file_name().unwrap().to_os_string();
    legacy.push(".lock");
    (dir.join(".oauth_refresh.lock"), real.with_file_name(legacy))
}

/// A directory's birth time as the CLI's runtime gives it (`birthtimeMs`).
fn birthtime_ms(path: &Path) -> f64 {
    let since = std::fs::symlink_metadata(path)
        .unwrap()
        .created()
        .expect("birth times (statx) on this file system")
        .duration_since(UNIX_EPOCH)
        .unwrap();
    since.as_secs() as f64 * 1000.0 + f64::from(since.subsec_nanos()) / 1e6
}

/// Field 22 of `/proc/<pid>/stat`: the process's start time in clock ticks.
fn proc_start(pid: u32) -> String {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let (_, rest) = stat.rsplit_once(')').unwrap();
    rest.split_whitespace().nth(19).unwrap().to_owned()
}

/// The CLI's `pidDomain` and `pidSpace` for processes here.
fn pid_domain_and_space() -> (String, String) {
    let machine = std::fs::read_to_string("/etc/machine-id").unwrap_or_default();
    let namespace = std::fs::read_link("/proc/self/ns/pid")
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    (
        format!("linux:{}:{namespace}", machine.trim()),
        format!("{}#{namespace}", host.trim()),
    )
}

/// A pid that was a process a moment ago and is none now.
fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

/// Both locks of the login in `dir` made as a CLI holding them makes them, with `record` (the
/// CLI's record of a holder `pid`, birth times and all) beside them, edited by `edit`.
fn held_by(dir: &Path, pid: u32, start: &str, edit: impl FnOnce(&mut Value)) {
    let (lock, legacy) = lock_dirs(dir);
    std::fs::create_dir(&lock).unwrap();
    std::fs::create_dir(&legacy).unwrap();
    let (domain, space) = pid_domain_and_space();
    let mut record = json!({
        "pid": pid,
        "procStart": start,
        "pidDomain": domain,
        "pidSpace": space,
        "lockBirthtimeMs": birthtime_ms(&lock),
        "legacyLockBirthtimeMs": birthtime_ms(&legacy),
    });
    edit(&mut record);
    std::fs::write(dir.join(RECORD), record.to_string()).unwrap();
}

/// Our `token` on `scenario`, held by the fault shim at `point` (60 s); the mark file says it
/// got there.
fn paused_at(scenario: &Scenario, endpoint: &TokenEndpoint, point: &str) -> (Child, PathBuf) {
    let mark = scenario.dir().join("paused-here");
    let mut command = cli_command(scenario.dir());
    command
        .args(["token", "--credentials"])
        .arg(&scenario.path)
        .args(["--token-url", &endpoint.url()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    crate::faults::paused_at(&mut command, point, &mark, 60_000);
    (command.spawn().unwrap(), mark)
}

/// Our `token` on `scenario`, paused once its owner record is in place (both refresh locks
/// held, nothing sent).
async fn paused_with_the_record(scenario: &Scenario, endpoint: &TokenEndpoint) -> Child {
    let (child, mark) = paused_at(scenario, endpoint, "owner");
    crate::faults::until_paused(&mark, "left an owner record beside the lock").await;
    child
}

/// While ours holds the locks, the record beside them is the CLI's, field for field: its pid,
/// its start time, the pid domain and space, both locks' birth times. At release it is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ours_leaves_the_clis_owner_record_while_it_holds_the_locks() {
    let endpoint = TokenEndpoint::start().await.unwrap();
    let scenario = expired_login(&endpoint);
    let mut child = paused_with_the_record(&scenario, &endpoint).await;
    let (lock, legacy) = lock_dirs(scenario.dir());
    let text_of_record = std::fs::read_to_string(scenario.dir().join(RECORD)).unwrap();
    let record: serde_json::Map<String, Value> = serde_json::from_str(&text_of_record).unwrap();
    let (domain, space) = pid_domain_and_space();
    let keys: Vec<&str> = record.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "pid",
            "procStart",
            "pidDomain",
            "pidSpace",
            "lockBirthtimeMs",
            "legacyLockBirthtimeMs"
        ]
    );
    assert_eq!(record["pid"], child.id());
    assert_eq!(record["procStart"], proc_start(child.id()));
    assert_eq!(record["pidDomain"], domain.as_str());
    assert_eq!(record["pidSpace"], space.as_str());
    assert_eq!(
        record["lockBirthtimeMs"].as_f64(),
        Some(birthtime_ms(&lock))
    );
    assert_eq!(
        record["legacyLockBirthtimeMs"].as_f64(),
        Some(birthtime_ms(&legacy))
    );
    assert!(endpoint.requests().is_empty(), "nothing is sent yet");
    let meta = std::fs::symlink_metadata(scenario.dir().join(RECORD)).unwrap();
    assert!(meta.is_file() && meta.len() <= 4096);

    child.kill().unwrap();
    child.wait().unwrap();
}

/// From the moment the answer is in until the credential file holds it, only a process of ours
/// can hand a killed holder's answer over: the record is gone by then, so a CLI waits out the
/// stale time rather than presenting the spent token within seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_record_is_gone_once_the_answer_is_in() {
    let endpoint = TokenEndpoint::start().await.unwrap();
    let scenario = expired_login(&endpoint);
    let (mut child, mark) = paused_at(&scenario, &endpoint, "fill");
    crate::faults::until_paused(&mark, "answered").await;
    let (lock, _) = lock_dirs(scenario.dir());
    assert!(lock.exists(), "still holding the lock");
    assert!(
        !scenario.dir().join(RECORD).exists(),
        "the record is still there"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    // Ours, next, hands the answer over: the login goes on with that one grant.
    let output = finish(spawn_cli(&scenario.path, &endpoint.url(), &["token"])).await;
    assert!(output.status.success(), "{}", text(&output).1);
    assert_eq!(endpoint.grants_served(), 1);
    assert_eq!(endpoint.revoked_families(), 0);
}

/// `kill -9` of ours while it holds the locks (nothing sent): its record proves it gone, and
/// the next process takes the lock over at once instead of waiting out the 60 s stale time;
/// one grant in all. Fails on a build that leaves no record (it waits, and times out).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_of_ours_killed_holding_the_locks_blocks_the_next_for_seconds() {
    let endpoint = TokenEndpoint::start().await.unwrap();
    let scenario = expired_login(&endpoint);
    let mut child = paused_with_the_record(&scenario, &endpoint).await;
    child.kill().unwrap();
    child.wait().unwrap();
    let (lock, legacy) = lock_dirs(scenario.dir());
    assert!(
        lock.exists() && legacy.exists(),
        "killed holding both locks"
    );
    let started = Instant::now();
    let output = finish(spawn_cli(&scenario.path, &endpoint.url(), &["token"])).await;
    let took = started.elapsed();
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert!(endpoint.accepts_access_token(stdout.trim()));
    assert_eq!(endpoint.grants_served(), 1);
    assert_eq!(endpoint.revoked_families(), 0);
    assert!(!lock.exists() && !legacy.exists());
    assert!(!scenario.dir().join(RECORD).exists(), "released with ours");
}

/// A lock the CLI holds whose record proves the holder gone — its pid is no process, or a
/// process started at another time (the pid reused) — is taken over at once, as the CLI
/// takes it over. Fails on a build that ignores the record (it waits for the stale time).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_whose_record_proves_its_holder_gone_is_taken_over_at_once() {
    // A live process (this test) recorded with another start time: its pid was reused.
    let me = std::process::id();
    let cases: [(&str, u32, String); 2] = [
        ("a dead pid", dead_pid(), "12345".into()),
        ("a reused pid", me, format!("{}0", proc_start(me))),
    ];
    for (what, pid, start) in cases {
        let endpoint = TokenEndpoint::start().await.unwrap();
        let scenario = expired_login(&endpoint);
        held_by(scenario.dir(), pid, &start, |_| {});
        let started = Instant::now();
        let output = finish(spawn_cli(&scenario.path, &endpoint.url(), &["token"])).await;
        let took = started.elapsed();
        assert!(output.status.success(), "{what}: {}", text(&output).1);
        assert!(took < Duration::from_secs(5), "{what}: took {took:?}");
        assert_eq!(endpoint.grants_served(), 1, "{what}");
        let (lock, legacy) = lock_dirs(scenario.dir());
        assert!(!lock.exists() && !legacy.exists(), "{what}");
        assert!(!scenario.dir().join(RECORD).exists(), "{what}");
    }
}

/// A record that proves nothing leaves the CLI's lock alone — not touched, not removed (the CLI
/// aborts a refresh whose lock someone touched): a live holder, another pid namespace or
/// machine, a lock made again since (another birth time), a legacy lock not the recorded one,
/// a record that is a symlink, too long, or not the CLI's schema. And a lock without a record
/// is stale only after 60 s, the legacy one too (ours took the legacy one after 10 s before).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_that_proves_nothing_leaves_the_lock_alone() {
    type Edit = Box<dyn Fn(&Path, &mut Value)>;
    let me = std::process::id();
    let my_start = proc_start(me);
    let dead = dead_pid();
    let cases: Vec<(&str, u32, Edit)> = vec![
        ("a live holder", me, Box::new(|_, _| {})),
        (
            "another pid namespace",
            dead,
            Box::new(|_, r| r["pidSpace"] = "elsewhere#pid:[4026531999]".into()),
        ),
        (
            "another machine",
            dead,
            Box::new(|_, r| r["pidDomain"] = "linux:0123456789abcdef:pid:[4026531836]".into()),
        ),
        (
            "a lock made again since",
            dead,
            Box::new(|_, r| {
                r["lockBirthtimeMs"] = (r["lockBirthtimeMs"].as_f64().unwrap() - 1.0).into();
            }),
        ),
        (
            "another legacy lock",
            dead,
            Box::new(|_, r| {
                r["legacyLockBirthtimeMs"] =
                    (r["legacyLockBirthtimeMs"].as_f64().unwrap() + 0.5).into();
            }),
        ),
        (
            "a record not in the CLI's schema",
            dead,
            Box::new(|_, r| r["pid"] = "not a number".into()),
        ),
        (
            "a record too long",
            dead,
            Box::new(|_, r| r["padding"] = "x".repeat(5000).into()),
        ),
        ("a record that is a symlink", dead, Box::new(|_, _| {})),
        (
            "no record, the legacy lock 30 s old",
            dead,
            Box::new(|_, _| {}),
        ),
    ];
    for (what, pid, edit) in cases {
        let endpoint = TokenEndpoint::start().await.unwrap();
        let scenario = expired_login(&endpoint);
        let dir = scenario.dir().to_path_buf();
        let start = if pid == me {
            my_start.clone()
        } else {
            "1".into()
        };
        held_by(&dir, pid, &start, |record| edit(&dir, record));
        let (lock, legacy) = lock_dirs(&dir);
        if what.starts_with("a record that is a symlink") {
            let real = dir.join("record-elsewhere");
            std::fs::rename(dir.join(RECORD), &real).unwrap();
            std::os::unix::fs::symlink(&real, dir.join(RECORD)).unwrap();
        }
        if what.starts_with("no record") {
            std::fs::remove_file(dir.join(RECORD)).unwrap();
            std::fs::remove_dir(&lock).unwrap();
            let thirty_ago = SystemTime::now() - Duration::from_secs(30);
            std::fs::File::open(&legacy)
                .unwrap()
                .set_modified(thirty_ago)
                .unwrap();
        }
        let record_before = std::fs::symlink_metadata(dir.join(RECORD))
            .ok()
            .map(|_| std::fs::read(dir.join(RECORD)).unwrap());
        let mtimes = |path: &Path| std::fs::metadata(path).ok().map(|m| m.modified().unwrap());
        let before = (mtimes(&lock), mtimes(&legacy));
        let provider = ClaudeCodeOAuthProvider::with_config(
            FileCredentialStore::with_path(&scenario.path),
            ClaudeCodeOAuthConfig::new()
                .with_token_url(endpoint.url())
                .with_lock_timeout(Duration::from_millis(1500)),
        );
        let error = provider.header_value().await.unwrap_err();
        assert!(
            matches!(error, ClaudeCodeAuthError::LockTimeout { .. }),
            "{what}: {error}"
        );
        assert_eq!((mtimes(&lock), mtimes(&legacy)), before, "{what}: touched");
        let record_after = std::fs::symlink_metadata(dir.join(RECORD))
            .ok()
            .map(|_| std::fs::read(dir.join(RECORD)).unwrap());
        assert_eq!(record_after, record_before, "{what}: the record changed");
        assert!(endpoint.requests().is_empty(), "{what}");
        let _ = std::fs::remove_dir(&lock);
        let _ = std::fs::remove_dir(&legacy);
    }
}
