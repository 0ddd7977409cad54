//! The Redis store through the library: providers and stores in this process, Redis real.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use claude_code_auth_testkit::loopback::TokenEndpoint;
use claude_code_auth_testkit::redis_server::RedisServer;
use entelix_auth_claude_code::{
    ClaudeCodeAuthError, CredentialStore, Reaction, RedisCredentialStore, RefreshMode,
};
use serde_json::Value;

use super::{
    LEASE, bearer, contains, dump, expired_document, imported, provider, redis, secret, store,
    tls_files,
};
use crate::support::{cli, cli_command, text};

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
    server.cli(&["DEL", LEASE]);
    let newer = document.replace("fleetNote", "newerNote");
    store(&server, &key).save_document(&newer).await.unwrap();
    // Before sending: the lease is gone, so nothing may be sent.
    let error = lock.prepare_save(1000).await.unwrap_err();
    assert_eq!(error.reaction(), Reaction::Unreachable, "{error}");
    assert!(error.to_string().contains("nothing was sent"), "{error}");
    // And a write is refused: the newer login stays.
    let error = lock.save_refreshed(&ours, &document).await.unwrap_err();
    assert!(
        matches!(error, ClaudeCodeAuthError::StoreConflict { .. }),
        "{error:?}"
    );
    assert_eq!(ours.load_document().await.unwrap().unwrap(), newer);
    drop(lock);

    // Holding the lease is not enough: the generation it read must still be the stored one.
    let mut lock = ours.lock_refresh(Duration::from_secs(1)).await.unwrap();
    server.cli(&["HINCRBY", "{claude-code-auth}:login", "generation", "1"]);
    let error = lock.save_refreshed(&ours, &document).await.unwrap_err();
    assert!(
        error.to_string().contains("moved from generation 2 to 3"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_serves_the_valid_header_and_a_restart_empty_says_it_lost_the_login() {
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
    served_while_redis_does_not_answer(&provider, &token).await;
    assert_eq!(
        endpoint.grants_served(),
        1,
        "nothing sent while Redis is down"
    );

    // Restarted without persistence: this machine saw the login there, and keeps the newest it
    // wrote (sealed) for the operator; nothing is written back on its own.
    server.restart();
    let error = provider.header_value().await.unwrap_err();
    assert_eq!(error.reaction(), Reaction::Missing, "{error}");
    assert!(
        matches!(&error, ClaudeCodeAuthError::StoreLost { seen: 2, .. }),
        "{error}"
    );
    assert!(error.to_string().contains("import"), "{error}");
    assert_eq!(
        server.cli(&["DBSIZE"]),
        b"0\n",
        "nothing written from memory"
    );
    // A machine that never saw it says there is none to use.
    let elsewhere = tempfile::tempdir().unwrap();
    let fresh = RedisCredentialStore::builder(server.url())
        .state_dir(elsewhere.path())
        .secret_file(secret(dir.path(), "store.key", 4))
        .build()
        .unwrap();
    let error = super::provider(fresh, &endpoint)
        .header_value()
        .await
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("no login in the credential store"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_without_a_secret_refuses_and_a_key_change_reads_the_old_one() {
    let Some(server) = redis() else { return };
    let endpoint = TokenEndpoint::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let error = RedisCredentialStore::builder(server.url())
        .state_dir(server.scratch())
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
        .state_dir(server.scratch())
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
        .state_dir(server.scratch())
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
    served_while_redis_does_not_answer(&provider, &token).await;
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
        .state_dir(server.scratch())
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
        .state_dir(server.scratch())
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

/// While Redis does not answer: the header `token` is still served from memory, and a forced
/// refresh fails as unreachable by Redis's own bound (not by the whole call's running out while a
/// connection hangs).
async fn served_while_redis_does_not_answer(
    provider: &entelix_auth_claude_code::ClaudeCodeOAuthProvider,
    token: &str,
) {
    assert_eq!(bearer(&provider.header_value().await.unwrap()), token);
    let error = provider.refresh(RefreshMode::Force).await.unwrap_err();
    assert_eq!(error.reaction(), Reaction::Unreachable, "{error}");
    assert!(
        matches!(error, ClaudeCodeAuthError::StoreUnreachable { .. }),
        "{error:?}"
    );
}
