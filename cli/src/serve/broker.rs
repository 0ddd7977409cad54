//! The broker's core: the login, refreshed ahead of expiry (the provider's skew is the lead), one
//! refresh at a time on demand, and the mirrors re-stamped whenever the token changes — after
//! our refresh, or after the host's `claude` CLI refreshed the same login.

use std::sync::Mutex;

use entelix_auth_claude_code::broker::protocol::token_digest;
use entelix_auth_claude_code::{
    ClaudeCodeAuthError, ClaudeCodeOAuthProvider, RefreshMode, TokenStatus,
};
use secrecy::{ExposeSecret, SecretString};

use super::mirror::{Mirror, Stamp};

/// The current access token and what is known of it.
#[derive(Clone)]
pub(super) struct Current {
    pub(super) token: SecretString,
    pub(super) status: TokenStatus,
}

/// The login and where it is handed out.
pub(super) struct Broker {
    provider: ClaudeCodeOAuthProvider,
    mirrors: Vec<Mirror>,
    /// One refresh on demand at a time.
    refreshing: tokio::sync::Mutex<()>,
    /// The digest of the token the mirrors hold.
    stamped: Mutex<Option<String>>,
}

impl Broker {
    pub(super) fn new(provider: ClaudeCodeOAuthProvider, mirrors: Vec<Mirror>) -> Self {
        Self {
            provider,
            mirrors,
            refreshing: tokio::sync::Mutex::new(()),
            stamped: Mutex::new(None),
        }
    }

    pub(super) const fn provider(&self) -> &ClaudeCodeOAuthProvider {
        &self.provider
    }

    /// The current token, refreshed first when it expires within the lead; the mirrors
    /// re-stamped if it changed.
    pub(super) async fn current(&self) -> Result<Current, ClaudeCodeAuthError> {
        let (token, status) = self.provider.token_with_status().await?;
        let current = Current { token, status };
        self.stamp(&current, false);
        Ok(current)
    }

    /// Replace the token whose digest is `rejected`: a refresh only while it is still the
    /// current one (one refresh however many ask); the current token either way, and whether
    /// this call refreshed.
    pub(super) async fn replace(
        &self,
        rejected: &str,
    ) -> Result<(Current, bool), ClaudeCodeAuthError> {
        let _one = self.refreshing.lock().await;
        let current = self.current().await?;
        if token_digest(current.token.expose_secret()) != rejected {
            return Ok((current, false));
        }
        self.provider.refresh(RefreshMode::Force).await?;
        Ok((self.current().await?, true))
    }

    /// Write the mirrors for `current` when they hold another token (or always, with
    /// `force`). A mirror that cannot be written is logged and tried again next time.
    pub(super) fn stamp(&self, current: &Current, force: bool) -> bool {
        let digest = token_digest(current.token.expose_secret());
        let mut stamped = self
            .stamped
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !force && stamped.as_deref() == Some(digest.as_str()) {
            return true;
        }
        let stamp = Stamp {
            access_token: current.token.expose_secret(),
            expires_at_ms: current.status.expires_at_ms,
            scopes: &current.status.scopes,
            subscription_type: current.status.subscription_type.as_deref(),
            rate_limit_tier: current.status.rate_limit_tier.as_deref(),
        };
        let mut all = true;
        for mirror in &self.mirrors {
            if let Err(error) = mirror.write(&stamp) {
                all = false;
                super::log(&format!(
                    "could not write the mirror in {}: {error}",
                    mirror.dir().display()
                ));
            }
        }
        if all {
            *stamped = Some(digest);
            if !self.mirrors.is_empty() {
                super::log(&format!(
                    "mirrors stamped with the token valid until {}",
                    until(&current.status)
                ));
            }
        }
        all
    }
}

/// When the token expires, as people read it.
pub(super) fn until(status: &TokenStatus) -> String {
    status.expires_at().map_or_else(
        || "an unknown time".into(),
        |at| at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
    )
}
