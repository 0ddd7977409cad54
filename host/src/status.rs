//! The crate's own words for the state of a credential and the outcome of a refresh: what the
//! provider reports, what its header cache is keyed on, what the CLI shows. Never a token.

use chrono::{DateTime, TimeZone, Utc};

/// What is known about the stored credential. Never carries a token. The default knows nothing:
/// not logged in, no expiry, no refresh token.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", default)]
#[non_exhaustive]
pub struct TokenStatus {
    /// The credential holds a token. `false` is the `claude` CLI's logged-out shape (tokens
    /// blanked after a logout or a rejected refresh): run `claude login`.
    pub logged_in: bool,
    /// Expiry of the access token in Unix milliseconds, when known and representable.
    pub expires_at_ms: Option<i64>,
    /// The access token is past its expiry.
    pub expired: bool,
    /// The access token expires within the configured skew, or its expiry is unknown.
    pub needs_refresh: bool,
    /// The credential holds a refresh token.
    pub has_refresh_token: bool,
    /// Subscription type recorded by the CLI.
    pub subscription_type: Option<String>,
    /// Rate-limit tier recorded by the CLI.
    pub rate_limit_tier: Option<String>,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// The login's hard deadline (`refreshTokenExpiresAt`) in Unix milliseconds, when recorded:
    /// refreshes do not extend it; after it, `claude login` is needed.
    pub login_expires_at_ms: Option<i64>,
}

/// How far ahead of the login's deadline [`TokenStatus::login_expires_soon`] warns (the CLI
/// warns 3 days ahead).
pub const LOGIN_WARNING: std::time::Duration = std::time::Duration::from_secs(3 * 24 * 60 * 60);

impl TokenStatus {
    /// The expiry as a date, when known.
    pub fn expires_at(&self) -> Option<DateTime<Utc>> {
        self.expires_at_ms
            .and_then(|ms| Utc.timestamp_millis_opt(ms).single())
    }

    /// The login's deadline as a date, when recorded.
    pub fn login_expires_at(&self) -> Option<DateTime<Utc>> {
        self.login_expires_at_ms
            .and_then(|ms| Utc.timestamp_millis_opt(ms).single())
    }

    /// The login ends within [`LOGIN_WARNING`] of `now` (or has ended): time to plan a
    /// `claude login`.
    pub fn login_expires_soon(&self, now: DateTime<Utc>) -> bool {
        let warning = chrono::TimeDelta::from_std(LOGIN_WARNING).unwrap_or_default();
        self.login_expires_at().is_some_and(|at| at - now < warning)
    }
}

/// How a refresh request was satisfied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RefreshOutcome {
    /// The stored token was fresh enough; nothing was sent.
    StillFresh,
    /// This call spent the refresh token and stored the new credential.
    Refreshed,
    /// Another process refreshed while this one waited for the lock; its token is used.
    Adopted,
    /// The refresh failed for a reason that may pass, but the stored token has not expired, so
    /// it is used for now.
    Deferred,
}

/// The result of [`crate::ClaudeCodeOAuthProvider::refresh`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RefreshReport {
    /// How the request was satisfied.
    pub outcome: RefreshOutcome,
    /// The credential as stored afterwards.
    pub status: TokenStatus,
}

/// Which refresh to ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RefreshMode {
    /// Only when the token expires within the skew (or its expiry is unknown).
    IfNeeded,
    /// Whatever the expiry, unless another process refreshed while this one waited for the lock.
    Force,
}
