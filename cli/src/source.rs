//! Where the credential comes from: `--store` (Redis, or a credential file), `--credentials`,
//! or as the `claude` CLI decides (`CLAUDE_CODE_OAUTH_TOKEN`, the macOS keychain, the file in
//! the config dir).

use std::path::PathBuf;
use std::sync::Arc;

use entelix_auth_claude_code::{
    ClaudeCodeAuthError, CredentialStore, EnvTokenStore, FileCredentialStore,
    KeychainCredentialStore, RedisCredentialStore,
};

/// How the user chose the store.
pub(super) struct Choice {
    /// `--credentials PATH`.
    pub(super) credentials: Option<PathBuf>,
    /// `--store URL|PATH`.
    pub(super) store: Option<String>,
    /// `--store-key NAME`.
    pub(super) store_key: String,
    /// `--store-secret-file PATH`.
    pub(super) secret: Option<PathBuf>,
    /// `--store-ca-file PATH`.
    pub(super) ca_file: Option<PathBuf>,
    /// `--store-plaintext`.
    pub(super) plaintext: bool,
}

/// The store the command uses.
pub(super) struct Source {
    /// `file`, `env`, `keychain` or `redis`, as `status` shows it.
    pub(super) kind: &'static str,
    pub(super) store: Arc<dyn CredentialStore>,
    /// The credential file, for a file store.
    pub(super) file: Option<PathBuf>,
}

/// Whether `--store`'s value is a Redis URL rather than a path.
fn is_redis(store: &str) -> bool {
    ["redis://", "rediss://", "valkey://", "valkeys://"]
        .iter()
        .any(|scheme| {
            store
                .get(..scheme.len())
                .is_some_and(|s| s.eq_ignore_ascii_case(scheme))
        })
}

/// The store `choice` names: `--store` first, then `--credentials`, then as the `claude` CLI
/// decides: the long-lived token in `CLAUDE_CODE_OAUTH_TOKEN`, else the macOS keychain item (on
/// macOS) or the credential file in the config dir.
pub(super) fn source(choice: Choice) -> Result<Source, ClaudeCodeAuthError> {
    let file = |path: PathBuf| Source {
        kind: "file",
        store: Arc::new(FileCredentialStore::with_path(path.clone())),
        file: Some(path),
    };
    if let Some(store) = choice.store {
        if !is_redis(&store) {
            return Ok(file(PathBuf::from(store)));
        }
        let mut builder = RedisCredentialStore::builder(store).key(choice.store_key);
        if let Some(secret) = choice.secret {
            builder = builder.secret_file(secret);
        }
        if let Some(ca) = choice.ca_file {
            builder = builder.ca_file(ca);
        }
        if choice.plaintext {
            builder = builder.plaintext();
        }
        return Ok(Source {
            kind: "redis",
            store: Arc::new(builder.build()?),
            file: None,
        });
    }
    if let Some(path) = choice.credentials {
        return Ok(file(path));
    }
    if let Some(env) = EnvTokenStore::from_env() {
        return Ok(Source {
            kind: "env",
            store: Arc::new(env),
            file: None,
        });
    }
    if cfg!(target_os = "macos") {
        return Ok(Source {
            kind: "keychain",
            store: Arc::new(KeychainCredentialStore::for_claude_cli()?),
            file: None,
        });
    }
    Ok(file(FileCredentialStore::default_claude_path()?))
}
