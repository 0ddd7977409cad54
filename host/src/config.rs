//! Constants and [`ClaudeCodeOAuthConfig`].

use std::fmt;
use std::path::PathBuf;
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

/// Default bound for opening a connection to the token endpoint (DNS, TCP and TLS each).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Default bound for the first byte of the token endpoint's answer after the request is sent.
pub const DEFAULT_FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(20);

/// Default bound for a pause between two pieces of the answer's body.
pub const DEFAULT_BETWEEN_BYTES_TIMEOUT: Duration = Duration::from_secs(10);

/// Default cap on the answer's body the component may read. A real answer is under 2 KiB.
pub const DEFAULT_MAX_ANSWER_BYTES: usize = 1 << 20;

/// Default cap on the component's linear memory. It needs about 1.1 MiB to start.
pub const DEFAULT_MEMORY_LIMIT: usize = 16 << 20;

/// Default CPU budget of one call, in wasmtime fuel units (about one per WebAssembly
/// instruction). A resolve or refresh measured 0.09–0.55 million; parsing a 1 MiB document
/// stays far below this; a looping component is stopped within about a second.
pub const DEFAULT_FUEL: u64 = 500_000_000;

/// The `User-Agent` the component sends with a refresh unless told otherwise: the one the
/// `claude` CLI (2.1.197) sends with its own refresh request, so the service sees the same
/// request from both.
pub const DEFAULT_USER_AGENT: &str = "axios/1.15.2";

/// How the refresh request reaches the token endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProxySetting {
    /// Through the proxy `HTTPS_PROXY` (or `https_proxy`) names, unless `NO_PROXY` (or
    /// `no_proxy`) excludes the endpoint; directly when none is set. Read at each request.
    #[default]
    FromEnvironment,
    /// Directly, whatever the environment says.
    Direct,
    /// Through this proxy (`http://[user:password@]host:port`), opening a `CONNECT` tunnel.
    Url(String),
}

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
    /// Origins the component may reach besides the token endpoint's (same rules: `https`, or
    /// `http` to loopback). Empty by default.
    pub allowed_origins: Vec<String>,
    /// Whether a token endpoint *name* may resolve to a loopback, private, link-local or other
    /// internal address. `false` by default; an IP literal or `localhost` written in the URL is
    /// always taken as meant.
    pub allow_private_addresses: bool,
    /// Bound for opening a connection. Defaults to [`DEFAULT_CONNECT_TIMEOUT`].
    pub connect_timeout: Duration,
    /// Bound for the answer's first byte. Defaults to [`DEFAULT_FIRST_BYTE_TIMEOUT`].
    pub first_byte_timeout: Duration,
    /// Bound for a pause inside the answer's body. Defaults to
    /// [`DEFAULT_BETWEEN_BYTES_TIMEOUT`].
    pub between_bytes_timeout: Duration,
    /// Cap on the answer's body. Defaults to [`DEFAULT_MAX_ANSWER_BYTES`].
    pub max_answer_bytes: usize,
    /// Cap on the component's linear memory. Defaults to [`DEFAULT_MEMORY_LIMIT`].
    pub memory_limit: usize,
    /// CPU budget of one call in fuel units. Defaults to [`DEFAULT_FUEL`].
    pub fuel: u64,
    /// `User-Agent` of the refresh request. Defaults to [`DEFAULT_USER_AGENT`].
    pub user_agent: String,
    /// How to reach the token endpoint: directly or through an HTTP proxy. Defaults to
    /// [`ProxySetting::FromEnvironment`]. A loopback endpoint is always reached directly.
    pub proxy: ProxySetting,
    /// PEM files of CA certificates trusted besides the web PKI roots compiled in (a
    /// TLS-inspecting proxy's CA). `SSL_CERT_FILE` and `NODE_EXTRA_CA_CERTS`, when set, are
    /// trusted too.
    pub extra_ca_certificates: Vec<PathBuf>,
    /// Directory for rescue files (a rotated login the store refused to take); `None` is
    /// `$CLAUDE_CODE_AUTH_STATE_DIR/rescue`, else `$XDG_STATE_HOME` or `~/.local/state`, under
    /// `entelix-auth-claude-code/rescue`.
    pub rescue_dir: Option<PathBuf>,
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
            .field("allowed_origins", &self.allowed_origins)
            .field("allow_private_addresses", &self.allow_private_addresses)
            .field("connect_timeout", &self.connect_timeout)
            .field("first_byte_timeout", &self.first_byte_timeout)
            .field("between_bytes_timeout", &self.between_bytes_timeout)
            .field("max_answer_bytes", &self.max_answer_bytes)
            .field("memory_limit", &self.memory_limit)
            .field("fuel", &self.fuel)
            .field("user_agent", &self.user_agent)
            .field("rescue_dir", &self.rescue_dir)
            .field("proxy", &self.proxy)
            .field("extra_ca_certificates", &self.extra_ca_certificates)
            .finish()
    }
}

impl ClaudeCodeOAuthConfig {
    /// The configured wall clock's time in Unix milliseconds.
    pub(crate) fn now_ms(&self) -> i64 {
        let now = self
            .clock
            .as_ref()
            .map_or_else(SystemTime::now, |clock| clock());
        now.duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
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
            allowed_origins: Vec::new(),
            allow_private_addresses: false,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            first_byte_timeout: DEFAULT_FIRST_BYTE_TIMEOUT,
            between_bytes_timeout: DEFAULT_BETWEEN_BYTES_TIMEOUT,
            max_answer_bytes: DEFAULT_MAX_ANSWER_BYTES,
            memory_limit: DEFAULT_MEMORY_LIMIT,
            fuel: DEFAULT_FUEL,
            user_agent: DEFAULT_USER_AGENT.to_owned(),
            rescue_dir: None,
            proxy: ProxySetting::FromEnvironment,
            extra_ca_certificates: Vec::new(),
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

    /// Let the component also reach the origin of `url` (for example a proxy in front of the
    /// token endpoint).
    #[must_use]
    pub fn with_allowed_origin(mut self, url: impl Into<String>) -> Self {
        self.allowed_origins.push(url.into());
        self
    }

    /// Let (or stop) a token endpoint name resolve to an internal address: for an endpoint
    /// behind a private network or a local proxy reached by name.
    #[must_use]
    pub const fn with_private_addresses_allowed(mut self, allowed: bool) -> Self {
        self.allow_private_addresses = allowed;
        self
    }

    /// Bound opening a connection.
    #[must_use]
    pub const fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Bound the wait for the answer's first byte.
    #[must_use]
    pub const fn with_first_byte_timeout(mut self, timeout: Duration) -> Self {
        self.first_byte_timeout = timeout;
        self
    }

    /// Bound a pause inside the answer's body.
    #[must_use]
    pub const fn with_between_bytes_timeout(mut self, timeout: Duration) -> Self {
        self.between_bytes_timeout = timeout;
        self
    }

    /// Cap the answer's body the component may read: the host stops a longer one as it arrives,
    /// and the component (told in its config, since contract 0.3.0) reads no more.
    #[must_use]
    pub const fn with_max_answer_bytes(mut self, bytes: usize) -> Self {
        self.max_answer_bytes = bytes;
        self
    }

    /// Cap the component's linear memory (below about 1.1 MiB it cannot start).
    #[must_use]
    pub const fn with_memory_limit(mut self, bytes: usize) -> Self {
        self.memory_limit = bytes;
        self
    }

    /// Set the CPU budget of one call, in fuel units.
    #[must_use]
    pub const fn with_fuel(mut self, fuel: u64) -> Self {
        self.fuel = fuel;
        self
    }

    /// Send `user_agent` as the refresh request's `User-Agent` (default:
    /// [`DEFAULT_USER_AGENT`]).
    #[must_use]
    pub fn with_user_agent(mut self, user_agent: impl Into<String>) -> Self {
        self.user_agent = user_agent.into();
        self
    }

    /// Reach the token endpoint through the HTTP proxy at `url` (`http://[user:password@]host:port`)
    /// whatever the environment says.
    #[must_use]
    pub fn with_proxy(mut self, url: impl Into<String>) -> Self {
        self.proxy = ProxySetting::Url(url.into());
        self
    }

    /// Reach the token endpoint directly, whatever `HTTPS_PROXY` says.
    #[must_use]
    pub fn without_proxy(mut self) -> Self {
        self.proxy = ProxySetting::Direct;
        self
    }

    /// Trust the CA certificates in the PEM file `path` besides the web PKI roots.
    #[must_use]
    pub fn with_extra_ca_certificates(mut self, path: impl Into<PathBuf>) -> Self {
        self.extra_ca_certificates.push(path.into());
        self
    }

    /// Keep rescue files in `dir` (see [`Self::rescue_dir`]).
    #[must_use]
    pub fn with_rescue_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.rescue_dir = Some(dir.into());
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
        assert_eq!(config.user_agent, "axios/1.15.2");
        // The component sends its own default when a host gives none: the same one.
        assert_eq!(
            DEFAULT_USER_AGENT,
            claude_code_auth_guest::engine::DEFAULT_USER_AGENT
        );
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
            .with_user_agent("agent/1")
            .with_clock(move || at);
        assert_eq!(config.user_agent, "agent/1");
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
