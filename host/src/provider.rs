//! [`ClaudeCodeOAuthProvider`]: entelix's `CredentialProvider` over the sandboxed component.

use std::fmt;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use entelix_core::auth::{CredentialProvider, Credentials};
use secrecy::{ExposeSecret, SecretString};

use crate::config::ClaudeCodeOAuthConfig;
use crate::error::{ClaudeCodeAuthError, ClaudeCodeAuthResult};
use crate::header_cache::HeaderCache;
use crate::sandbox::{CallContext, LocalLock, ProviderComponent, wit};
use crate::store::CredentialStore;

/// Resolves the `Authorization` header from a [`CredentialStore`], refreshing the access token
/// inside the sandboxed component when it is about to expire.
///
/// Refreshes are single-flight: within the process through an internal lock, across processes
/// through the store's lock (for [`crate::FileCredentialStore`], an OS file lock plus the
/// `claude` CLI's own lock directories). A caller that waited for the lock uses the token the
/// holder stored instead of refreshing again. While the store's
/// [fingerprint](CredentialStore::fingerprint) is unchanged and the token is outside the refresh
/// window, the last header is reused without entering the sandbox.
#[derive(Clone)]
pub struct ClaudeCodeOAuthProvider {
    ctx: Arc<CallContext>,
    /// `None`: the embedded component.
    component: Option<ProviderComponent>,
}

impl fmt::Debug for ClaudeCodeOAuthProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClaudeCodeOAuthProvider")
            .field("store", &self.ctx.store.location())
            .field("config", &self.ctx.config)
            .finish()
    }
}

/// What is known about the stored credential. Never carries a token.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TokenStatus {
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
}

impl TokenStatus {
    /// The expiry as a date, when known.
    pub fn expires_at(&self) -> Option<DateTime<Utc>> {
        self.expires_at_ms
            .and_then(|ms| Utc.timestamp_millis_opt(ms).single())
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

/// The result of [`ClaudeCodeOAuthProvider::refresh`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RefreshReport {
    /// How the request was satisfied.
    pub outcome: RefreshOutcome,
    /// The credential as stored afterwards.
    pub status: TokenStatus,
}

impl ClaudeCodeOAuthProvider {
    /// A provider over `store` with the default configuration.
    pub fn new(store: impl CredentialStore) -> Self {
        Self::with_config(store, ClaudeCodeOAuthConfig::default())
    }

    /// A provider over `store` with `config`.
    pub fn with_config(store: impl CredentialStore, config: ClaudeCodeOAuthConfig) -> Self {
        Self {
            ctx: Arc::new(CallContext {
                store: Arc::new(store),
                local_lock: Arc::new(LocalLock::default()),
                config,
                cache: HeaderCache::default(),
            }),
            component: None,
        }
    }

    /// The same provider (same store, same in-process lock) running `component` instead of the
    /// embedded one.
    #[must_use]
    pub fn with_component(mut self, component: ProviderComponent) -> Self {
        self.component = Some(component);
        self
    }

    async fn component(&self) -> ClaudeCodeAuthResult<ProviderComponent> {
        match &self.component {
            Some(component) => Ok(component.clone()),
            None => ProviderComponent::embedded().await,
        }
    }

    /// The configuration in use.
    pub fn config(&self) -> &ClaudeCodeOAuthConfig {
        &self.ctx.config
    }

    /// Where the credential lives (a path, for the file store).
    pub fn location(&self) -> String {
        self.ctx.store.location()
    }

    /// The access token alone, refreshed first when it expires within the skew.
    pub async fn access_token(&self) -> ClaudeCodeAuthResult<SecretString> {
        let header = self.header_value().await?;
        let token = header
            .expose_secret()
            .strip_prefix("Bearer ")
            .ok_or_else(|| ClaudeCodeAuthError::Sandbox {
                message: "the component returned a header that is not a bearer token".into(),
            })?;
        Ok(SecretString::from(token.to_owned()))
    }

    /// `Bearer <access token>`, refreshed first when it expires within the skew.
    pub async fn header_value(&self) -> ClaudeCodeAuthResult<SecretString> {
        let component = self.component().await?;
        let before = self.ctx.store.fingerprint();
        if let Some(fingerprint) = before {
            let now = now_ms(&self.ctx.config);
            if let Some(header) = self.ctx.cache.get(fingerprint, component.id(), now) {
                return Ok(header);
            }
        }
        let resolution = component
            .call(&self.ctx, |bindings, store, config| {
                Box::pin(
                    bindings
                        .entelix_claude_code_auth_provider()
                        .call_resolve_with_status(store, config),
                )
            })
            .await?;
        let header = SecretString::from(checked_header(resolution.header)?);
        // Only a state that did not move during the call is worth remembering (a write of ours
        // or of anyone else's is read through the component next time).
        if let Some(fingerprint) = before.filter(|fp| self.ctx.store.fingerprint() == Some(*fp)) {
            let skew_ms =
                i64::try_from(self.ctx.config.expiry_skew.as_millis()).unwrap_or(i64::MAX);
            self.ctx.cache.put(
                fingerprint,
                component.id(),
                &header,
                &resolution.status,
                skew_ms,
            );
        }
        Ok(header)
    }

    /// Describe the stored credential without refreshing and without network access.
    pub async fn status(&self) -> ClaudeCodeAuthResult<TokenStatus> {
        self.component()
            .await?
            .call(&self.ctx, |bindings, store, config| {
                Box::pin(
                    bindings
                        .entelix_claude_code_auth_provider()
                        .call_status(store, config),
                )
            })
            .await
            .map(token_status)
    }

    /// Refresh when the token expires within the skew, or always when `force` is set (unless
    /// another process refreshed while this one waited for the lock).
    pub async fn refresh(&self, force: bool) -> ClaudeCodeAuthResult<RefreshReport> {
        let report = self
            .component()
            .await?
            .call(&self.ctx, |bindings, store, config| {
                let provider = bindings.entelix_claude_code_auth_provider();
                if force {
                    Box::pin(provider.call_force_refresh(store, config))
                } else {
                    Box::pin(provider.call_ensure_fresh(store, config))
                }
            })
            .await?;
        Ok(RefreshReport {
            outcome: match report.outcome {
                wit::RefreshOutcome::StillFresh => RefreshOutcome::StillFresh,
                wit::RefreshOutcome::Refreshed => RefreshOutcome::Refreshed,
                wit::RefreshOutcome::Adopted => RefreshOutcome::Adopted,
                wit::RefreshOutcome::Deferred => RefreshOutcome::Deferred,
            },
            status: token_status(report.status),
        })
    }
}

/// The component's header, if it is one a transport can send: `authorization: Bearer <token>`
/// with a token of visible ASCII. Anything else (a misbehaving component) is refused.
fn checked_header(header: wit::Header) -> ClaudeCodeAuthResult<String> {
    let refused = |what: &str| ClaudeCodeAuthError::Sandbox {
        message: format!("the component returned {what}; refused"),
    };
    if !header.name.eq_ignore_ascii_case("authorization") {
        return Err(refused("a header other than authorization"));
    }
    let token = header
        .value
        .strip_prefix("Bearer ")
        .ok_or_else(|| refused("a header value that is not a bearer token"))?;
    let visible = token.bytes().all(|b| b.is_ascii_graphic());
    if token.is_empty() || token.len() > MAX_TOKEN_BYTES || !visible {
        return Err(refused(
            "a bearer token that is empty, oversized or not visible ASCII",
        ));
    }
    Ok(header.value)
}

/// The current time on the configured clock, in Unix milliseconds.
fn now_ms(config: &ClaudeCodeOAuthConfig) -> i64 {
    let now = config
        .clock
        .as_ref()
        .map_or_else(SystemTime::now, |clock| clock());
    now.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Longest bearer token accepted from the component.
const MAX_TOKEN_BYTES: usize = 16 * 1024;

fn token_status(status: wit::TokenStatus) -> TokenStatus {
    TokenStatus {
        expires_at_ms: status.expires_at_ms,
        expired: status.expired,
        needs_refresh: status.needs_refresh,
        has_refresh_token: status.has_refresh_token,
        subscription_type: status.subscription_type,
        rate_limit_tier: status.rate_limit_tier,
        scopes: status.scopes,
    }
}

#[async_trait]
impl CredentialProvider for ClaudeCodeOAuthProvider {
    async fn resolve(&self) -> entelix_core::Result<Credentials> {
        Ok(Credentials {
            header_name: http::header::AUTHORIZATION,
            header_value: self.header_value().await?,
        })
    }
}
