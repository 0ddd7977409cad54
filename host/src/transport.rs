//! [`RefreshOnUnauthorized`]: what the `claude` CLI does when the API answers 401 — one refresh
//! of the token (unless someone already replaced it) and the request once more — for any entelix
//! [`Transport`]. A token can be revoked before its recorded expiry (a logout elsewhere, the
//! service rotating keys); without this, every request fails until the expiry passes.

use async_trait::async_trait;
use entelix_core::ExecutionContext;
use entelix_core::codecs::EncodedRequest;
use entelix_core::transports::{Transport, TransportResponse, TransportStream};

use secrecy::SecretString;

use crate::error::ClaudeCodeAuthResult;
use crate::provider::ClaudeCodeOAuthProvider;

/// HTTP status of a request whose credential was refused.
const UNAUTHORIZED: u16 = 401;

/// A [`Transport`] whose requests, when answered 401, get one forced refresh of the provider's
/// token and one retry. Wrap the transport that uses the same provider:
///
/// ```no_run
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use entelix_auth_claude_code::{ClaudeCliLogin, ClaudeCodeOAuthProvider, RefreshOnUnauthorized};
/// use entelix_core::transports::DirectTransport;
///
/// let provider = ClaudeCodeOAuthProvider::new(ClaudeCliLogin::find()?.into_store());
/// let direct = DirectTransport::anthropic(Arc::new(provider.clone()))?;
/// let transport = RefreshOnUnauthorized::new(direct, provider);
/// # let _ = transport;
/// # Ok(())
/// # }
/// ```
///
/// A second 401 is returned as it is: the request itself is refused (a missing beta, say), and
/// refreshing again would not help.
///
/// `provider` is anything that gives out `Authorization` values and can replace a rejected
/// one ([`AuthorizationSource`]): a [`ClaudeCodeOAuthProvider`], or a [`crate::BrokerProvider`]
/// inside a sandbox.
#[derive(Debug)]
pub struct RefreshOnUnauthorized<T, P = ClaudeCodeOAuthProvider> {
    inner: T,
    provider: P,
}

/// What [`RefreshOnUnauthorized`] needs of a provider: the `Authorization` value to send, and a
/// way to replace one the API refused.
#[async_trait]
pub trait AuthorizationSource: Send + Sync {
    /// The `Authorization` value to send now.
    async fn authorization(&self) -> ClaudeCodeAuthResult<SecretString>;

    /// Replace `rejected` (a value this source gave out, which a 401 refused), unless it was
    /// replaced already.
    async fn replace_rejected_authorization(
        &self,
        rejected: &SecretString,
    ) -> ClaudeCodeAuthResult<()>;
}

#[async_trait]
impl AuthorizationSource for ClaudeCodeOAuthProvider {
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

impl<T, P> RefreshOnUnauthorized<T, P> {
    /// Wrap `inner`, which sends with `provider`'s credentials.
    pub const fn new(inner: T, provider: P) -> Self {
        Self { inner, provider }
    }

    /// The wrapped transport.
    pub const fn inner(&self) -> &T {
        &self.inner
    }
}

#[async_trait]
impl<T: Transport, P: AuthorizationSource + 'static> Transport for RefreshOnUnauthorized<T, P> {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    async fn send(
        &self,
        request: EncodedRequest,
        ctx: &ExecutionContext,
    ) -> entelix_core::Result<TransportResponse> {
        let used = self.provider.authorization().await?;
        let response = self.inner.send(request.clone(), ctx).await?;
        if response.status != UNAUTHORIZED {
            return Ok(response);
        }
        self.provider.replace_rejected_authorization(&used).await?;
        self.inner.send(request, ctx).await
    }

    async fn send_streaming(
        &self,
        request: EncodedRequest,
        ctx: &ExecutionContext,
    ) -> entelix_core::Result<TransportStream> {
        let used = self.provider.authorization().await?;
        let stream = self.inner.send_streaming(request.clone(), ctx).await?;
        if stream.status != UNAUTHORIZED {
            return Ok(stream);
        }
        drop(stream);
        self.provider.replace_rejected_authorization(&used).await?;
        self.inner.send_streaming(request, ctx).await
    }
}
