//! The test bed both crates are measured on: one credential file in a temp dir and one loopback
//! token endpoint, which (for the original crate's sake) also accepts its out-of-date,
//! form-encoded refresh request.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use claude_code_auth_testkit::loopback::TokenEndpoint;
use claude_code_auth_testkit::redis_server::RedisServer;
use entelix_auth_claude_code::RedisCredentialStore;
use entelix_core::auth::CredentialProvider;
use serde_json::{Value, json};
use tempfile::TempDir;

/// A credential file and the endpoint that issued its tokens.
pub struct Bed {
    _dir: TempDir,
    /// The credential file.
    pub path: PathBuf,
    /// The token endpoint.
    pub endpoint: TokenEndpoint,
}

impl Bed {
    /// A fresh credential (valid for eight hours) in a new temp dir.
    pub async fn new() -> Self {
        entelix_core::install_default_tls();
        let endpoint = TokenEndpoint::start().await.expect("loopback endpoint");
        endpoint.accept_forms();
        let login = endpoint.login();
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join(".credentials.json");
        let doc = json!({
            "claudeAiOauth": {
                "accessToken": login.access_token,
                "refreshToken": login.refresh_token,
                "expiresAt": now_ms() + 8 * 3_600_000,
                "scopes": ["user:inference", "user:profile"],
                "subscriptionType": "max",
                "rateLimitTier": "default_claude_max_20x",
            },
            "mcpOAuth": {"server": {"accessToken": "other", "expiresAt": 1}},
        });
        std::fs::write(&path, doc.to_string()).expect("write credential file");
        Self {
            _dir: dir,
            path,
            endpoint,
        }
    }

    /// Mark the stored access token expired a minute ago, keeping the current refresh token.
    pub fn expire(&self) {
        set_expiry(&self.path, now_ms() - 60_000);
    }
}

/// Set `claudeAiOauth.expiresAt` in the file at `path`.
pub fn set_expiry(path: &Path, expires_at_ms: i64) {
    let mut doc: Value = serde_json::from_slice(&std::fs::read(path).expect("read")).expect("json");
    doc["claudeAiOauth"]["expiresAt"] = expires_at_ms.into();
    std::fs::write(path, doc.to_string()).expect("write");
}

/// A sealed Redis store of the login `name` at `server`, under the secret at `secret`.
pub fn redis_store(server: &RedisServer, secret: &Path, name: &str) -> RedisCredentialStore {
    RedisCredentialStore::builder(server.url())
        .key(name)
        .secret_file(secret)
        .build()
        .expect("redis store")
}

/// A store secret (32 bytes, mode 0600) in `dir`.
pub fn secret_file(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("store.key");
    std::fs::write(&path, [42u8; 32]).expect("write secret");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    path
}

/// The system clock in Unix milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The `p` quantile (0 to 1) of `sorted`, nearest rank.
pub fn percentile(sorted: &[std::time::Duration], p: f64) -> std::time::Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// A runtime like an application's: multi-threaded, two workers.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// 64 resolves from 64 tasks at once.
pub async fn resolve_64(provider: &Arc<dyn CredentialProvider>) {
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let provider = provider.clone();
            tokio::spawn(async move { provider.resolve().await.map(|_| ()) })
        })
        .collect();
    for task in tasks {
        task.await.expect("task").expect("resolve");
    }
}

/// The floor of a refresh round trip, measured on the same bed: what any refresh must do at
/// least — one HTTP exchange with the token endpoint (the same request, a real rotation) and one
/// durable atomic write of the same document (a same-directory temporary file, fsync, rename,
/// fsync of the directory) — with nothing else: no sandbox, no locks, no re-reads.
pub struct Floor {
    doc: Value,
    dir: TempDir,
}

impl Floor {
    /// A floor over a login of its own at `bed`'s endpoint (so both rotate independently).
    pub fn new(bed: &Bed) -> Self {
        let login = bed.endpoint.login();
        let mut doc: Value =
            serde_json::from_slice(&std::fs::read(&bed.path).expect("read")).expect("json");
        doc["claudeAiOauth"]["accessToken"] = login.access_token.into();
        doc["claudeAiOauth"]["refreshToken"] = login.refresh_token.into();
        Self {
            doc,
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// One refresh at the floor: exchange, then durable write.
    pub async fn refresh(&mut self, bed: &Bed) {
        let oauth = &self.doc["claudeAiOauth"];
        let body = json!({
            "grant_type": "refresh_token",
            "refresh_token": oauth["refreshToken"],
            "client_id": entelix_auth_claude_code::defaults::CLAUDE_CODE_CLIENT_ID,
            "scope": "user:inference user:profile",
        })
        .to_string();
        let answer = post(&bed.endpoint.url(), &body).await;
        let oauth = &mut self.doc["claudeAiOauth"];
        oauth["accessToken"] = answer["access_token"].clone();
        oauth["refreshToken"] = answer["refresh_token"].clone();
        oauth["expiresAt"] =
            (now_ms() + answer["expires_in"].as_i64().expect("expires_in") * 1000).into();
        let text = self.doc.to_string();
        durable_write(&self.dir.path().join(".credentials.json"), text.as_bytes());
    }
}

/// POST `body` as JSON with a `Content-Length` to `url` (`http://host:port/path`) over a fresh
/// connection, as a refresh does; the answer's JSON.
async fn post(url: &str, body: &str) -> Value {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").expect("http URL");
    let (authority, path) = rest.split_at(rest.find('/').expect("path"));
    let mut tcp = tokio::net::TcpStream::connect(authority)
        .await
        .expect("connect");
    tcp.set_nodelay(true).expect("nodelay");
    let request = format!(
        "POST {path} HTTP/1.1\r\nhost: {authority}\r\ncontent-type: application/json\r\naccept: application/json\r\nuser-agent: axios/1.15.2\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    tcp.write_all(request.as_bytes()).await.expect("send");
    let mut answer = Vec::new();
    tcp.read_to_end(&mut answer).await.expect("read");
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("head");
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    serde_json::from_slice(&answer[split + 4..]).expect("answer JSON")
}

/// Replace `path` with `contents` durably: a same-directory temporary file, fsync, rename,
/// fsync of the directory.
fn durable_write(path: &Path, contents: &[u8]) {
    use std::io::Write;
    let dir = path.parent().expect("dir");
    let temp = dir.join(".floor.tmp");
    let mut file = std::fs::File::create(&temp).expect("temp");
    file.write_all(contents).expect("write");
    file.sync_all().expect("fsync");
    drop(file);
    std::fs::rename(&temp, path).expect("rename");
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .expect("fsync dir");
}
