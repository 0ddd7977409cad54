//! The test bed both crates are measured on: one credential file in a temp dir and one loopback
//! token endpoint, which (for the original crate's sake) also accepts its out-of-date,
//! form-encoded refresh request.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use entelix_auth_claude_code::loopback::TokenEndpoint;
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

/// The system clock in Unix milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
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
