//! `RedisCredentialStore` against a real `redis-server` (started per test on a free loopback
//! port, without persistence) and the loopback token endpoint that rotates and revokes: the
//! sealed value, the fenced lease, the compare-and-set write, an outage and a restart.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use claude_code_auth_testkit::loopback::TokenEndpoint;
use claude_code_auth_testkit::redis_server::RedisServer;
use entelix_auth_claude_code::{
    ClaudeCodeAuthError, ClaudeCodeOAuthConfig, ClaudeCodeOAuthProvider, CredentialStore, Reaction,
    RedisCredentialStore, RefreshMode, STORE_SECRET_LEN,
};
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use crate::support::{cli, cli_command, finish, real_now_ms, text};
use std::process::Stdio;

/// A Redis to test against, or `None` (said on the terminal) where `redis-server` is missing;
/// in CI it must be there.
fn redis() -> Option<RedisServer> {
    if RedisServer::available() {
        return Some(RedisServer::start());
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "redis-server is missing; .ci/run installs Debian's package"
    );
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED a Redis store scenario: no redis-server here (apt-get install redis-server)"
    );
    None
}

/// A 32-byte secret in a 0600 file in `dir`.
fn secret(dir: &Path, name: &str, byte: u8) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, [byte; STORE_SECRET_LEN]).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

fn store(server: &RedisServer, secret: &Path) -> RedisCredentialStore {
    RedisCredentialStore::builder(server.url())
        .secret_file(secret)
        .build()
        .unwrap()
}

/// A login of `endpoint` whose access token expired a minute ago, with a key the component
/// does not know.
fn expired_document(endpoint: &TokenEndpoint) -> (String, Value) {
    let login = endpoint.login();
    let document = json!({
        "claudeAiOauth": {
            "accessToken": login.access_token,
            "refreshToken": login.refresh_token,
            "expiresAt": real_now_ms() - 60_000,
            "scopes": ["user:inference", "user:profile"],
            "subscriptionType": "max",
        },
        "fleetNote": {"kept": [1, 2.50, "as written"]},
    });
    (document.to_string(), document)
}

fn provider(store: RedisCredentialStore, endpoint: &TokenEndpoint) -> ClaudeCodeOAuthProvider {
    ClaudeCodeOAuthProvider::with_config(
        store,
        ClaudeCodeOAuthConfig::new().with_token_url(endpoint.url()),
    )
}

fn bearer(header: &secrecy::SecretString) -> String {
    header
        .expose_secret()
        .strip_prefix("Bearer ")
        .unwrap()
        .to_owned()
}

/// Everything Redis holds, as `redis-cli` prints it.
fn dump(server: &RedisServer) -> Vec<u8> {
    let mut all = Vec::new();
    for key in String::from_utf8_lossy(&server.cli(&["--raw", "KEYS", "*"])).lines() {
        all.extend(server.cli(&["--raw", "DUMP", key]));
        all.extend(server.cli(&["--raw", "HGETALL", key]));
        all.extend(server.cli(&["--raw", "GET", key]));
    }
    all
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_in_redis_refreshes_once_and_redis_never_sees_a_token() {
    let Some(server) = redis() else { return };
    let endpoint = TokenEndpoint::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = store(&server, &secret(dir.path(), "store.key", 1));
    let (document, before) = expired_document(&endpoint);
    store.save_document(&document).await.unwrap();
    let old_refresh = before["claudeAiOauth"]["refreshToken"].as_str().unwrap();
    assert!(!contains(&dump(&server), old_refresh));

    let provider = provider(store.clone(), &endpoint);
    let token = bearer(&provider.header_value().await.unwrap());
    assert_eq!(endpoint.grants_served(), 1);
    assert!(endpoint.accepts_access_token(&token));
    let stored: Value =
        serde_json::from_str(&store.load_document().await.unwrap().unwrap()).unwrap();
    assert_eq!(stored["claudeAiOauth"]["accessToken"], token.as_str());
    assert_ne!(stored["claudeAiOauth"]["refreshToken"], old_refresh);
    assert_eq!(stored["fleetNote"], before["fleetNote"]);
    let held = dump(&server);
    for secret in [
        token.as_str(),
        stored["claudeAiOauth"]["refreshToken"].as_str().unwrap(),
        old_refresh,
        "user:inference",
    ] {
        assert!(!contains(&held, secret), "Redis holds {secret}");
    }
    assert_eq!(
        server.cli(&["HGET", "{claude-code-auth}:login", "generation"]),
        b"2\n"
    );

    // Fresh now: resolved again from memory, one round trip to Redis, nothing sent.
    assert_eq!(bearer(&provider.header_value().await.unwrap()), token);
    assert_eq!(endpoint.grants_served(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_machines_on_one_expired_login_spend_one_grant() {
    let Some(server) = redis() else { return };
    let endpoint = TokenEndpoint::start().await.unwrap();
    endpoint.set_latency(Duration::from_millis(50)..Duration::from_millis(150));
    let dir = tempfile::tempdir().unwrap();
    let key = secret(dir.path(), "store.key", 2);
    store(&server, &key)
        .save_document(&expired_document(&endpoint).0)
        .await
        .unwrap();
    // Each "machine" has its own store and provider: nothing shared but Redis.
    let machines: Vec<_> = (0..8)
        .map(|_| Arc::new(provider(store(&server, &key), &endpoint)))
        .collect();
    let tasks: Vec<_> = machines
        .iter()
        .map(|p| {
            let p = p.clone();
            tokio::spawn(async move { bearer(&p.header_value().await.unwrap()) })
        })
        .collect();
    let mut tokens = Vec::new();
    for task in tasks {
        tokens.push(task.await.unwrap());
    }
    assert_eq!(endpoint.grants_served(), 1, "one grant for the fleet");
    assert_eq!(endpoint.revoked_families(), 0);
    tokens.dedup();
    assert_eq!(tokens.len(), 1, "every machine holds the same token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_over_a_moved_generation_or_without_the_lease_is_refused() {
    let Some(server) = redis() else { return };
    let endpoint = TokenEndpoint::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let key = secret(dir.path(), "store.key", 3);
    let (document, _) = expired_document(&endpoint);
    let ours = store(&server, &key);
    ours.save_document(&document).await.unwrap();

    // Our lease runs out (as in a long pause) and another machine writes a newer login.
    let mut lock = ours.lock_refresh(Duration::from_secs(1)).await.unwrap();
    server.cli(&["DEL", "{claude-code-auth}:lease"]);
    let newer = document.replace("fleetNote", "newerNote");
    store(&server, &key).save_document(&newer).await.unwrap();
    // Before sending: the lease is gone, so nothing may be sent.
    let error = ours.prepare_save(&mut lock, 1000).await.unwrap_err();
    assert_eq!(error.reaction(), Reaction::Unreachable, "{error}");
    assert!(error.to_string().contains("nothing was sent"), "{error}");
    // And a write is refused: the newer login stays.
    let error = ours.save_refreshed(&mut lock, &document).await.unwrap_err();
    assert!(
        matches!(error, ClaudeCodeAuthError::StoreConflict { .. }),
        "{error:?}"
    );
    assert_eq!(ours.load_document().await.unwrap().unwrap(), newer);
    drop(lock);

    // Holding the lease is not enough: the generation it read must still be the stored one.
    let mut lock = ours.lock_refresh(Duration::from_secs(1)).await.unwrap();
    server.cli(&["HINCRBY", "{claude-code-auth}:login", "generation", "1"]);
    let error = ours.save_refreshed(&mut lock, &document).await.unwrap_err();
    assert!(
        error.to_string().contains("moved from generation 2 to 3"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_serves_the_valid_header_and_a_restart_empty_says_no_login() {
    let Some(mut server) = redis() else { return };
    let endpoint = TokenEndpoint::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = store(&server, &secret(dir.path(), "store.key", 4));
    store
        .save_document(&expired_document(&endpoint).0)
        .await
        .unwrap();
    let provider = provider(store.clone(), &endpoint);
    let token = bearer(&provider.header_value().await.unwrap());
    // Resolved again, the header is in memory (a refresh's own write is read back once first).
    assert_eq!(bearer(&provider.header_value().await.unwrap()), token);

    server.stop();
    assert_eq!(bearer(&provider.header_value().await.unwrap()), token);
    let error = provider.refresh(RefreshMode::Force).await.unwrap_err();
    assert_eq!(error.reaction(), Reaction::Unreachable, "{error}");
    assert!(
        matches!(error, ClaudeCodeAuthError::StoreUnreachable { .. }),
        "{error:?}"
    );
    assert_eq!(
        endpoint.grants_served(),
        1,
        "nothing sent while Redis is down"
    );

    server.restart();
    let error = provider.header_value().await.unwrap_err();
    assert_eq!(error.reaction(), Reaction::Missing, "{error}");
    assert!(
        error
            .to_string()
            .contains("no login in the credential store"),
        "{error}"
    );
    assert_eq!(
        server.cli(&["DBSIZE"]),
        b"0\n",
        "nothing written from memory"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_without_a_secret_refuses_and_a_key_change_reads_the_old_one() {
    let Some(server) = redis() else { return };
    let endpoint = TokenEndpoint::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let error = RedisCredentialStore::builder(server.url())
        .build()
        .unwrap_err();
    assert!(error.to_string().contains("plaintext"), "{error}");

    let (document, _) = expired_document(&endpoint);
    let old = secret(dir.path(), "old.key", 5);
    let new = secret(dir.path(), "new.key", 6);
    store(&server, &old).save_document(&document).await.unwrap();
    let error = store(&server, &new).load_document().await.unwrap_err();
    assert!(
        error.to_string().contains("not this store's key"),
        "{error}"
    );
    let changing = RedisCredentialStore::builder(server.url())
        .secret_file(&new)
        .previous_secret_file(&old)
        .build()
        .unwrap();
    assert_eq!(changing.load_document().await.unwrap().unwrap(), document);
    provider(changing, &endpoint).header_value().await.unwrap();
    // Written under the new key now.
    assert!(
        store(&server, &new)
            .load_document()
            .await
            .unwrap()
            .is_some()
    );
    assert!(store(&server, &old).load_document().await.is_err());

    let plain = RedisCredentialStore::builder(server.url())
        .key("plain")
        .plaintext()
        .build()
        .unwrap();
    plain.save_document(&document).await.unwrap();
    assert!(
        contains(&dump(&server), "accessToken"),
        "plaintext, as asked"
    );
}

/// A Redis that requires a password: the right one works, a wrong one is refused (exit 5, not
/// "retry later"), and no message shows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_refused_and_never_shown() {
    let Some(server) = redis() else { return };
    server.cli(&[
        "ACL",
        "SETUSER",
        "fleet",
        "on",
        ">right-SECRET",
        "~*",
        "+@all",
    ]);
    server.cli(&["ACL", "SETUSER", "default", "off"]);
    let url = |password: &str| {
        server
            .url()
            .replace("redis://", &format!("redis://fleet:{password}@"))
    };
    let endpoint = TokenEndpoint::start().await.unwrap();
    let document = expired_document(&endpoint).0;
    let dir = tempfile::tempdir().unwrap();
    let key = secret(dir.path(), "store.key", 13);
    let open = |password: &str| {
        RedisCredentialStore::builder(url(password))
            .secret_file(&key)
            .build()
            .unwrap()
    };
    open("right-SECRET").save_document(&document).await.unwrap();
    let error = open("wrong-SECRET").load_document().await.unwrap_err();
    assert_eq!(error.reaction(), Reaction::Refused, "{error}");
    let output = cli(
        dir.path(),
        &[
            "--store",
            &url("wrong-SECRET"),
            "--store-secret-file",
            key.to_str().unwrap(),
            "status",
        ],
    )
    .await;
    let (stdout, stderr) = text(&output);
    assert_eq!(
        output.status.code(),
        Some(crate::support::EXIT_REFUSED),
        "{stderr}"
    );
    for shown in [error.to_string(), format!("{error:?}"), stdout, stderr] {
        assert!(!shown.contains("SECRET"), "{shown}");
    }
}

#[test]
fn the_store_never_shows_its_password() {
    let store = RedisCredentialStore::builder("redis://fleet:hunter2-SECRET@127.0.0.1:1/0")
        .plaintext()
        .build()
        .unwrap();
    let shown = format!("{store:?} {}", store.location());
    assert!(
        !shown.contains("hunter2") && shown.contains("127.0.0.1:1"),
        "{shown}"
    );
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
    assert_eq!(server.cli(&["EXISTS", "{claude-code-auth}:lease"]), b"0\n");
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

    let output = run(vec!["status".into()]).await;
    let (stdout, _) = text(&output);
    assert!(
        stdout.contains(&format!("redis: {url} key claude-code-auth")),
        "{stdout}"
    );
}

/// The store arguments of a CLI process on `url` with the secret `key`, running `command`.
fn fleet_command(
    home: &Path,
    url: &str,
    key: &Path,
    endpoint: &TokenEndpoint,
) -> std::process::Command {
    let mut command = cli_command(home);
    command
        // A machine of its own: its own rescue files too.
        .env("CLAUDE_CODE_AUTH_STATE_DIR", home.join("state"))
        .args(["--store", url, "--store-secret-file"])
        .arg(key)
        .args(["--token-url", &endpoint.url()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// An expired login in the store at `server`, sealed with a new secret in `dir`: the secret.
async fn imported(server: &RedisServer, endpoint: &TokenEndpoint, dir: &Path, byte: u8) -> PathBuf {
    let key = secret(dir, "store.key", byte);
    store(server, &key)
        .save_document(&expired_document(endpoint).0)
        .await
        .unwrap();
    key
}

/// The lease holder killed with `kill -9` while it holds the lease, before its request could
/// leave (frozen there by the proxy): once the lease has run out (shortened here rather than
/// waited for), another machine refreshes, once; no spent token is presented.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_killed_holding_the_lease_leaves_the_login_to_the_next_machine() {
    use claude_code_auth_testkit::redis_proxy::RedisProxy;
    let Some(server) = redis() else { return };
    let endpoint = TokenEndpoint::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let key = imported(&server, &endpoint, dir.path(), 9).await;
    let proxy = RedisProxy::start(server.port()).await.unwrap();
    proxy.hold_after_next_lease();
    let machine_a = tempfile::tempdir().unwrap();
    let mut a = fleet_command(machine_a.path(), &proxy.url(), &key, &endpoint)
        .arg("token")
        .spawn()
        .unwrap();
    tokio::time::timeout(Duration::from_secs(20), proxy.holding())
        .await
        .expect("the first machine takes the lease");
    a.kill().unwrap();
    let _ = a.wait();
    assert_eq!(endpoint.requests().len(), 0, "killed before sending");
    assert_eq!(server.cli(&["EXISTS", "{claude-code-auth}:lease"]), b"1\n");
    server.cli(&["PEXPIRE", "{claude-code-auth}:lease", "300"]);

    let machine_b = tempfile::tempdir().unwrap();
    let b = fleet_command(machine_b.path(), &server.url(), &key, &endpoint)
        .arg("token")
        .spawn()
        .unwrap();
    let output = finish(b).await;
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    assert_eq!(endpoint.grants_served(), 1);
    assert_eq!(endpoint.revoked_families(), 0);
    assert!(endpoint.accepts_access_token(stdout.trim()));
}

/// A holder stopped (`SIGSTOP`) while holding the lease before sending, past the lease: another
/// machine refreshes; resumed, the stopped one sends nothing (it finds the login refreshed and
/// uses it), and the login is the other machine's, alive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_paused_past_its_lease_uses_the_login_another_machine_refreshed() {
    use claude_code_auth_testkit::redis_proxy::RedisProxy;
    let Some(server) = redis() else { return };
    let endpoint = TokenEndpoint::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let key = imported(&server, &endpoint, dir.path(), 10).await;
    let proxy = RedisProxy::start(server.port()).await.unwrap();
    proxy.hold_after_next_lease();
    let machine_a = tempfile::tempdir().unwrap();
    let a = fleet_command(machine_a.path(), &proxy.url(), &key, &endpoint)
        .args(["refresh", "--force"])
        .spawn()
        .unwrap();
    let pid = a.id().to_string();
    tokio::time::timeout(Duration::from_secs(20), proxy.holding())
        .await
        .expect("the first machine takes the lease");
    let signal = |name: &str| {
        let status = std::process::Command::new("kill")
            .args([name, &pid])
            .status()
            .unwrap();
        assert!(status.success());
    };
    signal("-STOP");
    proxy.release();
    // Past its lease: gone, as it would be after its length.
    server.cli(&["PEXPIRE", "{claude-code-auth}:lease", "1"]);
    tokio::time::sleep(Duration::from_millis(50)).await;

    let machine_b = tempfile::tempdir().unwrap();
    let b = fleet_command(machine_b.path(), &server.url(), &key, &endpoint)
        .arg("token")
        .spawn()
        .unwrap();
    let output = finish(b).await;
    let (b_token, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    assert_eq!(endpoint.grants_served(), 1);

    signal("-CONT");
    let output = finish(a).await;
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
    assert_eq!(stored["claudeAiOauth"]["accessToken"], b_token.trim());
    assert!(endpoint.accepts_access_token(b_token.trim()));
}

/// A holder stopped (`SIGSTOP`) while holding the lease before sending, past the lease, while
/// another machine holds it: resumed, it still means to refresh, finds the lease not its own
/// when it checks before sending, and sends nothing (exit 6); the login is untouched and the
/// next machine refreshes it once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_paused_past_its_lease_does_not_send_after_resuming() {
    use claude_code_auth_testkit::redis_proxy::RedisProxy;
    let Some(server) = redis() else { return };
    let endpoint = TokenEndpoint::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let key = imported(&server, &endpoint, dir.path(), 11).await;
    let before = store(&server, &key).load_document().await.unwrap();
    let proxy = RedisProxy::start(server.port()).await.unwrap();
    proxy.hold_after_next_lease();
    let machine_a = tempfile::tempdir().unwrap();
    let a = fleet_command(machine_a.path(), &proxy.url(), &key, &endpoint)
        .args(["refresh", "--force"])
        .spawn()
        .unwrap();
    let pid = a.id().to_string();
    tokio::time::timeout(Duration::from_secs(20), proxy.holding())
        .await
        .expect("the first machine takes the lease");
    let signal = |name: &str| {
        let status = std::process::Command::new("kill")
            .args([name, &pid])
            .status()
            .unwrap();
        assert!(status.success());
    };
    signal("-STOP");
    proxy.release();
    // Its lease ran out and another machine took it (and is, say, still refreshing).
    server.cli(&[
        "SET",
        "{claude-code-auth}:lease",
        "another-machine",
        "PX",
        "60000",
    ]);

    signal("-CONT");
    let output = finish(a).await;
    let (_, stderr) = text(&output);
    assert_eq!(
        output.status.code(),
        Some(crate::support::EXIT_UNREACHABLE),
        "{stderr}"
    );
    assert!(stderr.contains("lease"), "{stderr}");
    assert_eq!(endpoint.requests().len(), 0, "nothing sent");
    assert_eq!(store(&server, &key).load_document().await.unwrap(), before);

    server.cli(&["DEL", "{claude-code-auth}:lease"]);
    let machine_b = tempfile::tempdir().unwrap();
    let b = fleet_command(machine_b.path(), &server.url(), &key, &endpoint)
        .arg("token")
        .spawn()
        .unwrap();
    let output = finish(b).await;
    let (b_token, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    assert_eq!(endpoint.grants_served(), 1);
    assert_eq!(endpoint.revoked_families(), 0);
    assert!(endpoint.accepts_access_token(b_token.trim()));
}

/// Redis unanswering for a while (paused: nothing lost): the valid header keeps being served, a
/// refresh in the meantime is unreachable and sends nothing, and once Redis answers again the
/// login is refreshed once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_an_outage_the_valid_header_is_served_and_one_refresh_follows() {
    let Some(server) = redis() else { return };
    let endpoint = TokenEndpoint::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let key = imported(&server, &endpoint, dir.path(), 12).await;
    let provider = provider(store(&server, &key), &endpoint);
    let token = bearer(&provider.header_value().await.unwrap());
    assert_eq!(bearer(&provider.header_value().await.unwrap()), token);

    server.pause();
    assert_eq!(bearer(&provider.header_value().await.unwrap()), token);
    let error = provider.refresh(RefreshMode::Force).await.unwrap_err();
    assert_eq!(error.reaction(), Reaction::Unreachable, "{error}");
    assert_eq!(
        endpoint.requests().len(),
        1,
        "nothing sent during the outage"
    );
    server.resume();

    let report = provider.refresh(RefreshMode::Force).await.unwrap();
    assert_eq!(endpoint.grants_served(), 2, "one refresh after the outage");
    assert_eq!(endpoint.revoked_families(), 0);
    let after = bearer(&provider.header_value().await.unwrap());
    assert_ne!(after, token);
    assert!(endpoint.accepts_access_token(&after), "{report:?}");
}

/// A throw-away CA and a certificate it signed for `localhost` and `127.0.0.1`, as PEM files in
/// `dir`.
fn tls_files(dir: &Path) -> claude_code_auth_testkit::redis_server::Tls {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "claude-code-auth throw-away Redis CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let params = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    let tls = claude_code_auth_testkit::redis_server::Tls {
        cert: dir.join("redis.crt"),
        key: dir.join("redis.key"),
        ca: dir.join("ca.crt"),
    };
    std::fs::write(&tls.cert, cert.pem()).unwrap();
    std::fs::write(&tls.key, key.serialize_pem()).unwrap();
    std::fs::write(&tls.ca, ca_cert.pem()).unwrap();
    tls
}

/// `rediss://`: a TLS-only Redis whose certificate a private CA signed. With that CA (the
/// library's `ca_file`, the CLI's `--store-ca-file`, or `SSL_CERT_FILE`) the login round-trips;
/// without it the server is not trusted and nothing is read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_redis_is_trusted_through_its_ca_only() {
    if redis().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let tls = tls_files(dir.path());
    let server = RedisServer::start_tls(tls.clone());
    let endpoint = TokenEndpoint::start().await.unwrap();
    let key = secret(dir.path(), "store.key", 14);
    let (document, _) = expired_document(&endpoint);

    let trusting = RedisCredentialStore::builder(server.url())
        .secret_file(&key)
        .ca_file(&tls.ca)
        .build()
        .unwrap();
    trusting.save_document(&document).await.unwrap();
    assert_eq!(trusting.load_document().await.unwrap().unwrap(), document);

    let error = store(&server, &key).load_document().await.unwrap_err();
    assert_eq!(error.reaction(), Reaction::Refused, "{error}");
    assert!(error.to_string().contains("not trusted"), "{error}");

    let url = server.url();
    let status = |extra: &[&str], ca_env: Option<&Path>| {
        let mut command = cli_command(dir.path());
        command
            .args(["--store", &url, "--store-secret-file"])
            .arg(&key)
            .args(extra)
            .arg("status");
        if let Some(ca) = ca_env {
            command.env("SSL_CERT_FILE", ca);
        }
        command.output().unwrap()
    };
    let ca = tls.ca.to_str().unwrap();
    let output = status(&["--store-ca-file", ca], None);
    assert!(output.status.success(), "{:?}", text(&output));
    assert!(
        text(&output).0.contains(&format!("redis: {url}")),
        "{:?}",
        text(&output)
    );
    let output = status(&[], Some(&tls.ca));
    assert!(
        output.status.success(),
        "SSL_CERT_FILE: {:?}",
        text(&output)
    );
    let output = status(&[], None);
    assert_eq!(
        output.status.code(),
        Some(crate::support::EXIT_REFUSED),
        "an unknown CA is not trusted: {:?}",
        text(&output)
    );
}

/// The lease is renewed while held: an answer that takes longer than the whole lease still
/// lands in the store (without renewal the write would find the lease gone).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_longer_than_the_lease_keeps_it_by_renewing() {
    let Some(server) = redis() else { return };
    let endpoint = TokenEndpoint::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let key = imported(&server, &endpoint, dir.path(), 15).await;
    let short = RedisCredentialStore::builder(server.url())
        .secret_file(&key)
        .refresh_budget(Duration::from_millis(300))
        .lease(Duration::from_millis(600))
        .build()
        .unwrap();
    endpoint.set_latency(Duration::from_millis(1500)..Duration::from_millis(1501));
    let token = bearer(
        &provider(short.clone(), &endpoint)
            .header_value()
            .await
            .unwrap(),
    );
    let stored: Value =
        serde_json::from_str(&short.load_document().await.unwrap().unwrap()).unwrap();
    assert_eq!(stored["claudeAiOauth"]["accessToken"], token.as_str());
    assert_eq!(
        server.cli(&["HGET", "{claude-code-auth}:login", "generation"]),
        b"2\n"
    );
}
