//! The Redis store as a fleet uses it: `claude-code-auth` processes on "machines" of their own
//! (a home and a rescue dir each), sharing only Redis.

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use claude_code_auth_testkit::loopback::TokenEndpoint;
use claude_code_auth_testkit::redis_proxy::RedisProxy;
use claude_code_auth_testkit::redis_server::RedisServer;
use entelix_auth_claude_code::{CredentialStore, RedisCredentialStore};
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

/// Another machine's `claude-code-auth refresh --force`: its output.
async fn another_machine_refreshes(
    server: &RedisServer,
    key: &Path,
    endpoint: &TokenEndpoint,
) -> (String, String) {
    let machine = tempfile::tempdir().unwrap();
    let child = fleet_command(machine.path(), &server.url(), key, endpoint)
        .args(["refresh", "--force"])
        .spawn()
        .unwrap();
    let output = finish(child).await;
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    (stdout, stderr)
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
/// leave (frozen there by the proxy), with the default lease (60 s) left to run: a `token` on
/// another machine, started at once, waits it out and succeeds in that one call (it does not
/// fail after the lock timeout of 30 s); one grant, no spent token presented.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_killed_holding_the_lease_leaves_the_login_to_the_next_machine_in_one_call() {
    let Some(server) = redis() else { return };
    let endpoint = TokenEndpoint::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let key = imported(&server, &endpoint, dir.path(), 9).await;
    let mut a = Frozen::holder(&server, &key, &endpoint, &["token"]).await;
    a.child.kill().unwrap();
    let _ = a.child.wait();
    assert_eq!(endpoint.requests().len(), 0, "killed before sending");
    let left: i64 = String::from_utf8_lossy(&server.cli(&["PTTL", LEASE]))
        .trim()
        .parse()
        .unwrap();
    assert!(left > 50_000, "the default lease runs: {left} ms left");

    let started = std::time::Instant::now();
    let (token, _) = another_machine(&server, &key, &endpoint).await;
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(u64::try_from(left).unwrap() - 1000),
        "it had to wait the lease out: {waited:?}"
    );
    assert_eq!(endpoint.grants_served(), 1);
    assert_eq!(endpoint.revoked_families(), 0);
    assert!(endpoint.accepts_access_token(&token));
}

/// A holder killed with `kill -9` after the token endpoint answered and its answer was kept in
/// Redis, before it wrote the login (frozen there by the proxy): the machine that takes the
/// lease next gives its component that answer instead of presenting the spent token — no second
/// grant, nothing revoked, its token is the one the endpoint issued to the killed holder.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_killed_after_the_answer_leaves_it_to_the_next_machine() {
    let Some(server) = redis() else { return };
    let endpoint = TokenEndpoint::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let key = imported(&server, &endpoint, dir.path(), 13).await;
    // Another login refreshed first, so the server knows the scripts: the holder's first
    // script call with the answer is then the one that keeps it.
    let warm = RedisCredentialStore::builder(server.url())
        .state_dir(server.scratch())
        .key("warm-up")
        .secret_file(&key)
        .build()
        .unwrap();
    warm.save_document(&expired_document(&endpoint).0)
        .await
        .unwrap();
    let output = fleet_command(dir.path(), &server.url(), &key, &endpoint)
        .args(["token", "--store-key", "warm-up"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{:?}", text(&output));
    let granted = endpoint.grants_served();

    let proxy = RedisProxy::start(server.port()).await.unwrap();
    // The first script naming the answer notes the spend, the second keeps the answer.
    proxy.hold_after_nth_with(2, &["EVALSHA", ":answer"]);
    let machine = tempfile::tempdir().unwrap();
    let mut a = fleet_command(machine.path(), &proxy.url(), &key, &endpoint)
        .arg("token")
        .spawn()
        .unwrap();
    tokio::time::timeout(Duration::from_secs(20), proxy.holding())
        .await
        .expect("the machine keeps the answer");
    a.kill().unwrap();
    let _ = a.wait();
    assert_eq!(endpoint.grants_served(), granted + 1, "it spent the grant");
    assert_eq!(
        server.cli(&["HEXISTS", "{claude-code-auth}:answer", "answer"]),
        b"1\n"
    );
    // Its lease lapsed (outlasting one is the test above).
    server.cli(&["DEL", LEASE]);

    let (token, _) = another_machine(&server, &key, &endpoint).await;
    assert_eq!(endpoint.grants_served(), granted + 1, "not refreshed again");
    assert_eq!(
        endpoint.revoked_families(),
        0,
        "a spent token was presented"
    );
    assert!(endpoint.accepts_access_token(&token));
    let stored: Value =
        serde_json::from_str(&store(&server, &key).load_document().await.unwrap().unwrap())
            .unwrap();
    assert_eq!(stored["claudeAiOauth"]["accessToken"], token.as_str());
    assert_eq!(
        server.cli(&["EXISTS", "{claude-code-auth}:answer"]),
        b"0\n",
        "spent by the write"
    );
}

/// Redis pauses (a network blip, a failover) while the token endpoint's answer is on its way:
/// the holder cannot write the login, keeps it in a rescue file naming the refresh token the
/// store held (known before the request left, not asked of the unreachable store afterwards),
/// and says so. Once Redis answers, the next call on that machine answers the rescued login and
/// writes it back; the login goes on, nothing revoked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_unreachable_between_the_answer_and_the_write_is_rescued_and_written_back() {
    let Some(server) = redis() else { return };
    let endpoint = TokenEndpoint::start().await.unwrap();
    endpoint.set_latency(Duration::from_millis(1000)..Duration::from_millis(1001));
    let dir = tempfile::tempdir().unwrap();
    let key = imported(&server, &endpoint, dir.path(), 14).await;
    let machine = tempfile::tempdir().unwrap();
    let a = fleet_command(machine.path(), &server.url(), &key, &endpoint)
        .arg("token")
        .spawn()
        .unwrap();
    crate::support::until_requests(&endpoint, 1).await;
    server.pause();
    let output = finish(a).await;
    server.resume();
    let (first, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("rescue file"), "{stderr}");
    assert!(endpoint.accepts_access_token(first.trim()));
    // Its lease could not be given back while Redis was paused; it would run out.
    server.cli(&["DEL", LEASE]);

    let again = fleet_command(machine.path(), &server.url(), &key, &endpoint)
        .arg("token")
        .output()
        .unwrap();
    let (second, stderr) = text(&again);
    assert!(again.status.success(), "{stderr}");
    assert_eq!(second.trim(), first.trim(), "the rescued login is answered");
    assert_eq!(endpoint.grants_served(), 1);
    let stored: Value =
        serde_json::from_str(&store(&server, &key).load_document().await.unwrap().unwrap())
            .unwrap();
    assert_eq!(
        stored["claudeAiOauth"]["accessToken"],
        first.trim(),
        "written back"
    );
    let (_, _) = another_machine_refreshes(&server, &key, &endpoint).await;
    assert_eq!(
        endpoint.revoked_families(),
        0,
        "a spent token was presented"
    );
}

/// A holder loses its lease while its answer is on its way, and meanwhile an operator imports
/// another login with `--force`: re-reading under the write lock, the holder finds another
/// login than the one it spent and adopts it, as the CLI's compare-and-set does — it never
/// writes the old login over the import, and keeps no rescue of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rescue_never_overwrites_a_login_imported_meanwhile() {
    let Some(server) = redis() else { return };
    let endpoint = TokenEndpoint::start().await.unwrap();
    endpoint.set_latency(Duration::from_millis(1000)..Duration::from_millis(1001));
    let dir = tempfile::tempdir().unwrap();
    let key = imported(&server, &endpoint, dir.path(), 15).await;
    let machine = tempfile::tempdir().unwrap();
    let a = fleet_command(machine.path(), &server.url(), &key, &endpoint)
        .args(["refresh", "--force"])
        .spawn()
        .unwrap();
    crate::support::until_requests(&endpoint, 1).await;
    // The lease lost (a failover, an eviction), and the operator's import.
    server.cli(&["DEL", LEASE]);
    let (other, other_json) = expired_document(&endpoint);
    let file = dir.path().join("other.json");
    std::fs::write(&file, &other).unwrap();
    let import = fleet_command(dir.path(), &server.url(), &key, &endpoint)
        .args(["import", &file.display().to_string(), "--force"])
        .output()
        .unwrap();
    assert!(import.status.success(), "{:?}", text(&import));
    let output = finish(a).await;
    let (said, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    assert!(
        !stderr.contains("rescue file") && said.contains("another process had just refreshed"),
        "{said}{stderr}"
    );

    let next = fleet_command(machine.path(), &server.url(), &key, &endpoint)
        .arg("status")
        .output()
        .unwrap();
    assert!(next.status.success(), "{:?}", text(&next));
    let stored: Value =
        serde_json::from_str(&store(&server, &key).load_document().await.unwrap().unwrap())
            .unwrap();
    assert_eq!(
        stored["claudeAiOauth"]["refreshToken"], other_json["claudeAiOauth"]["refreshToken"],
        "the imported login was overwritten"
    );
    let rescues =
        std::fs::read_dir(machine.path().join("state/rescue")).map_or(0, |dir| dir.count());
    assert_eq!(rescues, 0, "a rescue of the old login");
}

/// A key of the login holding another kind of value (another application's key under the
/// same name) is refused — exit 5, retrying will not help — not reported as an outage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_of_another_kind_is_refused_not_unreachable() {
    let Some(server) = redis() else { return };
    let endpoint = TokenEndpoint::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let key = secret(dir.path(), "store.key", 16);
    server.cli(&[
        "SET",
        "{claude-code-auth}:login",
        "another application's value",
    ]);
    let output = fleet_command(dir.path(), &server.url(), &key, &endpoint)
        .arg("token")
        .output()
        .unwrap();
    let (_, stderr) = text(&output);
    assert_eq!(
        output.status.code(),
        Some(crate::support::EXIT_REFUSED),
        "{stderr}"
    );
    assert!(stderr.contains("another kind of value"), "{stderr}");
    assert!(!stderr.contains("token endpoint"), "{stderr}");
}

/// The single mark file under a machine's state directory.
fn mark_of(machine: &Path) -> std::path::PathBuf {
    let marks: Vec<_> = std::fs::read_dir(machine.join("state/redis"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    assert_eq!(marks.len(), 1, "{marks:?}");
    marks[0].clone()
}

/// Redis goes back in time — the login's hash brought back from a copy taken before a refresh
/// (a backup restored, a failover to a replica that lagged): the machine that saw the newer
/// login refuses it, and so does one that never saw it (Redis's list of presented tokens has the
/// old one); nothing is sent, nothing revoked. The newest login the first machine wrote is kept
/// in its mark, and `import MARK --force` puts it back: the login goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_going_back_in_time_is_refused_and_the_newest_login_kept() {
    let Some(server) = redis() else { return };
    let endpoint = TokenEndpoint::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let key = imported(&server, &endpoint, dir.path(), 17).await;
    let login = "{claude-code-auth}:login";
    let backup = "{claude-code-auth}:backup";
    server.cli(&["COPY", login, backup]);
    let machine = tempfile::tempdir().unwrap();
    let run = |home: &Path, args: &[&str]| {
        fleet_command(home, &server.url(), &key, &endpoint)
            .args(args)
            .output()
            .unwrap()
    };
    let first = run(machine.path(), &["token"]);
    assert!(first.status.success(), "{:?}", text(&first));
    let token = text(&first).0.trim().to_owned();
    server.cli(&["COPY", backup, login, "REPLACE"]);

    let refused = run(machine.path(), &["token"]);
    let (_, stderr) = text(&refused);
    assert_eq!(
        refused.status.code(),
        Some(crate::support::EXIT_REFUSED),
        "{stderr}"
    );
    assert!(stderr.contains("went back in time"), "{stderr}");
    let other_machine = tempfile::tempdir().unwrap();
    let refused = run(other_machine.path(), &["token"]);
    let (_, stderr) = text(&refused);
    assert_eq!(
        refused.status.code(),
        Some(crate::support::EXIT_REFUSED),
        "{stderr}"
    );
    assert!(stderr.contains("presented already"), "{stderr}");
    assert_eq!(endpoint.grants_served(), 1, "nothing sent");
    assert_eq!(endpoint.revoked_families(), 0);

    let mark = mark_of(machine.path());
    let import = run(
        machine.path(),
        &["import", mark.to_str().unwrap(), "--force"],
    );
    assert!(import.status.success(), "{:?}", text(&import));
    let again = run(machine.path(), &["token"]);
    assert!(again.status.success(), "{:?}", text(&again));
    assert_eq!(text(&again).0.trim(), token, "the newest login is back");
    another_machine_refreshes(&server, &key, &endpoint).await;
    assert_eq!(endpoint.grants_served(), 2);
    assert_eq!(
        endpoint.revoked_families(),
        0,
        "a spent token was presented"
    );
}

/// A Redis that may evict any key when full (`allkeys-*`) could evict the login itself — the
/// only copy of a rotated one: the store refuses it, sending nothing. A `volatile-*` policy is
/// said; `noeviction` is quiet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_may_evict_the_login_is_refused() {
    let Some(server) = redis() else { return };
    let endpoint = TokenEndpoint::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let key = imported(&server, &endpoint, dir.path(), 18).await;
    server.cli(&["CONFIG", "SET", "maxmemory", "100mb"]);
    let run = |policy: &str| {
        server.cli(&["CONFIG", "SET", "maxmemory-policy", policy]);
        let machine = tempfile::tempdir().unwrap();
        fleet_command(machine.path(), &server.url(), &key, &endpoint)
            .arg("token")
            .output()
            .unwrap()
    };
    let refused = run("allkeys-lru");
    let (_, stderr) = text(&refused);
    assert_eq!(
        refused.status.code(),
        Some(crate::support::EXIT_REFUSED),
        "{stderr}"
    );
    assert!(stderr.contains("maxmemory-policy noeviction"), "{stderr}");
    assert!(endpoint.requests().is_empty(), "nothing sent");
    let warned = run("volatile-lru");
    let (_, stderr) = text(&warned);
    assert!(warned.status.success(), "{stderr}");
    assert!(stderr.contains("evicts keys with an expiry"), "{stderr}");
    let quiet = run("noeviction");
    let (_, stderr) = text(&quiet);
    assert!(quiet.status.success(), "{stderr}");
    assert!(!stderr.contains("evict"), "{stderr}");
}

/// The lease taken from its holder while its answer is on its way (an eviction, a failover):
/// the machine that gets the lease next does not present the same refresh token again — the
/// holder's note in Redis stops it — and takes the holder's answer once it is kept. One grant,
/// nothing revoked, both print the same token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_taken_mid_refresh_lets_no_one_present_the_token_twice() {
    let Some(server) = redis() else { return };
    let endpoint = TokenEndpoint::start().await.unwrap();
    endpoint.set_latency(Duration::from_millis(1000)..Duration::from_millis(1001));
    let dir = tempfile::tempdir().unwrap();
    let key = imported(&server, &endpoint, dir.path(), 19).await;
    let (a_home, b_home) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = fleet_command(a_home.path(), &server.url(), &key, &endpoint)
        .arg("token")
        .spawn()
        .unwrap();
    crate::support::until_requests(&endpoint, 1).await;
    server.cli(&["DEL", LEASE]);
    let b = fleet_command(b_home.path(), &server.url(), &key, &endpoint)
        .arg("token")
        .spawn()
        .unwrap();
    let (a, b) = (finish(a).await, finish(b).await);
    assert!(a.status.success(), "{:?}", text(&a));
    assert!(b.status.success(), "{:?}", text(&b));
    assert_eq!(
        endpoint.revoked_families(),
        0,
        "the token was presented twice"
    );
    assert_eq!(endpoint.grants_served(), 1);
    assert_eq!(text(&a).0.trim(), text(&b).0.trim());
    assert!(endpoint.accepts_access_token(text(&b).0.trim()));
}

/// With a replica connected, a write of the login waits until the replica has it (a failover
/// right after would otherwise bring back the login before the write, its refresh token spent):
/// once the CLI returns, the replica holds the new generation; a replica that does not answer
/// in time is said.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_waits_for_a_replica() {
    let Some(server) = redis() else { return };
    let replica = RedisServer::start();
    replica.cli(&["REPLICAOF", "127.0.0.1", &server.port().to_string()]);
    let started = std::time::Instant::now();
    while !String::from_utf8_lossy(&server.cli(&["INFO", "replication"])).contains("state=online") {
        assert!(started.elapsed() < Duration::from_secs(20), "no replica");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let endpoint = TokenEndpoint::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let key = imported(&server, &endpoint, dir.path(), 20).await;
    let login = "{claude-code-auth}:login";
    let run = |args: &[&str]| {
        fleet_command(dir.path(), &server.url(), &key, &endpoint)
            .args(args)
            .output()
            .unwrap()
    };
    let refreshed = run(&["refresh", "--force"]);
    let (_, stderr) = text(&refreshed);
    assert!(refreshed.status.success(), "{stderr}");
    assert!(!stderr.contains("replica"), "{stderr}");
    assert_eq!(
        replica.cli(&["HGET", login, "generation"]),
        server.cli(&["HGET", login, "generation"]),
        "the replica has the write once the command returned"
    );

    replica.pause();
    let refreshed = run(&["refresh", "--force"]);
    replica.resume();
    let (_, stderr) = text(&refreshed);
    assert!(refreshed.status.success(), "{stderr}");
    assert!(stderr.contains("reached no replica"), "{stderr}");
    assert_eq!(endpoint.revoked_families(), 0);
}

/// `--store-lease` sets the lease a holder takes; one that does not exceed the refresh timeout
/// is refused, and so is the option with a store that has no lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lease_length_is_the_operators_to_set() {
    let Some(server) = redis() else { return };
    let endpoint = TokenEndpoint::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let key = imported(&server, &endpoint, dir.path(), 12).await;
    let mut a = Frozen::holder(&server, &key, &endpoint, &["token", "--store-lease", "40s"]).await;
    let left: i64 = String::from_utf8_lossy(&server.cli(&["PTTL", LEASE]))
        .trim()
        .parse()
        .unwrap();
    assert!((30_000..=40_000).contains(&left), "{left} ms left");
    a.child.kill().unwrap();
    let _ = a.child.wait();
    server.cli(&["DEL", LEASE]);

    let short = fleet_command(dir.path(), &server.url(), &key, &endpoint)
        .args(["token", "--store-lease", "20s"])
        .output()
        .unwrap();
    assert_eq!(short.status.code(), Some(crate::support::EXIT_REFUSED));
    assert!(
        text(&short)
            .1
            .contains("must be longer than the refresh budget"),
        "{:?}",
        text(&short)
    );
    let file = cli(
        dir.path(),
        &[
            "status",
            "--credentials",
            "/nonexistent/.credentials.json",
            "--store-lease",
            "40s",
        ],
    )
    .await;
    assert_eq!(file.status.code(), Some(crate::support::EXIT_REFUSED));
    assert!(text(&file).1.contains("--store-lease"), "{:?}", text(&file));
    assert_eq!(endpoint.requests().len(), 0);
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
    assert!(
        stderr.contains("lease")
            && stderr.contains("lost while held")
            && !stderr.contains("timed out"),
        "{stderr}"
    );
    assert_eq!(endpoint.requests().len(), 0, "nothing sent");
    assert_eq!(store(&server, &key).load_document().await.unwrap(), before);

    server.cli(&["DEL", LEASE]);
    let (token, _) = another_machine(&server, &key, &endpoint).await;
    assert_eq!(endpoint.grants_served(), 1);
    assert_eq!(endpoint.revoked_families(), 0);
    assert!(endpoint.accepts_access_token(&token));
}
