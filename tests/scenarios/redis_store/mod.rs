//! `RedisCredentialStore` against a real `redis-server` (started per test on a free loopback
//! port, without persistence) and the loopback token endpoint that rotates and revokes: through
//! the library (`library.rs`: the sealed value, the fenced lease, the compare-and-set write, an
//! outage, a restart, TLS) and as a fleet of CLI processes (`processes.rs`: storms, import, a
//! holder killed or paused while it holds the lease).

mod library;
mod processes;

use std::path::{Path, PathBuf};
use std::process::Stdio;

use claude_code_auth_testkit::loopback::TokenEndpoint;
use claude_code_auth_testkit::redis_server::{RedisServer, Tls};
use entelix_auth_claude_code::defaults::STORE_SECRET_LEN;
use entelix_auth_claude_code::{
    ClaudeCodeOAuthConfig, ClaudeCodeOAuthProvider, CredentialStore, RedisCredentialStore,
};
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use crate::support::{cli_command, real_now_ms};

/// The key of the login's lease under the default store key.
pub(super) const LEASE: &str = "{claude-code-auth}:lease";

/// A Redis to test against, or `None` (said on the terminal) where `redis-server` is missing;
/// in CI it must be there.
pub(super) fn redis() -> Option<RedisServer> {
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
pub(super) fn secret(dir: &Path, name: &str, byte: u8) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, [byte; STORE_SECRET_LEN]).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

pub(super) fn store(server: &RedisServer, secret: &Path) -> RedisCredentialStore {
    RedisCredentialStore::builder(server.url())
        .secret_file(secret)
        .state_dir(server.scratch())
        .build()
        .unwrap()
}

/// A login of `endpoint` whose access token expired a minute ago, with a key the component
/// does not know.
pub(super) fn expired_document(endpoint: &TokenEndpoint) -> (String, Value) {
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

pub(super) fn provider(
    store: RedisCredentialStore,
    endpoint: &TokenEndpoint,
) -> ClaudeCodeOAuthProvider {
    ClaudeCodeOAuthProvider::with_config(
        store,
        ClaudeCodeOAuthConfig::new().with_token_url(endpoint.url()),
    )
}

pub(super) fn bearer(header: &secrecy::SecretString) -> String {
    header
        .expose_secret()
        .strip_prefix("Bearer ")
        .unwrap()
        .to_owned()
}

/// Everything Redis holds, as `redis-cli` prints it.
pub(super) fn dump(server: &RedisServer) -> Vec<u8> {
    let mut all = Vec::new();
    for key in String::from_utf8_lossy(&server.cli(&["--raw", "KEYS", "*"])).lines() {
        all.extend(server.cli(&["--raw", "DUMP", key]));
        all.extend(server.cli(&["--raw", "HGETALL", key]));
        all.extend(server.cli(&["--raw", "GET", key]));
    }
    all
}

pub(super) fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// The store arguments of a CLI process on `url` with the secret `key`, running `command`.
pub(super) fn fleet_command(
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
pub(super) async fn imported(
    server: &RedisServer,
    endpoint: &TokenEndpoint,
    dir: &Path,
    byte: u8,
) -> PathBuf {
    let key = secret(dir, "store.key", byte);
    store(server, &key)
        .save_document(&expired_document(endpoint).0)
        .await
        .unwrap();
    key
}

/// A throw-away CA and a certificate it signed for `localhost` and `127.0.0.1`, as PEM files in
/// `dir`.
pub(super) fn tls_files(dir: &Path) -> Tls {
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
    let tls = Tls {
        cert: dir.join("redis.crt"),
        key: dir.join("redis.key"),
        ca: dir.join("ca.crt"),
    };
    std::fs::write(&tls.cert, cert.pem()).unwrap();
    std::fs::write(&tls.key, key.serialize_pem()).unwrap();
    std::fs::write(&tls.ca, ca_cert.pem()).unwrap();
    tls
}
