//! Files the process may not read, directories it may not write: the CLI, run as an unprivileged
//! user (through `setpriv` when the tests run as root, since root ignores permissions), answers
//! one typed line and touches nothing.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use crate::support::EXIT_REFUSED;
use crate::support::{Scenario, text};
use claude_code_auth_testkit::loopback::TokenEndpoint;

/// `nobody` on Debian-like systems.
pub(crate) const UNPRIVILEGED: u32 = 65534;

pub(crate) fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        == Some("0")
}

/// The CLI as a user whom permissions apply to.
pub(crate) fn unprivileged_cli(home: &Path, args: &[&str]) -> Command {
    let cli = crate::support::cli_binary();
    let mut command = if running_as_root() {
        let mut c = Command::new("setpriv");
        c.arg(format!("--reuid={UNPRIVILEGED}"))
            .arg(format!("--regid={UNPRIVILEGED}"))
            .arg("--clear-groups")
            .arg(&cli);
        c
    } else {
        Command::new(cli)
    };
    command
        .args(args)
        .env("HOME", home)
        .env_remove("CLAUDE_CONFIG_DIR");
    command
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn snapshot(path: &Path) -> (Vec<u8>, u32) {
    let meta = std::fs::metadata(path).unwrap();
    (std::fs::read(path).unwrap(), meta.permissions().mode())
}

async fn run(mut command: Command) -> std::process::Output {
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

#[tokio::test]
async fn an_unreadable_file_is_refused_and_untouched() {
    let scenario = Scenario::fixture_now("expired");
    // Others may enter the directory but not read the 0600 file (or, unprivileged, a 0000 one).
    chmod(scenario.dir(), 0o711);
    if !running_as_root() {
        chmod(&scenario.path, 0o000);
    }
    let before = snapshot(&scenario.path);
    let path = scenario.path.to_str().unwrap();
    let output = run(unprivileged_cli(
        scenario.dir(),
        &["token", "--credentials", path],
    ))
    .await;
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(EXIT_REFUSED), "{stderr}");
    assert!(stdout.is_empty());
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("Permission denied") && stderr.contains(path),
        "{stderr}"
    );
    assert_eq!(snapshot(&scenario.path), before);
}

#[tokio::test]
async fn a_directory_without_write_permission_refuses_before_spending_the_refresh_token() {
    let scenario = Scenario::fixture_now("expired");
    let endpoint = scenario.endpoint().await;
    // Readable by the unprivileged user, in a directory it cannot write.
    chmod(&scenario.path, 0o644);
    chmod(scenario.dir(), 0o555);
    let before = snapshot(&scenario.path);
    let path = scenario.path.to_str().unwrap();
    let url = endpoint.url();
    let output = run(unprivileged_cli(
        scenario.dir(),
        &["token", "--credentials", path, "--token-url", &url],
    ))
    .await;
    chmod(scenario.dir(), 0o700);
    refused_before_spending(&output, "Permission denied", &scenario, &before, &endpoint);
}

/// `output` is one line saying `says` and exit 5; the file is as it was and the endpoint saw no
/// request: no refresh token was spent that could not be saved.
fn refused_before_spending(
    output: &std::process::Output,
    says: &str,
    scenario: &Scenario,
    before: &(Vec<u8>, u32),
    endpoint: &TokenEndpoint,
) {
    let (stdout, stderr) = text(output);
    assert_eq!(output.status.code(), Some(EXIT_REFUSED), "{stderr}");
    assert!(stdout.is_empty() && stderr.contains(says), "{stderr}");
    assert_eq!(&snapshot(&scenario.path), before);
    assert!(
        endpoint.requests().is_empty(),
        "no refresh token may be spent that cannot be saved"
    );
}

/// The `.flock` an earlier refresh left lets the OS lock be taken in a directory the user can
/// no longer write; the write that would follow the refresh cannot be made there, which must
/// show before the refresh token is spent. Once the directory is writable again, the next call
/// refreshes with the token that was never spent.
#[tokio::test]
async fn a_directory_without_write_permission_but_with_a_lock_file_spends_nothing() {
    let scenario = Scenario::fixture_now("expired");
    let endpoint = scenario.endpoint().await;
    // The lock file an earlier refresh left, the user's as a refresh leaves it.
    let lock_file = scenario.dir().join(".credentials.json.flock");
    std::fs::write(&lock_file, "").unwrap();
    chmod(&lock_file, 0o600);
    if running_as_root() {
        std::os::unix::fs::chown(&lock_file, Some(UNPRIVILEGED), Some(UNPRIVILEGED)).unwrap();
    }
    chmod(&scenario.path, 0o644);
    chmod(scenario.dir(), 0o555);
    let before = snapshot(&scenario.path);
    let path = scenario.path.to_str().unwrap();
    let url = endpoint.url();
    let args = ["token", "--credentials", path, "--token-url", &url];
    let output = run(unprivileged_cli(scenario.dir(), &args)).await;
    refused_before_spending(
        &output,
        "no refresh was attempted",
        &scenario,
        &before,
        &endpoint,
    );

    // The fault cleared (the user's own directory and file again): the same user refreshes with
    // the token that was never spent.
    if running_as_root() {
        let nobody = Some(UNPRIVILEGED);
        std::os::unix::fs::chown(scenario.dir(), nobody, nobody).unwrap();
        std::os::unix::fs::chown(&scenario.path, nobody, nobody).unwrap();
        std::os::unix::fs::chown(&lock_file, nobody, nobody).unwrap();
    }
    chmod(scenario.dir(), 0o700);
    chmod(&scenario.path, 0o600);
    let output = run(unprivileged_cli(scenario.dir(), &args)).await;
    chmod(scenario.dir(), 0o700);
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    assert!(endpoint.accepts_access_token(stdout.trim()));
    assert_eq!(endpoint.revoked_families(), 0);
}

fn owner(path: &Path) -> (u32, u32) {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).unwrap();
    (meta.uid(), meta.gid())
}

/// `sudo` or a root cron job refreshing a user's credential: the file stays the user's (owner
/// and group), the lock file is made the user's, and the user — and the `claude` CLI — can go
/// on using both.
#[tokio::test]
async fn root_refreshing_a_users_credential_leaves_it_theirs() {
    if !running_as_root() {
        return;
    }
    let scenario = Scenario::fixture_now("expired");
    let endpoint = scenario.endpoint().await;
    let user = (UNPRIVILEGED, UNPRIVILEGED);
    std::os::unix::fs::chown(scenario.dir(), Some(user.0), Some(user.1)).unwrap();
    std::os::unix::fs::chown(&scenario.path, Some(user.0), Some(user.1)).unwrap();
    let path = scenario.path.to_str().unwrap();
    let url = endpoint.url();
    let args = [
        "refresh",
        "--force",
        "--credentials",
        path,
        "--token-url",
        &url,
    ];
    let output = crate::support::cli(scenario.dir(), &args).await;
    assert!(output.status.success(), "{}", text(&output).1);
    assert_eq!(owner(&scenario.path), user, "the credential changed hands");
    assert_eq!(scenario.mode(), 0o600);
    let lock_file = scenario.dir().join(".credentials.json.flock");
    assert_eq!(owner(&lock_file), user, "the lock file is not the user's");

    // The user refreshes next, through the same files.
    let output = run(unprivileged_cli(scenario.dir(), &args)).await;
    assert!(output.status.success(), "{}", text(&output).1);
    assert_eq!(owner(&scenario.path), user);
    assert_eq!(endpoint.grants_served(), 2);
    assert_eq!(endpoint.revoked_families(), 0);
}

/// A symlink planted where the lock file goes is not followed: the file it points to keeps its
/// content, and nothing is spent.
/// A user who may write the directory and read another user's credential there does not take
/// it over: the temporary file cannot be given the owner's uid, which shows before spending.
#[tokio::test]
async fn a_credential_another_user_owns_is_not_taken_over() {
    if !running_as_root() {
        return;
    }
    let scenario = Scenario::fixture_now("expired");
    let endpoint = scenario.endpoint().await;
    // The directory is the unprivileged user's; the credential in it is root's, readable by all.
    let nobody = Some(UNPRIVILEGED);
    std::os::unix::fs::chown(scenario.dir(), nobody, nobody).unwrap();
    chmod(&scenario.path, 0o644);
    let before = snapshot(&scenario.path);
    let path = scenario.path.to_str().unwrap();
    let url = endpoint.url();
    let args = [
        "refresh",
        "--force",
        "--credentials",
        path,
        "--token-url",
        &url,
    ];
    let output = run(unprivileged_cli(scenario.dir(), &args)).await;
    refused_before_spending(&output, "belongs to user 0", &scenario, &before, &endpoint);
    assert_eq!(owner(&scenario.path), (0, 0));
}

#[tokio::test]
async fn a_symlink_planted_at_the_lock_file_is_refused() {
    let scenario = Scenario::fixture_now("expired");
    let endpoint = scenario.endpoint().await;
    let elsewhere = tempfile::tempdir().unwrap();
    let victim = elsewhere.path().join("victim");
    std::fs::write(
        &victim,
        "precious content, longer than a lock journal record ".repeat(20),
    )
    .unwrap();
    let kept = std::fs::read(&victim).unwrap();
    std::os::unix::fs::symlink(&victim, scenario.dir().join(".credentials.json.flock")).unwrap();
    let before = snapshot(&scenario.path);
    let path = scenario.path.to_str().unwrap();
    let url = endpoint.url();
    let output = crate::support::cli(
        scenario.dir(),
        &["token", "--credentials", path, "--token-url", &url],
    )
    .await;
    refused_before_spending(&output, "symlink", &scenario, &before, &endpoint);
    assert_eq!(
        std::fs::read(&victim).unwrap(),
        kept,
        "the link was followed"
    );
}
