//! A rescued login is found by every process that reaches it. The credential file refuses the
//! write after a refresh (the fault shim's `refuse-credential-write`: the rename and the write in
//! place both fail), so the rotated login goes to a rescue file; then other processes — through
//! another spelling of the path, another state directory, another user, none at all — must
//! answer it and write it back, never present the spent token, and never take or remove a
//! rescue of another login.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use claude_code_auth_testkit::loopback::TokenEndpoint;
use serde_json::Value;

use crate::support::{cli_binary, expired_login, text, without_machine_settings};

/// The CLI with `args`, in `cwd`, home `home`; `refuse`: the credential file refuses writes.
fn cli(home: &Path, cwd: &Path, args: &[&str], refuse: bool) -> Command {
    let mut command = Command::new(cli_binary());
    without_machine_settings(&mut command, home);
    command.current_dir(cwd).args(args);
    if refuse {
        command
            .env("LD_PRELOAD", crate::faults::shim())
            .env("CCAUTH_FAULT", "refuse-credential-write");
    }
    command
}

async fn output(mut command: Command) -> Output {
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

fn refresh_token(path: &Path) -> String {
    let doc: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    doc["claudeAiOauth"]["refreshToken"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A project directory `name` in `home` with `.claude/.credentials.json` holding an expired
/// login of `endpoint`.
fn project(home: &Path, name: &str, endpoint: &TokenEndpoint) -> PathBuf {
    let source = expired_login(endpoint);
    let dir = home.join(name).join(".claude");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(".credentials.json");
    std::fs::copy(&source.path, &path).unwrap();
    path
}

/// `token` on the project at `cwd` (through `CLAUDE_CONFIG_DIR=.claude`), refused or not.
async fn token_in(home: &Path, cwd: &Path, url: &str, refuse: bool) -> (Output, String) {
    let mut command = cli(home, cwd, &["token", "--token-url", url], refuse);
    command.env("CLAUDE_CONFIG_DIR", ".claude");
    let output = output(command).await;
    let stdout = text(&output).0.trim().to_owned();
    (output, stdout)
}

/// Two projects each with `CLAUDE_CONFIG_DIR=.claude`: the second one's refresh leaves the
/// first one's rescue alone (it is another login), and the first one gets its login back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_projects_with_the_same_relative_config_dir_keep_their_own_rescues() {
    let endpoint = TokenEndpoint::start().await.unwrap();
    let home = tempfile::tempdir().unwrap();
    let one = project(home.path(), "one", &endpoint);
    let two = project(home.path(), "two", &endpoint);
    let url = endpoint.url();
    let cwd = |path: &Path| path.parent().unwrap().parent().unwrap().to_path_buf();

    let (rescued, first) = token_in(home.path(), &cwd(&one), &url, true).await;
    assert!(rescued.status.success(), "{:?}", text(&rescued));
    assert!(
        text(&rescued).1.contains("rescue file"),
        "{:?}",
        text(&rescued)
    );
    let (other, _) = token_in(home.path(), &cwd(&two), &url, false).await;
    assert!(other.status.success(), "{:?}", text(&other));

    let (again, token) = token_in(home.path(), &cwd(&one), &url, false).await;
    assert!(again.status.success(), "{:?}", text(&again));
    assert_eq!(token, first, "project one's rescued login is answered");
    assert_ne!(refresh_token(&one), "", "written back");
    assert!(endpoint.accepts_access_token(&token));
    assert_eq!(
        endpoint.revoked_families(),
        0,
        "a spent token was presented"
    );
}

/// A process reaching the credential through a symlinked config dir finds the rescue made
/// through the real path, and answers it instead of spending the dead token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_symlinked_config_dir_finds_the_rescue() {
    let endpoint = TokenEndpoint::start().await.unwrap();
    let home = tempfile::tempdir().unwrap();
    let real = project(home.path(), "real", &endpoint);
    let link = home.path().join("link");
    std::os::unix::fs::symlink(real.parent().unwrap(), &link).unwrap();
    let url = endpoint.url();
    let by = |path: &Path, refuse| {
        cli(
            home.path(),
            home.path(),
            &[
                "token",
                "--credentials",
                path.to_str().unwrap(),
                "--token-url",
                &url,
            ],
            refuse,
        )
    };
    let rescued = output(by(&real, true)).await;
    assert!(rescued.status.success(), "{:?}", text(&rescued));
    let first = text(&rescued).0.trim().to_owned();
    let through_link = output(by(&link.join(".credentials.json"), false)).await;
    assert!(through_link.status.success(), "{:?}", text(&through_link));
    assert_eq!(text(&through_link).0.trim(), first);
    assert_eq!(endpoint.grants_served(), 1, "nothing spent twice");
    assert_eq!(endpoint.revoked_families(), 0);
}

/// With no state directory at all (no `HOME`, no `XDG_STATE_HOME`, no
/// `CLAUDE_CODE_AUTH_STATE_DIR`) the rotated login is still kept — in a private directory of
/// this user's in the temporary directory — and the next process answers it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_state_directory_the_rescue_goes_to_a_private_one() {
    let endpoint = TokenEndpoint::start().await.unwrap();
    let home = tempfile::tempdir().unwrap();
    let path = project(home.path(), "p", &endpoint);
    let tmp = tempfile::tempdir().unwrap();
    let run = |refuse| {
        let mut command = cli(
            home.path(),
            home.path(),
            &[
                "token",
                "--credentials",
                path.to_str().unwrap(),
                "--token-url",
                &endpoint.url(),
            ],
            refuse,
        );
        command
            .env_remove("HOME")
            .env_remove("XDG_STATE_HOME")
            .env_remove("CLAUDE_CODE_AUTH_STATE_DIR")
            .env("TMPDIR", tmp.path());
        command
    };
    let rescued = output(run(true)).await;
    assert!(rescued.status.success(), "{:?}", text(&rescued));
    assert!(
        !text(&rescued).1.contains("could not be kept anywhere"),
        "{:?}",
        text(&rescued)
    );
    let first = text(&rescued).0.trim().to_owned();
    let again = output(run(false)).await;
    assert!(again.status.success(), "{:?}", text(&again));
    assert_eq!(text(&again).0.trim(), first);
    assert_eq!(endpoint.revoked_families(), 0);
}

/// Root running with a user's `HOME` (sudo, cron) on the user's credential: the rescue it writes,
/// and every directory it makes under that home (the state directory, the compiled-component
/// cache), are the user's; the user's next process answers the rescued login.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_with_a_users_home_leaves_what_it_makes_the_users() {
    use crate::permissions::{UNPRIVILEGED, running_as_root, unprivileged_cli};
    use std::os::unix::fs::MetadataExt;
    if !running_as_root() {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED root_with_a_users_home_leaves_what_it_makes_the_users: needs root"
        );
        return;
    }
    let endpoint = TokenEndpoint::start().await.unwrap();
    let home = tempfile::tempdir().unwrap();
    let path = project(home.path(), "", &endpoint);
    let chown = Command::new("chown")
        .args(["-R", &format!("{UNPRIVILEGED}:{UNPRIVILEGED}")])
        .arg(home.path())
        .status()
        .unwrap();
    assert!(chown.success());
    let args = [
        "token",
        "--credentials",
        path.to_str().unwrap(),
        "--token-url",
        &endpoint.url(),
    ];
    let mut as_root = cli(home.path(), home.path(), &args, true);
    as_root
        .env_remove("CLAUDE_CODE_AUTH_STATE_DIR")
        .env_remove("CLAUDE_CODE_AUTH_CACHE_DIR")
        .env_remove("XDG_STATE_HOME")
        .env_remove("XDG_CACHE_HOME");
    let rescued = output(as_root).await;
    assert!(rescued.status.success(), "{:?}", text(&rescued));
    let first = text(&rescued).0.trim().to_owned();
    let state = home
        .path()
        .join(".local/state/entelix-auth-claude-code/rescue");
    let made = [
        home.path().join(".local"),
        home.path().join(".local/state"),
        state.clone(),
        home.path().join(".cache"),
        home.path().join(".cache/entelix-auth-claude-code"),
    ];
    for dir in made.iter().chain(
        std::fs::read_dir(&state)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect::<Vec<_>>()
            .iter(),
    ) {
        let meta = std::fs::metadata(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        assert_eq!(
            meta.uid(),
            UNPRIVILEGED,
            "{} is not the user's",
            dir.display()
        );
    }

    let mut as_user = unprivileged_cli(home.path(), &args);
    as_user
        .env_remove("CLAUDE_CODE_AUTH_STATE_DIR")
        .env_remove("CLAUDE_CODE_AUTH_CACHE_DIR");
    let again = output(as_user).await;
    assert!(again.status.success(), "{:?}", text(&again));
    assert_eq!(
        text(&again).0.trim(),
        first,
        "the user's process answers the rescue"
    );
    assert_eq!(
        endpoint.revoked_families(),
        0,
        "a spent token was presented"
    );
}
