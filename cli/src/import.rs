//! `claude-code-auth --store … import FILE`: copy a login from a credential file into the
//! store, refusing to replace a different login there without `--force`.
//!
//! The import is written as a refresh writes: under the refresh lock every refresher honours
//! (for a file, our OS lock and the `claude` CLI's lock directories; for Redis, the lease), then
//! the store's write lock. A refresh under way finishes first, and none starts until the import
//! is in — so no refresh puts the old login's rotation back over it.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

use entelix_auth_claude_code::{
    ClaudeCodeAuthError, CredentialStore, FileCredentialStore, RedisCredentialStore, RefreshLock,
};

use super::Failure;

/// What an import did, in one line. `FILE` is a credential file, or — into a Redis store — a
/// machine's high-water mark of its login (the newest login that machine wrote, sealed).
pub(super) async fn import(
    store: &dyn CredentialStore,
    redis: Option<&RedisCredentialStore>,
    from: &Path,
    force: bool,
) -> Result<String, Failure> {
    let shown = from.display().to_string();
    let kept = match redis {
        Some(redis) => redis.kept_login(from)?,
        None => None,
    };
    let document = match kept {
        Some(kept) => kept,
        None => FileCredentialStore::with_path(from)
            .load_document()
            .await?
            .ok_or_else(|| ClaudeCodeAuthError::CredentialsMissing {
                path: shown.clone(),
            })?,
    };
    let incoming = Login::of(&document, &shown)?;
    incoming.usable(&shown)?;
    let wait = store.lock_wait(entelix_auth_claude_code::defaults::DEFAULT_LOCK_TIMEOUT);
    let mut lock = lock(store, wait).await?;
    let written = write(store, &mut lock, &document, &incoming, force, wait).await;
    lock.release().await;
    let location = store.location();
    Ok(match written? {
        Written::AlreadyThere => format!("{location} already holds this login; nothing written"),
        Written::Imported => format!(
            "imported the login from {shown} into {location}; delete the file (or log that CLI \
             out) so that nothing else refreshes the same login"
        ),
    })
}

/// What the import did.
enum Written {
    AlreadyThere,
    Imported,
}

/// The store's refresh lock; a refresh that finished while this waited is no reason not to.
async fn lock(
    store: &dyn CredentialStore,
    wait: std::time::Duration,
) -> Result<RefreshLock, ClaudeCodeAuthError> {
    match store.lock_refresh(wait).await {
        Err(ClaudeCodeAuthError::StoreConflict { .. }) => store.lock_refresh(wait).await,
        taken => taken,
    }
}

/// Under `lock`: compare with what is stored, then write `document` through the store's
/// prepared write, under its write lock.
async fn write(
    store: &dyn CredentialStore,
    lock: &mut RefreshLock,
    document: &str,
    incoming: &Login,
    force: bool,
    wait: std::time::Duration,
) -> Result<Written, Failure> {
    let location = store.location();
    let stored = match store.load_document().await {
        Ok(stored) => stored,
        // What is there cannot be read (sealed under a lost secret), or Redis went back in time
        // or lost it: --force replaces it.
        Err(
            ClaudeCodeAuthError::InvalidDocument { .. }
            | ClaudeCodeAuthError::StoreRolledBack { .. }
            | ClaudeCodeAuthError::StoreLost { .. },
        ) if force => None,
        Err(error) => return Err(error.into()),
    };
    if let Some(stored) = stored {
        let there = Login::of(&stored, &location).map_or((None, None), |l| l.tokens);
        if there == incoming.tokens {
            return Ok(Written::AlreadyThere);
        }
        if there != (None, None) && !force {
            return Err(Failure::Refused(format!(
                "{location} holds another login (or another rotation of it); replacing it logs \
                 out whoever uses it: add --force to replace it"
            )));
        }
    }
    lock.prepare_save(u64::try_from(document.len()).unwrap_or(u64::MAX))
        .await?;
    lock.lock_write(wait).await?;
    lock.save_refreshed(store, document).await?;
    Ok(Written::Imported)
}

/// What a document's login is made of.
struct Login {
    /// The access and refresh tokens (empty ones count as none).
    tokens: (Option<String>, Option<String>),
    /// `expiresAt`, when it is a number.
    expires_at_ms: Option<i64>,
}

impl Login {
    fn of(document: &str, at: &str) -> Result<Self, Failure> {
        let value: Value =
            serde_json::from_str(document).map_err(|_| ClaudeCodeAuthError::InvalidDocument {
                path: at.to_owned(),
                problem: "not JSON".into(),
            })?;
        let oauth =
            value
                .get("claudeAiOauth")
                .ok_or_else(|| ClaudeCodeAuthError::OAuthSectionMissing {
                    path: at.to_owned(),
                })?;
        let token = |key: &str| {
            oauth
                .get(key)
                .and_then(Value::as_str)
                .filter(|t| !t.is_empty())
                .map(str::to_owned)
        };
        Ok(Self {
            tokens: (token("accessToken"), token("refreshToken")),
            expires_at_ms: oauth.get("expiresAt").and_then(Value::as_i64),
        })
    }

    /// A login worth importing: it holds a token, and an expired one can be refreshed.
    fn usable(&self, at: &str) -> Result<(), ClaudeCodeAuthError> {
        if self.tokens == (None, None) {
            return Err(ClaudeCodeAuthError::LoggedOut {
                path: at.to_owned(),
            });
        }
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        let expired = self.expires_at_ms.is_some_and(|at| at <= now_ms);
        if expired && self.tokens.1.is_none() {
            return Err(ClaudeCodeAuthError::RefreshTokenMissing);
        }
        Ok(())
    }
}
