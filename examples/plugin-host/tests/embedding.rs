//! The plugin host, end to end: the plain component with this host's own store, the
//! component composed with a filesystem store, a request elsewhere, and a component built for
//! another version of the contract.

// Tests panic to report failure.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use claude_code_auth_plugin_host::{AuthError, Config, MemoryStore, PluginHost};
use claude_code_auth_testkit::loopback::TokenEndpoint;
use serde_json::{Value, json};

/// A component by file name: the refresh component as `entelix-auth-claude-code` ships it, read
/// from its file as a plugin host would; the composition with the filesystem store, as the
/// testkit builds it.
fn component(name: &str) -> Vec<u8> {
    if name == "claude_code_auth_with_fs_store.wasm" {
        return claude_code_auth_testkit::components::WITH_FS_STORE.to_vec();
    }
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../host/component")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn expired_document(endpoint: &TokenEndpoint) -> String {
    let login = endpoint.login();
    let an_hour_ago = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
        - 3_600_000;
    json!({
        "claudeAiOauth": {
            "accessToken": login.access_token,
            "refreshToken": login.refresh_token,
            "expiresAt": an_hour_ago,
            "scopes": ["user:inference"],
            "rateLimitTier": "default_claude_max_20x",
        },
        "mcpOAuth": {"server": {"accessToken": "kept"}},
    })
    .to_string()
}

fn config(endpoint: &TokenEndpoint) -> Config {
    Config {
        token_url: endpoint.url(),
        client_id: Some(claude_code_auth_testkit::loopback::CLAUDE_CODE_CLIENT_ID.into()),
        expiry_skew_ms: 300_000,
        timeout_ms: 30_000,
        user_agent: None,
        max_answer_bytes: 1 << 20,
    }
}

fn authority(endpoint: &TokenEndpoint) -> String {
    endpoint
        .url()
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn the_component_refreshes_through_this_hosts_own_store() {
    let endpoint = TokenEndpoint::start().await.unwrap();
    let store = MemoryStore::holding(&expired_document(&endpoint));
    let host = PluginHost::with_own_store(&component("claude_code_auth.wasm")).unwrap();
    let header = host
        .resolve(
            store.clone(),
            None,
            &authority(&endpoint),
            &config(&endpoint),
        )
        .await
        .unwrap()
        .unwrap();
    let stored: Value = serde_json::from_str(&store.document().unwrap()).unwrap();
    assert_eq!(header.name, "authorization");
    assert_eq!(
        header.value,
        format!(
            "Bearer {}",
            stored["claudeAiOauth"]["accessToken"].as_str().unwrap()
        )
    );
    assert_eq!(stored["mcpOAuth"]["server"]["accessToken"], "kept");
    assert_eq!(endpoint.grants_served(), 1);
}

#[tokio::test]
async fn the_composed_component_keeps_the_credential_in_its_own_file() {
    let endpoint = TokenEndpoint::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(".credentials.json");
    std::fs::write(&file, expired_document(&endpoint)).unwrap();
    let host =
        PluginHost::with_store_inside(&component("claude_code_auth_with_fs_store.wasm")).unwrap();
    let header = host
        .resolve(
            MemoryStore::default(),
            Some(dir.path()),
            &authority(&endpoint),
            &config(&endpoint),
        )
        .await
        .unwrap()
        .unwrap();
    let stored: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(
        header.value,
        format!(
            "Bearer {}",
            stored["claudeAiOauth"]["accessToken"].as_str().unwrap()
        )
    );
    assert_eq!(
        stored["claudeAiOauth"]["rateLimitTier"],
        "default_claude_max_20x"
    );
    assert_eq!(endpoint.grants_served(), 1);
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, [".credentials.json"], "no lock or temp file left");
}

#[test]
fn a_fifo_where_the_composed_store_expects_its_file_is_refused_not_waited_on() {
    // An own runtime, shut down without waiting: a regression would leave a blocking thread
    // stuck in open(2) on the FIFO, and this test should then fail, not hang.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let answer = runtime.block_on(async {
        let endpoint = TokenEndpoint::start().await.unwrap();
        let file = dir.path().join(".credentials.json");
        let made = std::process::Command::new("mkfifo")
            .arg(&file)
            .status()
            .unwrap();
        assert!(made.success());
        let host = PluginHost::with_store_inside(&component("claude_code_auth_with_fs_store.wasm"))
            .unwrap();
        let (authority, config) = (authority(&endpoint), config(&endpoint));
        let call = host.resolve(
            MemoryStore::default(),
            Some(dir.path()),
            &authority,
            &config,
        );
        let answer = tokio::time::timeout(std::time::Duration::from_secs(20), call).await;
        (answer, endpoint.requests().len())
    });
    runtime.shutdown_background();
    let (answer, requests) = answer;
    let error = format!(
        "{:?}",
        answer
            .expect("the store waited on the FIFO")
            .unwrap()
            .unwrap_err()
    );
    assert!(error.contains("not a regular file"), "{error}");
    assert_eq!(requests, 0);
}

#[tokio::test]
async fn a_request_to_any_other_authority_is_denied() {
    let endpoint = TokenEndpoint::start().await.unwrap();
    let store = MemoryStore::holding(&expired_document(&endpoint));
    let before = store.document();
    let host = PluginHost::with_own_store(&component("claude_code_auth.wasm")).unwrap();
    let result = host
        .resolve(store.clone(), None, "127.0.0.1:1", &config(&endpoint))
        .await
        .unwrap();
    assert!(
        matches!(result, Err(AuthError::SourceUnreachable(_))),
        "{result:?}"
    );
    assert_eq!(store.document(), before);
    assert!(endpoint.requests().is_empty());
}

#[test]
fn a_component_for_another_contract_version_fails_at_load() {
    let wasm = component("claude_code_auth.wasm");
    let needle = b"provider@0.3.0";
    let mut patched = wasm.clone();
    let mut hits = 0;
    for i in 0..patched.len().saturating_sub(needle.len()) {
        if &patched[i..i + needle.len()] == needle {
            patched[i + needle.len() - 5] = b'9';
            hits += 1;
        }
    }
    assert!(hits > 0);
    let error = PluginHost::with_own_store(&patched).err().unwrap();
    let message = format!("{error:?}");
    assert!(
        message.contains("entelix:claude-code-auth/provider@0.3.0"),
        "{message}"
    );
}

/// The names a component imports and exports, as a plugin host's linker sees them.
fn world_of(name: &str) -> (Vec<String>, Vec<String>) {
    let engine = wasmtime::Engine::default();
    let component = wasmtime::component::Component::new(&engine, component(name)).unwrap();
    let ty = component.component_type();
    let mut imports: Vec<String> = ty.imports(&engine).map(|(n, _)| n.to_owned()).collect();
    let mut exports: Vec<String> = ty.exports(&engine).map(|(n, _)| n.to_owned()).collect();
    imports.sort();
    exports.sort();
    (imports, exports)
}

/// What the contract implies: the store, outgoing HTTP with the interfaces its types use, and
/// the wall clock. Nothing of Rust's standard library (environment, stdio, exit, random).
const CONTRACT_IMPORTS: &[&str] = &[
    "wasi:clocks/monotonic-clock@0.2.12",
    "wasi:clocks/wall-clock@0.2.12",
    "wasi:http/outgoing-handler@0.2.12",
    "wasi:http/types@0.2.12",
    "wasi:io/error@0.2.12",
    "wasi:io/poll@0.2.12",
    "wasi:io/streams@0.2.12",
];

#[test]
fn the_components_import_the_contract_and_nothing_else() {
    let (imports, exports) = world_of("claude_code_auth.wasm");
    let mut expected: Vec<&str> = CONTRACT_IMPORTS.to_vec();
    expected.push("entelix:claude-code-auth/credential-store@0.3.0");
    expected.sort();
    assert_eq!(imports, expected);
    assert_eq!(exports, ["entelix:claude-code-auth/provider@0.3.0"]);

    // With the filesystem store plugged in, the store import becomes wasi:filesystem.
    let (imports, exports) = world_of("claude_code_auth_with_fs_store.wasm");
    assert!(
        imports.iter().all(|name| {
            CONTRACT_IMPORTS.contains(&name.as_str()) || name.starts_with("wasi:filesystem/")
        }),
        "{imports:?}"
    );
    assert!(
        imports
            .iter()
            .any(|n| n.starts_with("wasi:filesystem/preopens@"))
    );
    assert_eq!(exports, ["entelix:claude-code-auth/provider@0.3.0"]);
}

/// wasmtime's own sender passes the body on as the component writes it, with the
/// `Content-Length` the component sets: a refresh must never see its own request fail after the
/// endpoint answered (and then retry a spent refresh token).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refreshes_through_wasmtimes_own_sender_never_retry_a_spent_token() {
    const ROUNDS: u64 = 50;
    let endpoint = TokenEndpoint::start().await.unwrap();
    let host = PluginHost::with_own_store(&component("claude_code_auth.wasm")).unwrap();
    for round in 0..ROUNDS {
        let store = MemoryStore::holding(&expired_document(&endpoint));
        let header = host
            .resolve(store, None, &authority(&endpoint), &config(&endpoint))
            .await
            .unwrap();
        assert!(header.is_ok(), "round {round}: {header:?}");
    }
    assert_eq!(endpoint.grants_served(), ROUNDS);
    assert_eq!(endpoint.revoked_families(), 0);
    assert_eq!(
        endpoint.requests().len() as u64,
        ROUNDS,
        "no request was retried"
    );
}
