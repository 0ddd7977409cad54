//! The Redis store as a fleet uses it: `claude-code-auth` processes on "machines" of their own
//! (a home and a rescue dir each), sharing only Redis.

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use claude_code_auth_testkit::loopback::TokenEndpoint;
use claude_code_auth_testkit::redis_proxy::RedisProxy;
use claude_code_auth_testkit::redis_server::RedisServer;
use entelix_auth_claude_code::CredentialStore;
use serde_json::Value;
use tempfile::TempDir;

use super::{
    LEASE, contains, dump, expired_document, fleet_command, imported, redis, secret, store,
};
use crate::support::{cli, cli_command, finish, text};

/// A `claude-code-auth` process on a machine of its own that took the lease through a proxy
/// and is frozen right after (its next Redis command held): before any refresh request could
/// leave.
struct Frozen {
    child: Child,
    proxy: RedisProxy,
    _machine: TempDir,
}

impl Frozen {
    /// Run `args` against `server` through a proxy and wait until it holds the lease, frozen.
    async fn holder(
        server: &RedisServer,
        key: &Path,
        endpoint: &TokenEndpoint,
        args: &[&str],
    ) -> Self {
        let proxy = RedisProxy::start(server.port()).await.unwrap();
        proxy.hold_after_next_lease();
        let machine = tempfile::tempdir().unwrap();
        let child = fleet_command(machine.path(), &proxy.url(), key, endpoint)
            .args(args)
            .spawn()
            .unwrap();
        tokio::time::timeout(Duration::from_secs(20), proxy.holding())
            .await
            .expect("the machine takes the lease");
        Self {
            child,
            proxy,
            _machine: machine,
        }
    }

    /// Send the process `signal` (`-STOP`, `-CONT`).
    fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill {signal}");
    }
}

/// Another machine's `claude-code-auth token`: its output.
async fn another_machine(
    server: &RedisServer,
    key: &Path,
    endpoint: &TokenEndpoint,
) -> (String, String) {
    let machine = tempfile::tempdir().unwrap();
    let child = fleet_command(machine.path(), &server.url(), key, endpoint)
        .arg("token")
        .spawn()
        .unwrap();
    let output = finish(child).await;
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    (stdout.trim().to_owned(), stderr)
}

/// The fleet of the README: a login made elsewhere, imported, its file deleted; then 4
/// "machines" (separate homes, sharing only Redis) of 8 processes each, all on the expired
/// login at once: one grant, every process prints the same token, no family revoked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_machines_of_eight_processes_spend_one_grant_and_print_one_token() {
    let Some(server) = redis() else { return };
    let endpoint = TokenEndpoint::start().await.unwrap();
    endpoint.set_latency(Duration::from_millis(100)..Duration::from_millis(300));
    let dir = tempfile::tempdir().unwrap();
    let key = secret(dir.path(), "store.key", 7);
    let store_args = |key: &Path| {
        vec![
            "--store".to_owned(),
            server.url(),
            "--store-secret-file".to_owned(),
            key.display().to_string(),
        ]
    };

    let elsewhere = tempfile::tempdir().unwrap();
    let file = elsewhere.path().join(".credentials.json");
    std::fs::write(&file, expired_document(&endpoint).0).unwrap();
    let mut args = store_args(&key);
    args.extend(["import".to_owned(), file.display().to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = cli(elsewhere.path(), &args).await;
    assert!(output.status.success(), "{:?}", text(&output));
    std::fs::remove_file(&file).unwrap();

    let machines: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut children = Vec::new();
    for machine in &machines {
        for _ in 0..8 {
            let mut command = cli_command(machine.path());
            command
                .env("CLAUDE_CODE_AUTH_STATE_DIR", machine.path().join("state"))
                .args(store_args(&key))
                .args(["--token-url", &endpoint.url(), "token"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            children.push(command.spawn().unwrap());
        }
    }
    let mut tokens = Vec::new();
    for child in children {
        let output = finish(child).await;
        let (stdout, stderr) = text(&output);
        assert!(output.status.success(), "{stderr}");
        tokens.push(stdout.trim().to_owned());
    }
    assert_eq!(endpoint.grants_served(), 1, "one grant for 32 processes");
    // Given back before each process exited, not left to run out (others would wait for it).
    assert_eq!(server.cli(&["EXISTS", LEASE]), b"0\n");
    assert_eq!(endpoint.revoked_families(), 0);
    assert!(endpoint.accepts_access_token(&tokens[0]));
    tokens.dedup();
    assert_eq!(tokens.len(), 1, "every process printed the same token");
    assert!(!contains(&dump(&server), &tokens[0]));
}

/// `import` refuses to replace another login without `--force`, says so when the store holds
/// this one already, and `status` names the store that answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_keeps_another_login_unless_forced() {
    let Some(server) = redis() else { return };
    let endpoint = TokenEndpoint::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let key = secret(dir.path(), "store.key", 8).display().to_string();
    let url = server.url();
    let run = |extra: Vec<String>| {
        let mut args = vec![
            "--store".to_owned(),
            url.clone(),
            "--store-secret-file".to_owned(),
        ];
        args.push(key.clone());
        args.extend(extra);
        let home = dir.path().to_owned();
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            cli(&home, &args).await
        }
    };
    let first = dir.path().join("first.json");
    let second = dir.path().join("second.json");
    std::fs::write(&first, expired_document(&endpoint).0).unwrap();
    std::fs::write(&second, expired_document(&endpoint).0).unwrap();
    let import = |file: &Path, force: bool| {
        let mut args = vec!["import".to_owned(), file.display().to_string()];
        if force {
            args.push("--force".into());
        }
        args
    };

    assert!(run(import(&first, false)).await.status.success());
    let output = run(import(&first, false)).await;
    assert!(
        text(&output).0.contains("already holds this login"),
        "{:?}",
        text(&output)
    );
    let output = run(import(&second, false)).await;
    assert_eq!(output.status.code(), Some(crate::support::EXIT_REFUSED));
    assert!(text(&output).1.contains("--force"), "{:?}", text(&output));
    let stored = store(&server, Path::new(&key))
        .load_document()
        .await
        .unwrap();
    assert_eq!(stored.unwrap(), std::fs::read_to_string(&first).unwrap());
    assert!(run(import(&second, true)).await.status.success());
    let stored = store(&server, Path::new(&key))
        .load_document()
        .await
        .unwrap();
    assert_eq!(stored.unwrap(), std::fs::read_to_string(&second).unwrap());

    // Sealed under a secret this store does not have: unreadable, replaced only with --force.
    let lost = secret(dir.path(), "lost.key", 99);
    store(&server, &lost)
        .save_document(&std::fs::read_to_string(&first).unwrap())
        .await
        .unwrap();
    let output = run(import(&second, false)).await;
    assert_eq!(
        output.status.code(),
        Some(crate::support::EXIT_REFUSED),
        "{:?}",
        text(&output)
    );
    assert!(run(import(&second, true)).await.status.success());

    let output = run(vec!["status".into()]).await;
    let (stdout, _) = text(&output);
    assert!(
        stdout.contains(&format!("redis: {url} key claude-code-auth")),
        "{stdout}"
    );
}

/// The lease holder killed with `kill -9` while it holds the lease, before its request could
/// leave (frozen there by the proxy): once the lease has run out (shortened here rather than
/// waited for), another machine refreshes, once; no spent token is presented.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_killed_holding_the_lease_leaves_the_login_to_the_next_machine() {
    let Some(server) = redis() else { return };
    let endpoint = TokenEndpoint::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let key = imported(&server, &endpoint, dir.path(), 9).await;
    let mut a = Frozen::holder(&server, &key, &endpoint, &["token"]).await;
    a.child.kill().unwrap();
    let _ = a.child.wait();
    assert_eq!(endpoint.requests().len(), 0, "killed before sending");
    assert_eq!(server.cli(&["EXISTS", LEASE]), b"1\n");
    server.cli(&["PEXPIRE", LEASE, "300"]);

    let (token, _) = another_machine(&server, &key, &endpoint).await;
    assert_eq!(endpoint.grants_served(), 1);
    assert_eq!(endpoint.revoked_families(), 0);
    assert!(endpoint.accepts_access_token(&token));
}

/// A holder stopped (`SIGSTOP`) while holding the lease before sending, past the lease: another
/// machine refreshes; resumed, the stopped one sends nothing (it finds the login refreshed and
/// uses it), and the login is the other machine's, alive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_paused_past_its_lease_uses_the_login_another_machine_refreshed() {
    let Some(server) = redis() else { return };
    let endpoint = TokenEndpoint::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let key = imported(&server, &endpoint, dir.path(), 10).await;
    let a = Frozen::holder(&server, &key, &endpoint, &["refresh", "--force"]).await;
    a.signal("-STOP");
    a.proxy.release();
    // Past its lease: gone, as it would be after its length.
    server.cli(&["PEXPIRE", LEASE, "1"]);
    tokio::time::sleep(Duration::from_millis(50)).await;

    let (b_token, _) = another_machine(&server, &key, &endpoint).await;
    assert_eq!(endpoint.grants_served(), 1);

    a.signal("-CONT");
    let output = finish(a.child).await;
    let (stdout, stderr) = text(&output);
    assert_eq!(
        endpoint.requests().len(),
        1,
        "the resumed holder sent nothing: {stdout}{stderr}"
    );
    assert_eq!(endpoint.revoked_families(), 0);
    let stored: Value =
        serde_json::from_str(&store(&server, &key).load_document().await.unwrap().unwrap())
            .unwrap();
    assert_eq!(stored["claudeAiOauth"]["accessToken"], b_token.as_str());
    assert!(endpoint.accepts_access_token(&b_token));
}

/// A holder stopped (`SIGSTOP`) while holding the lease before sending, past the lease, while
/// another machine holds it: resumed, it still means to refresh, finds the lease not its own
/// when it checks before sending, and sends nothing (exit 6); the login is untouched and the
/// next machine refreshes it once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_paused_past_its_lease_does_not_send_after_resuming() {
    let Some(server) = redis() else { return };
    let endpoint = TokenEndpoint::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let key = imported(&server, &endpoint, dir.path(), 11).await;
    let before = store(&server, &key).load_document().await.unwrap();
    let a = Frozen::holder(&server, &key, &endpoint, &["refresh", "--force"]).await;
    a.signal("-STOP");
    a.proxy.release();
    // Its lease ran out and another machine took it (and is, say, still refreshing).
    server.cli(&["SET", LEASE, "another-machine", "PX", "60000"]);

    a.signal("-CONT");
    let output = finish(a.child).await;
    let (_, stderr) = text(&output);
    assert_eq!(
        output.status.code(),
        Some(crate::support::EXIT_UNREACHABLE),
        "{stderr}"
    );
    assert!(stderr.contains("lease"), "{stderr}");
    assert_eq!(endpoint.requests().len(), 0, "nothing sent");
    assert_eq!(store(&server, &key).load_document().await.unwrap(), before);

    server.cli(&["DEL", LEASE]);
    let (token, _) = another_machine(&server, &key, &endpoint).await;
    assert_eq!(endpoint.grants_served(), 1);
    assert_eq!(endpoint.revoked_families(), 0);
    assert!(endpoint.accepts_access_token(&token));
}
