//! [`BrokerProvider`]: the credential source for a process inside a sandbox — an entelix
//! [`CredentialProvider`] that asks a broker for access tokens and never holds a refresh token.
//! The token is kept in memory while it has more than a minute left; a 401 goes to the broker's
//! `POST /v1/refresh` (through [`crate::RefreshOnUnauthorized`]).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use entelix_core::auth::{CredentialProvider, Credentials};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Mutex;

use crate::error::ClaudeCodeAuthResult;
use crate::transport::AuthorizationSource;

use super::client::{BrokerClient, BrokerToken};

/// How long before its expiry a kept token is asked for again.
const ASK_AGAIN_BEFORE: Duration = Duration::from_secs(60);

/// An entelix credential provider backed by a broker (`claude-code-auth serve --socket PATH`).
///
/// ```no_run
/// use std::sync::Arc;
/// use entelix_auth_claude_code::{BrokerProvider, RefreshOnUnauthorized};
/// use entelix_core::transports::DirectTransport;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let provider = BrokerProvider::new("/run/claude-code-auth/broker.sock");
/// let direct = DirectTransport::anthropic(Arc::new(provider.clone()))?;
/// let transport = RefreshOnUnauthorized::new(direct, provider);
/// # let _ = transport;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct BrokerProvider {
    client: BrokerClient,
    kept: Arc<Mutex<Option<BrokerToken>>>,
}

impl BrokerProvider {
    /// A provider asking the broker at `socket`.
    pub fn new(socket: impl Into<std::path::PathBuf>) -> Self {
        Self::with_client(BrokerClient::new(socket))
    }

    /// A provider asking through `client`.
    pub fn with_client(client: BrokerClient) -> Self {
        Self {
            client,
            kept: Arc::default(),
        }
    }

    /// The client it asks through.
    pub const fn client(&self) -> &BrokerClient {
        &self.client
    }

    /// The current access token: the one kept, while it has more than a minute left; else
    /// the broker's.
    pub async fn token(&self) -> ClaudeCodeAuthResult<BrokerToken> {
        let mut kept = self.kept.lock().await;
        if let Some(token) = kept.as_ref().filter(|token| has_time_left(token)) {
            return Ok(token.clone());
        }
        let token = self.client.token().await?;
        *kept = Some(token.clone());
        Ok(token)
    }

    /// `Bearer <access token>`.
    pub async fn header_value(&self) -> ClaudeCodeAuthResult<SecretString> {
        let token = self.token().await?;
        Ok(SecretString::from(format!(
            "Bearer {}",
            token.access_token.expose_secret()
        )))
    }

    /// Replace `rejected` (an `Authorization` value a 401 refused): the broker refreshes once
    /// however many ask, and the new token is kept.
    pub async fn replace_rejected(
        &self,
        rejected: &SecretString,
    ) -> ClaudeCodeAuthResult<BrokerToken> {
        let value = rejected.expose_secret();
        let token = crate::secret::bearer_token(value).unwrap_or(value);
        let fresh = self.client.refresh_rejected(token).await?;
        *self.kept.lock().await = Some(fresh.clone());
        Ok(fresh)
    }
}

fn has_time_left(token: &BrokerToken) -> bool {
    let now_ms = crate::time::now_ms();
    let margin = i64::try_from(ASK_AGAIN_BEFORE.as_millis()).unwrap_or(i64::MAX);
    token
        .expires_at_ms
        .is_some_and(|at| at.saturating_sub(now_ms) > margin)
}

#[async_trait]
impl CredentialProvider for BrokerProvider {
    async fn resolve(&self) -> entelix_core::Result<Credentials> {
        Ok(Credentials {
            header_name: http::header::AUTHORIZATION,
            header_value: self.header_value().await?,
        })
    }
}

#[async_trait]
impl AuthorizationSource for BrokerProvider {
    async fn authorization(&self) -> ClaudeCodeAuthResult<SecretString> {
        self.header_value().await
    }

    async fn replace_rejected_authorization(
        &self,
        rejected: &SecretString,
    ) -> ClaudeCodeAuthResult<()> {
        self.replace_rejected(rejected).await.map(|_| ())
    }
}
