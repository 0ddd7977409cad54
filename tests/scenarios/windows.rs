//! The Windows build of the CLI as a Windows user meets it, run under Wine: the demo, `status`
//! and `token`, a storm of processes, kills at random moments, a credential file an antivirus
//! holds open, the `claude` CLI's lock directories. Wine implements Windows' sharing modes, file
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

/// The Windows CLI (`claude-code-auth.exe`); `bcryptprimitives.dll` and `hold_open.exe` beside it.
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
