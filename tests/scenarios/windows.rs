//! The Windows build of the CLI as a Windows user meets it, run under Wine: the demo, `status`
//! and `token`, a storm of processes, kills at random moments, a credential file an antivirus
//! holds open, the `claude` CLI's lock directories and a dead holder's. Wine implements Windows' sharing modes, file
//! and process APIs well enough for these; it is not Windows.
//!
//! Each test is ignored in a plain `cargo test`: `.ci/windows` builds the CLI for
//! `x86_64-pc-windows-gnu` with its helpers (`tests/windows/`), makes a Wine prefix and runs them
//! with `--ignored`, naming the executable in [`CLI_ENV`]. Run without it, a test fails saying so.
//! The token endpoint is this process's loopback one, reached from the Windows processes.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::{Scenario, expired_login, finish, finish_all, text, without_token_fields};
use claude_code_auth_testkit::loopback::TokenEndpoint;

/// The Windows CLI (`claude-code-auth.exe`); `bcryptprimitives.dll`, `hold_open.exe` and
/// `terminate.exe` beside it.
const CLI_ENV: &str = "CLAUDE_CODE_AUTH_WINDOWS_CLI";

/// The Windows CLI's path.
fn exe() -> PathBuf {
    let exe = std::env::var_os(CLI_ENV).unwrap_or_else(|| {
        panic!("{CLI_ENV} names no Windows build of the CLI: run .ci/windows, which builds one")
    });
    PathBuf::from(exe)
}

/// A helper built beside the CLI.
fn helper(name: &str) -> PathBuf {
    exe().with_file_name(name)
}

/// `path` as a Windows program under Wine names it (the `Z:` drive is `/`).
fn win(path: &Path) -> String {
    format!("Z:{}", path.to_str().unwrap().replace('/', "\\"))
}

/// `program` under Wine, with `home` as the user's profile and no credential location
/// inherited from the machine; its compiled component cached where every Windows process of the
/// run finds it.
fn wine(program: &Path, home: &Path) -> Command {
    let mut command = Command::new("wine");
    command
        .arg(program)
        .env("WINEDEBUG", "-all")
        .env_remove("CLAUDE_CONFIG_DIR")
        .env_remove("CLAUDE_CODE_OAUTH_TOKEN")
        .env_remove("CLAUDE_CODE_AUTH_STORE")
        .env("USERPROFILE", win(home))
        .env("CLAUDE_CODE_AUTH_CACHE_DIR", win(&cache_dir()))
        .env(
            "CLAUDE_CODE_AUTH_STATE_DIR",
            win(&home.join(".ccauth-state")),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

fn cache_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("component-cache-windows")
}

/// The Windows CLI with `args`, on `scenario`'s file against `url`.
fn spawn(scenario: &Scenario, url: &str, args: &[&str]) -> Child {
    warm();
    wine(&exe(), scenario.dir())
        .args(args)
        .args(["--credentials", &win(&scenario.path), "--token-url", url])
        .spawn()
        .unwrap()
}

async fn run(scenario: &Scenario, url: &str, args: &[&str]) -> Output {
    finish(spawn(scenario, url, args)).await
}

/// The component compiled once for the Windows build, before processes race to.
fn warm() {
    static WARM: std::sync::Once = std::sync::Once::new();
    WARM.call_once(|| {
        let home = tempfile::tempdir().unwrap();
        let output = wine(&exe(), home.path())
            .args([
                "status",
                "--credentials",
                &win(&home.path().join("none.json")),
            ])
            .output()
            .unwrap();
        assert!(
            std::fs::read_dir(cache_dir()).is_ok_and(|mut d| d.next().is_some()),
            "the Windows CLI cached no compiled component: {}",
            text(&output).1
        );
    });
}

/// Temporary files and CLI lock directories left in `dir`.
fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp") || n.ends_with(".lock") || n.ends_with(".staging"))
        .collect()
}

#[tokio::test]
#[ignore = "run by .ci/windows under Wine"]
async fn the_demo_runs() {
    let home = tempfile::tempdir().unwrap();
    let output = tokio::task::spawn_blocking(move || {
        wine(&exe(), home.path()).arg("demo").output().unwrap()
    })
    .await
    .unwrap();
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("The endpoint served 1 refresh grant")
            && stdout.contains("tokens rotated, every other key kept")
            && stdout.contains("Done;"),
        "{stdout}"
    );
}

/// `status` says what the Linux build says of the same file (its path aside), and `token`
/// refreshes the expired login once and prints the token it stored.
#[tokio::test]
#[ignore = "run by .ci/windows under Wine"]
async fn status_and_token_say_what_the_linux_build_says() {
    let endpoint = TokenEndpoint::start().await.unwrap();
    let scenario = expired_login(&endpoint);
    let url = endpoint.url();
    let linux =
        crate::support::finish(crate::support::spawn_cli(&scenario.path, &url, &["status"])).await;
    let windows = run(&scenario, &url, &["status"]).await;
    assert_eq!(
        windows.status.code(),
        linux.status.code(),
        "{}",
        text(&windows).1
    );
    let unix_path = scenario.path.to_str().unwrap();
    assert_eq!(
        text(&windows).0.replace(&win(&scenario.path), unix_path),
        text(&linux).0
    );

    let before = scenario.json();
    let output = run(&scenario, &url, &["token"]).await;
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    assert_eq!(stdout.trim(), scenario.oauth("accessToken"));
    assert!(endpoint.accepts_access_token(stdout.trim()));
    assert_eq!(endpoint.grants_served(), 1);
    assert_eq!(
        without_token_fields(scenario.json()),
        without_token_fields(before)
    );
    assert!(
        leftovers(scenario.dir()).is_empty(),
        "{:?}",
        leftovers(scenario.dir())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by .ci/windows under Wine"]
async fn a_storm_of_eight_windows_processes_spends_one_grant() {
    const PROCESSES: usize = 8;
    let endpoint = TokenEndpoint::start().await.unwrap();
    endpoint.set_latency(Duration::from_millis(300)..Duration::from_millis(400));
    let scenario = expired_login(&endpoint);
    let before = scenario.json();
    let url = endpoint.url();
    let children = (0..PROCESSES)
        .map(|_| spawn(&scenario, &url, &["token"]))
        .collect();
    let outputs = finish_all(children).await;
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
    assert_eq!(endpoint.revoked_families(), 0, "nobody was logged out");
    assert!(endpoint.accepts_access_token(&stored));
    assert_eq!(
        without_token_fields(scenario.json()),
        without_token_fields(before)
    );
    assert!(
        leftovers(scenario.dir()).is_empty(),
        "{:?}",
        leftovers(scenario.dir())
    );
}

/// An antivirus or indexer holds the credential file open for 2 s, sharing read and write but
/// not delete, just as a refresh writes it: the refresh succeeds, by a rename retried until the
/// file is let go (so the file is replaced whole, never written in place).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by .ci/windows under Wine"]
async fn a_file_held_open_without_share_delete_during_a_refresh_is_replaced_once_let_go() {
    let endpoint = TokenEndpoint::start().await.unwrap();
    let scenario = expired_login(&endpoint);
    let before = scenario.json();
    let inode = std::fs::metadata(&scenario.path).unwrap().ino();
    let mark = scenario.dir().join("held.mark");
    let holder = wine(&helper("hold_open.exe"), scenario.dir())
        .args([&win(&scenario.path), "2000", &win(&mark)])
        .spawn()
        .unwrap();
    let started = Instant::now();
    while !mark.exists() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the holder never opened the file"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let held_at = Instant::now();
    let output = run(&scenario, &endpoint.url(), &["token"]).await;
    let took = held_at.elapsed();
    let (stdout, stderr) = text(&output);
    let holder = finish(holder).await;
    assert!(holder.status.success(), "{}", text(&holder).1);
    assert!(output.status.success(), "{stderr}");
    assert_eq!(stdout.trim(), scenario.oauth("accessToken"));
    assert!(endpoint.accepts_access_token(stdout.trim()));
    assert_eq!(
        without_token_fields(scenario.json()),
        without_token_fields(before)
    );
    assert_ne!(
        std::fs::metadata(&scenario.path).unwrap().ino(),
        inode,
        "replaced by a rename, not written in place ({took:?}): {stderr}"
    );
    assert!(!stderr.contains("in place"), "{stderr}");
    assert!(
        leftovers(scenario.dir()).is_empty(),
        "{:?}",
        leftovers(scenario.dir())
    );
    eprintln!("held open 2 s: refreshed in {took:?}, replaced by a rename");
}

/// A random duration below `max`.
fn random_below(max: Duration) -> Duration {
    use std::hash::{BuildHasher, RandomState};
    let nanos = RandomState::new().hash_one(Instant::now()) % max.as_nanos() as u64;
    Duration::from_nanos(nanos)
}

/// Windows processes killed at random moments of a refresh (from the Linux side: the process
/// under Wine is a Linux process, and dies as `TerminateProcess` kills, without a chance to
/// clean up): the file always parses, keeps every other key and a token pair, and the next
/// process refreshes or adopts without waiting for anything the dead one held. The one loss
/// nothing can prevent is counted, not hidden: a kill after the request left and before its
/// answer arrived (the endpoint rotated the token; the answer died with the process).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by .ci/windows under Wine"]
async fn windows_processes_killed_at_random_moments_never_damage_the_login() {
    const ROUNDS: usize = 16;
    let endpoint = TokenEndpoint::start().await.unwrap();
    endpoint.set_latency(Duration::ZERO..Duration::from_millis(30));
    let url = endpoint.url();
    let (mut killed, mut lost, mut slowest_next) = (0, 0, Duration::ZERO);
    for round in 0..ROUNDS {
        let scenario = expired_login(&endpoint);
        let original = scenario.json();
        let (old_access, old_refresh) = (
            scenario.oauth("accessToken"),
            scenario.oauth("refreshToken"),
        );
        let requests = endpoint.requests().len();
        let mut child = spawn(&scenario, &url, &["token"]);
        if round % 2 == 1 {
            // Once the request reached the endpoint: waiting, parsing, writing, exiting.
            let started = Instant::now();
            while endpoint.requests().len() == requests && child.try_wait().unwrap().is_none() {
                assert!(
                    started.elapsed() < Duration::from_secs(20),
                    "round {round}: no request"
                );
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        tokio::time::sleep(random_below(Duration::from_millis(if round % 2 == 1 {
            40
        } else {
            400
        })))
        .await;
        if child.try_wait().unwrap().is_none() {
            killed += 1;
        }
        let _ = child.kill();
        child.wait().unwrap();

        let after = scenario.json();
        assert_eq!(
            without_token_fields(after),
            without_token_fields(original.clone()),
            "round {round}"
        );
        let rewritten = scenario.oauth("accessToken") != old_access;
        assert_eq!(
            rewritten,
            scenario.oauth("refreshToken") != old_refresh,
            "round {round}: tokens written as a pair"
        );
        let revoked = endpoint.revoked_families();
        let started = Instant::now();
        let output = run(&scenario, &url, &["token"]).await;
        let took = started.elapsed();
        slowest_next = slowest_next.max(took);
        let (stdout, stderr) = text(&output);
        assert!(
            took < Duration::from_secs(15),
            "round {round}: the next process took {took:?}: {stderr}; left {:?}",
            leftovers(scenario.dir())
        );
        if endpoint.revoked_families() > revoked {
            lost += 1;
            assert!(
                !rewritten && stderr.contains("invalid_grant"),
                "round {round}: {stderr}"
            );
        } else {
            assert!(output.status.success(), "round {round}: {stderr}");
            assert_eq!(
                stdout.trim(),
                scenario.oauth("accessToken"),
                "round {round}"
            );
        }
        let output = run(&scenario, &url, &["refresh", "--force"]).await;
        assert!(
            output.status.success() || endpoint.revoked_families() > revoked,
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
        "windows kills: {ROUNDS} rounds, {killed} killed mid-run, {lost} answers lost in flight, \
         slowest next process {slowest_next:?}"
    );
    assert!(killed >= ROUNDS / 4, "most rounds must kill: {killed}");
}

/// The `claude` CLI's lock directories as a Windows process of ours meets them: one the CLI
/// holds (made, then removed 1.5 s later) is waited for; a stale one (61 s old) is taken over at
/// once; one dated in the future is taken over once it has been left untouched.
#[tokio::test]
#[ignore = "run by .ci/windows under Wine"]
async fn the_clis_lock_directories_are_honoured_on_windows() {
    let endpoint = TokenEndpoint::start().await.unwrap();
    let scenario = expired_login(&endpoint);
    let lock = scenario.dir().join(".oauth_refresh.lock");
    std::fs::create_dir(&lock).unwrap();
    let remover = {
        let lock = lock.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(1500));
            std::fs::remove_dir(&lock).unwrap();
        })
    };
    let started = Instant::now();
    let output = run(&scenario, &endpoint.url(), &["token"]).await;
    let waited = started.elapsed();
    remover.join().unwrap();
    assert!(output.status.success(), "{}", text(&output).1);
    assert!(
        waited >= Duration::from_millis(1300),
        "a live lock was not waited for: {waited:?}"
    );
    assert_eq!(endpoint.grants_served(), 1);

    let now = std::time::SystemTime::now();
    for (mtime, within) in [
        (now - Duration::from_secs(61), Duration::from_secs(4)),
        (now + Duration::from_secs(3600), Duration::from_secs(12)),
    ] {
        let endpoint = TokenEndpoint::start().await.unwrap();
        let scenario = expired_login(&endpoint);
        let lock = scenario.dir().join(".oauth_refresh.lock");
        std::fs::create_dir(&lock).unwrap();
        std::fs::File::open(&lock)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        let started = Instant::now();
        let output = run(&scenario, &endpoint.url(), &["token"]).await;
        assert!(output.status.success(), "{mtime:?}: {}", text(&output).1);
        assert!(
            started.elapsed() < within,
            "{mtime:?}: {:?}",
            started.elapsed()
        );
        assert!(!lock.exists());
        assert!(
            leftovers(scenario.dir()).is_empty(),
            "{:?}",
            leftovers(scenario.dir())
        );
    }
}

/// A Windows process that dies holding the refresh locks — ended with `TerminateProcess` by
/// another Windows process, or killed from the Linux side — leaves both lock directories and the
/// owner record naming it (its Windows pid, the directories' birth times). The next process
/// takes them over at once, where otherwise it would wait for them to go stale (60 s): through
/// our crash journal when the dead holder was ours, through the owner record alone (as for a
/// `claude` CLI holder, which keeps no journal of ours: emptied here) — in both `OpenProcess`
/// proves the pid gone. The dead holder sent its request to a server that never answers, so the
/// login it held is still the live one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by .ci/windows under Wine"]
async fn a_dead_holders_lock_directories_are_reclaimed_at_once_on_windows() {
    use crate::lock_owners::{RECORD, lock_dirs};
    for ended_by in ["TerminateProcess", "a kill from the Linux side"] {
        for record_only in [false, true] {
            let what = format!("{ended_by}, record only: {record_only}");
            let endpoint = TokenEndpoint::start().await.unwrap();
            let scenario = expired_login(&endpoint);
            let original = scenario.json();
            // Takes the connection and never reads from it: the holder waits for its answer.
            let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let silent_url = format!("http://{}/v1/oauth/token", silent.local_addr().unwrap());
            let mut holder = spawn(&scenario, &silent_url, &["token"]);
            let record = scenario.dir().join(RECORD);
            let started = Instant::now();
            while !record.exists() {
                if started.elapsed() > Duration::from_secs(20)
                    || holder.try_wait().unwrap().is_some()
                {
                    let _ = holder.kill();
                    let output = holder.wait_with_output().unwrap();
                    panic!("{what}: no owner record: {}", text(&output).1);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            // Written through a temporary file and renamed: once it is there, it is whole.
            let pid = serde_json::from_slice::<serde_json::Value>(&std::fs::read(&record).unwrap())
                .unwrap()["pid"]
                .as_u64()
                .unwrap();
            if ended_by == "TerminateProcess" {
                let output = wine(&helper("terminate.exe"), scenario.dir())
                    .arg(pid.to_string())
                    .output()
                    .unwrap();
                assert!(output.status.success(), "{}", text(&output).1);
            } else {
                holder.kill().unwrap();
            }
            holder.wait().unwrap();
            let (lock, legacy) = lock_dirs(scenario.dir());
            assert!(
                lock.is_dir() && legacy.is_dir() && record.is_file(),
                "{what}: the dead holder left {:?}",
                leftovers(scenario.dir())
            );
            if record_only {
                let journal = scenario.path.with_file_name(".credentials.json.flock");
                std::fs::write(&journal, b"").unwrap();
            }

            let started = Instant::now();
            let output = run(&scenario, &endpoint.url(), &["token"]).await;
            let took = started.elapsed();
            let (stdout, stderr) = text(&output);
            assert!(output.status.success(), "{what}: {stderr}");
            assert!(took < Duration::from_secs(6), "{what}: took {took:?}");
            assert_eq!(stdout.trim(), scenario.oauth("accessToken"), "{what}");
            assert_eq!(endpoint.grants_served(), 1, "{what}");
            assert_eq!(
                without_token_fields(scenario.json()),
                without_token_fields(original),
                "{what}"
            );
            assert!(
                !lock.exists() && !legacy.exists() && !record.exists(),
                "{what}: left {:?}",
                leftovers(scenario.dir())
            );
            eprintln!("windows: a holder ended by {what}: the next took over in {took:?}");
        }
    }
}

/// The compiled-component cache as Windows processes meet it (wasmtime trusts the machine code
/// it deserializes): the first process compiles and caches the component under a MAC of the
/// cache's own key (32 random bytes); an artifact changed afterwards — one byte of it flipped —
/// is not loaded: the next process recompiles, refreshes, and writes a good artifact back. A key
/// file that is not a key leaves the cache unused, never a call failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by .ci/windows under Wine"]
async fn a_tampered_compiled_component_is_recompiled_not_loaded_on_windows() {
    let endpoint = TokenEndpoint::start().await.unwrap();
    let scenario = expired_login(&endpoint);
    let cache = scenario.dir().join("component-cache");
    let cli = |args: &[&str]| {
        let mut command = wine(&exe(), scenario.dir());
        command
            .env("CLAUDE_CODE_AUTH_CACHE_DIR", win(&cache))
            .args(args)
            .args(["--credentials", &win(&scenario.path)])
            .args(["--token-url", &endpoint.url()]);
        finish(command.spawn().unwrap())
    };
    let output = cli(&["token"]).await;
    assert!(output.status.success(), "{}", text(&output).1);
    let artifacts: Vec<PathBuf> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .collect();
    let [artifact] = &artifacts[..] else {
        panic!("one artifact cached, not {artifacts:?}");
    };
    assert_eq!(std::fs::read(cache.join("cache.key")).unwrap().len(), 32);
    let good = std::fs::read(artifact).unwrap();
    let mut bad = good.clone();
    let middle = bad.len() / 2;
    bad[middle] ^= 0x5a;
    std::fs::write(artifact, &bad).unwrap();

    let output = cli(&["refresh", "--force"]).await;
    assert!(output.status.success(), "{}", text(&output).1);
    assert_eq!(endpoint.grants_served(), 2);
    let now = std::fs::read(artifact).unwrap();
    assert!(now != bad, "the tampered artifact was loaded, not replaced");
    assert_eq!(now.len(), good.len());

    std::fs::write(cache.join("cache.key"), b"short").unwrap();
    let output = cli(&["refresh", "--force"]).await;
    assert!(output.status.success(), "{}", text(&output).1);
    assert_eq!(endpoint.grants_served(), 3);
}

/// The hostile-input corpus (`hostile_inputs.rs`) through the Windows CLI: for every case a
/// Windows user can meet — files of any content, none, a directory; token endpoint answers of
/// any shape — `token` fails as the Linux build's does (the same exit code, the same messages
/// once paths are spelled alike),
/// names no secret, and leaves the file byte for byte. Left out: symlinks, FIFOs and devices
/// (Unix constructs, in the Linux corpus), and the answers that stall for the refresh timeout
/// (30 s for the CLI, which has no flag to shorten it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by .ci/windows under Wine"]
async fn the_hostile_input_corpus_fails_on_windows_as_on_linux() {
    use crate::hostile_inputs::{Endpoint, FileSetup, REFRESH, endpoint_cases, file_cases};
    use claude_code_auth_testkit::loopback::Reply;
    let runnable = |case: &crate::hostile_inputs::Case| {
        let file = matches!(
            case.file,
            FileSetup::Bytes(_) | FileSetup::Absent | FileSetup::Directory
        );
        let quick = match &case.endpoint {
            Endpoint::Knows(replies) => !replies
                .iter()
                .any(|r| matches!(r, Reply::Delay(..) | Reply::StallBody { .. })),
            _ => true,
        };
        file && quick
    };
    let cases: Vec<_> = file_cases()
        .into_iter()
        .chain(endpoint_cases())
        .filter(runnable)
        .collect();
    let count = cases.len();
    assert!(count >= 35, "{count} cases");
    let mut failures = Vec::new();
    for case in cases {
        let mut outcomes = Vec::new();
        for windows in [false, true] {
            let scenario = Scenario::empty();
            match &case.file {
                // The corpus is dated at the scenarios' fixed now; the CLI runs at the real one.
                FileSetup::Bytes(bytes) => {
                    std::fs::write(&scenario.path, at_real_now(bytes)).unwrap();
                }
                FileSetup::Directory => std::fs::create_dir(&scenario.path).unwrap(),
                _ => {}
            }
            let endpoint = TokenEndpoint::start().await.unwrap();
            let url = match &case.endpoint {
                Endpoint::Knows(replies) => {
                    endpoint.accept_refresh_token(REFRESH);
                    replies.iter().for_each(|r| endpoint.inject(r.clone()));
                    endpoint.url()
                }
                Endpoint::Stranger => endpoint.url(),
                Endpoint::ClosedPort => "http://127.0.0.1:1/v1/oauth/token".to_owned(),
            };
            let before = std::fs::read(&scenario.path).ok();
            let output = if windows {
                run(&scenario, &url, &["token"]).await
            } else {
                finish(crate::support::spawn_cli(&scenario.path, &url, &["token"])).await
            };
            let (stdout, stderr) = text(&output);
            let unix = scenario.path.to_str().unwrap();
            let said = stderr
                .replace(&format!(r"\\?\{}", win(&scenario.path)), unix)
                .replace(&win(&scenario.path), unix)
                .replace(unix, "<credentials>")
                .replace(&url, "<endpoint>");
            if std::fs::read(&scenario.path).ok() != before {
                failures.push(format!(
                    "{} (windows: {windows}): the file changed",
                    case.name
                ));
            }
            if stderr.contains("sk-ant") || stderr.contains("SECRET") || !stdout.is_empty() {
                failures.push(format!(
                    "{} (windows: {windows}): {stdout}{stderr}",
                    case.name
                ));
            }
            outcomes.push((output.status.code(), said));
        }
        if outcomes[0] != outcomes[1] {
            failures.push(format!(
                "{}: Linux {:?}, Windows {:?}",
                case.name, outcomes[0], outcomes[1]
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {count} cases differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!("hostile inputs on Windows: {count} cases, as on Linux");
}

/// `bytes` with the expiries the corpus writes relative to the scenarios' fixed now
/// ([`crate::support::NOW_MS`] − 60 s and − 1 ms) moved to the same distance from the real now
/// (the same number of digits, so nothing else moves).
fn at_real_now(bytes: &[u8]) -> Vec<u8> {
    use crate::support::{NOW_MS, real_now_ms};
    let shift = |bytes: Vec<u8>, offset: i64| {
        let (from, to) = (
            (NOW_MS - offset).to_string(),
            (real_now_ms() - offset).to_string(),
        );
        assert_eq!(from.len(), to.len());
        let mut out = Vec::with_capacity(bytes.len());
        let mut rest = &bytes[..];
        while let Some(at) = rest.windows(from.len()).position(|w| w == from.as_bytes()) {
            out.extend_from_slice(&rest[..at]);
            out.extend_from_slice(to.as_bytes());
            rest = &rest[at + from.len()..];
        }
        out.extend_from_slice(rest);
        out
    };
    shift(shift(bytes.to_vec(), 60_000), 1)
}
