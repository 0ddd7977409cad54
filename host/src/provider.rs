//! [`ClaudeCodeOAuthProvider`]: entelix's `CredentialProvider` over the sandboxed component.

use std::fmt;
use std::sync::Arc;

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
                drain: Arc::default(),
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
        Ok(self.token_with_status().await?.0)
    }

    /// The access token alone and the status of the credential it came from.
    pub async fn token_with_status(&self) -> ClaudeCodeAuthResult<(SecretString, TokenStatus)> {
        let (header, status) = self.header_with_status().await?;
        let token = crate::secret::bearer_token(header.expose_secret()).ok_or_else(|| {
            ClaudeCodeAuthError::Sandbox {
                message: "the component returned a header that is not a bearer token".into(),
            }
        })?;
        Ok((SecretString::from(token.to_owned()), status))
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
            let now = self.ctx.config.now_ms();
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

    /// Stop this provider — and its clones — from starting refreshes, and wait until none of
    /// its refreshes is in flight: sent, with its answer not yet kept. Call it before the process
    /// exits (on `SIGTERM`, say): a refresh token is single-use, and a process that exits while
    /// the answer to its refresh is on its way throws the only live login away.
    ///
    /// From the call on (not only once awaited): a wait for the refresh lock ends at once,
    /// giving back anything taken, a refresh request not sent yet is not sent, and calls that
    /// need a refresh fail with [`ClaudeCodeAuthError::Draining`] — or, while the stored token is
    /// still valid, are answered with it. A header that needs no refresh is served as before.
    /// A refresh already in flight goes on: its answer is kept and its locks are released, then
    /// the returned future resolves (within the refresh timeout, plus the write). There is no way
    /// back: a drained provider stays drained.
    ///
    /// ```no_run
    /// # async fn run(provider: entelix_auth_claude_code::ClaudeCodeOAuthProvider) {
    /// tokio::signal::ctrl_c().await.ok();
    /// provider.drain().await;
    /// std::process::exit(130);
    /// # }
    /// ```
    pub fn drain(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let drain = self.ctx.drain.clone();
        drain.start();
        async move { drain.idle().await }
    }

    /// Refresh when the token expires within the skew ([`RefreshMode::IfNeeded`]), or whatever
    /// its expiry ([`RefreshMode::Force`], unless another process refreshed while this one
    /// waited for the lock).
    pub async fn refresh(&self, mode: RefreshMode) -> ClaudeCodeAuthResult<RefreshReport> {
        self.component().await?.refresh(&self.ctx, mode).await
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
