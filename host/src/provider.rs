//! [`ClaudeCodeOAuthProvider`]: entelix's `CredentialProvider` over the sandboxed component.

use std::fmt;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use entelix_core::auth::{CredentialProvider, Credentials};
use secrecy::{ExposeSecret, SecretString};

use crate::config::ClaudeCodeOAuthConfig;
use crate::error::{ClaudeCodeAuthError, ClaudeCodeAuthResult};
use crate::header_cache::HeaderCache;
use crate::sandbox::{CallContext, LocalLock, ProviderComponent};
use crate::status::{RefreshMode, RefreshOutcome, RefreshReport, TokenStatus};
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
    /// The last header, reused while the store is unchanged (shared by clones).
    headers: Arc<HeaderCache>,
    /// `None`: the embedded component.
    component: Option<ProviderComponent>,
}

impl fmt::Debug for ClaudeCodeOAuthProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClaudeCodeOAuthProvider")
            .field("store", &self.ctx.credentials.location())
            .field("config", &self.ctx.config)
            .finish()
    }
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
                credentials: Arc::new(store),
                local_lock: Arc::new(LocalLock::default()),
                config,
            }),
            headers: Arc::default(),
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
        self.ctx.credentials.location()
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
        Ok(self.header_with_status().await?.0)
    }

    /// `Bearer <access token>` and the status of the credential it came from (for the login's
    /// deadline, say), refreshed first when it expires within the skew.
    pub async fn header_with_status(&self) -> ClaudeCodeAuthResult<(SecretString, TokenStatus)> {
        let component = self.component().await?;
        let before = self.ctx.credentials.current_fingerprint().await;
        if let Some(fingerprint) = before {
            let now = now_ms(&self.ctx.config);
            if let Some(hit) = self.headers.get(fingerprint, component.id(), now) {
                return Ok(hit);
            }
        }
        let (header, status) = component.resolve(&self.ctx).await?;
        // Only a state that did not move during the call is worth remembering (a write of ours
        // or of anyone else's is read through the component next time).
        let after = match before {
            Some(_) => self.ctx.credentials.current_fingerprint().await,
            None => None,
        };
        if let Some(fingerprint) = before.filter(|fp| after == Some(*fp)) {
            let skew_ms =
                i64::try_from(self.ctx.config.expiry_skew.as_millis()).unwrap_or(i64::MAX);
            self.headers
                .put(fingerprint, component.id(), &header, &status, skew_ms);
        }
        Ok((header, status))
    }

    /// Replace a token the API refused (`rejected`, an `Authorization` value this provider gave
    /// out): refresh now, unless the stored token is already another one (a sibling replaced
    /// it meanwhile), as the `claude` CLI does after a 401.
    pub async fn replace_rejected(
        &self,
        rejected: &SecretString,
    ) -> ClaudeCodeAuthResult<RefreshReport> {
        let (current, status) = self.header_with_status().await?;
        if current.expose_secret() != rejected.expose_secret() {
            return Ok(RefreshReport {
                outcome: RefreshOutcome::Adopted,
                status,
            });
        }
        self.refresh(RefreshMode::Force).await
    }

    /// Describe the stored credential without refreshing and without network access.
    pub async fn status(&self) -> ClaudeCodeAuthResult<TokenStatus> {
        self.component().await?.status(&self.ctx).await
    }

    /// Refresh when the token expires within the skew ([`RefreshMode::IfNeeded`]), or whatever
    /// its expiry ([`RefreshMode::Force`], unless another process refreshed while this one
    /// waited for the lock).
    pub async fn refresh(&self, mode: RefreshMode) -> ClaudeCodeAuthResult<RefreshReport> {
        self.component().await?.refresh(&self.ctx, mode).await
    }
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

#[async_trait]
impl CredentialProvider for ClaudeCodeOAuthProvider {
    async fn resolve(&self) -> entelix_core::Result<Credentials> {
        Ok(Credentials {
            header_name: http::header::AUTHORIZATION,
            header_value: self.header_value().await?,
        })
    }
}
