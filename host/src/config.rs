//! Constants and [`ClaudeCodeOAuthConfig`].

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// The token endpoint the `claude` CLI refreshes against today.
pub const DEFAULT_TOKEN_URL: &str = "https://platform.claude.com/v1/oauth/token";

/// The `claude` CLI's public OAuth client id, sent with every refresh grant by default.
pub const CLAUDE_CODE_CLIENT_ID: &str = "9d1c250a-e61b-44d9-88ed-5944d1962f5e";

/// `anthropic-beta` value the `claude` CLI sends on every API request.
///
/// The provider only supplies the `Authorization` header; put this value (and [`OAUTH_BETA`])
/// on requests through `entelix_core::ir::AnthropicExt::with_betas`.
pub const CLAUDE_CODE_BETA: &str = "claude-code-20250219";

/// `anthropic-beta` value the Messages API requires for requests authenticated with a
/// Claude.ai OAuth token; without it such requests are rejected.
pub const OAUTH_BETA: &str = "oauth-2025-04-20";

/// Default bound for one refresh exchange with the token endpoint, retries included.
pub const DEFAULT_REFRESH_TIMEOUT: Duration = Duration::from_secs(30);

/// Default refresh window: a token that expires within it is refreshed first (as the CLI does).
pub const DEFAULT_EXPIRY_SKEW: Duration = Duration::from_secs(5 * 60);

/// Default bound for waiting on the cross-process refresh lock.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(30);

/// A source of wall-clock time, injectable so expiry decisions can be tested.
pub type WallClock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// Configuration for [`crate::ClaudeCodeOAuthProvider`].
#[derive(Clone)]
#[non_exhaustive]
pub struct ClaudeCodeOAuthConfig {
    /// OAuth2 token endpoint. Defaults to [`DEFAULT_TOKEN_URL`].
    pub token_url: String,
    /// Client id sent with the refresh grant. Defaults to [`CLAUDE_CODE_CLIENT_ID`];
    /// `None` leaves the field out.
    pub client_id: Option<String>,
    /// Bound for one refresh exchange, retries included. Defaults to
    /// [`DEFAULT_REFRESH_TIMEOUT`].
    pub refresh_timeout: Duration,
    /// Refresh tokens that expire within this window. Defaults to [`DEFAULT_EXPIRY_SKEW`].
    pub expiry_skew: Duration,
    /// Bound for waiting on the refresh lock. Defaults to [`DEFAULT_LOCK_TIMEOUT`].
    pub lock_timeout: Duration,
    /// Wall clock the component sees; `None` is the system clock.
    pub clock: Option<WallClock>,
}

impl fmt::Debug for ClaudeCodeOAuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClaudeCodeOAuthConfig")
            .field("token_url", &self.token_url)
            .field("client_id", &self.client_id)
            .field("refresh_timeout", &self.refresh_timeout)
            .field("expiry_skew", &self.expiry_skew)
            .field("lock_timeout", &self.lock_timeout)
            .field(
                "clock",
                &self.clock.as_ref().map_or("system", |_| "injected"),
            )
            .finish()
    }
}

impl Default for ClaudeCodeOAuthConfig {
    fn default() -> Self {
        Self {
            token_url: DEFAULT_TOKEN_URL.to_owned(),
            client_id: Some(CLAUDE_CODE_CLIENT_ID.to_owned()),
            refresh_timeout: DEFAULT_REFRESH_TIMEOUT,
            expiry_skew: DEFAULT_EXPIRY_SKEW,
            lock_timeout: DEFAULT_LOCK_TIMEOUT,
            clock: None,
        }
    }
}

impl ClaudeCodeOAuthConfig {
    /// The defaults.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Use another token endpoint (a proxy, a staging service, a loopback test server).
    #[must_use]
    pub fn with_token_url(mut self, url: impl Into<String>) -> Self {
        self.token_url = url.into();
        self
    }

    /// Send another client id with the refresh grant.
    #[must_use]
    pub fn with_client_id(mut self, client_id: impl Into<String>) -> Self {
        self.client_id = Some(client_id.into());
        self
    }

    /// Send no client id with the refresh grant.
    #[must_use]
    pub fn without_client_id(mut self) -> Self {
        self.client_id = None;
        self
    }

    /// Bound one refresh exchange, retries included.
    #[must_use]
    pub const fn with_refresh_timeout(mut self, timeout: Duration) -> Self {
        self.refresh_timeout = timeout;
        self
    }

    /// Refresh tokens that expire within `skew`.
    #[must_use]
    pub const fn with_expiry_skew(mut self, skew: Duration) -> Self {
        self.expiry_skew = skew;
        self
    }

    /// Bound the wait for the refresh lock.
    #[must_use]
    pub const fn with_lock_timeout(mut self, timeout: Duration) -> Self {
        self.lock_timeout = timeout;
        self
    }

    /// Show the component another wall clock (tests, simulations).
    #[must_use]
    pub fn with_clock(mut self, clock: impl Fn() -> SystemTime + Send + Sync + 'static) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_cli() {
        let config = ClaudeCodeOAuthConfig::new();
        assert_eq!(
            config.token_url,
            "https://platform.claude.com/v1/oauth/token"
        );
        assert_eq!(
            config.client_id.as_deref(),
            Some("9d1c250a-e61b-44d9-88ed-5944d1962f5e")
        );
        assert_eq!(config.refresh_timeout, Duration::from_secs(30));
        assert_eq!(config.expiry_skew, Duration::from_secs(300));
    }

    #[test]
    fn builders_override() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(42);
        let config = ClaudeCodeOAuthConfig::new()
            .with_token_url("http://127.0.0.1:9/t")
            .with_client_id("other")
            .with_refresh_timeout(Duration::from_secs(3))
            .with_expiry_skew(Duration::from_secs(60))
            .with_lock_timeout(Duration::from_secs(4))
            .with_clock(move || at);
        assert_eq!(config.token_url, "http://127.0.0.1:9/t");
        assert_eq!(config.client_id.as_deref(), Some("other"));
        assert_eq!(config.refresh_timeout, Duration::from_secs(3));
        assert_eq!(config.expiry_skew, Duration::from_secs(60));
        assert_eq!(config.lock_timeout, Duration::from_secs(4));
        assert_eq!((config.clock.as_ref().unwrap())(), at);
        assert!(format!("{config:?}").contains("injected"));
        assert_eq!(config.without_client_id().client_id, None);
    }
}
