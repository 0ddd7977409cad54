//! `entelix:claude-code-auth@0.3.0`: its bindings, the host side of its `credential-store`
//! import (each method forwards to [`HostState`]), and the conversions between its types and
//! this crate's. Nothing here decides anything: the header check, the reading of a failure and
//! the store's error summaries are version-free (`header.rs`, `failure.rs`), and so are the lock
//! and commit (`state.rs`, `credentials.rs`). A host for another version of the contract adds a
//! module beside this one and points `sandbox::latest` at it; the rest of the crate sees only
//! its own types ([`TokenStatus`], [`RefreshReport`]) through the typed calls below.

use secrecy::SecretString;
use wasmtime::component::Resource;
use zeroize::Zeroizing;

use crate::config::ClaudeCodeOAuthConfig;
use crate::error::ClaudeCodeAuthResult;
use crate::status::{RefreshMode, RefreshOutcome, RefreshReport, TokenStatus};

use super::credentials;
use super::failure::{Cause, Failure, StoreFailure};
use super::header::checked_header;
use super::state::{ComponentLock, HostState};
use super::{CallContext, ProviderComponent};

wasmtime::component::bindgen!({
    path: "wit",
    world: "entelix:claude-code-auth/provider-host@0.3.0",
    imports: { default: async },
    exports: { default: async },
    with: {
        "entelix:claude-code-auth/credential-store.refresh-lock": super::state::ComponentLock,
    },
});

use entelix::claude_code_auth::credential_store::{self as store_wit, Kept, StoreError};
use exports::entelix::claude_code_auth::provider as wit;
pub(super) use wit::{AuthError, Config};

/// The WIT package this module binds, for messages.
pub(crate) const PACKAGE: &str = "entelix:claude-code-auth@0.3.0";

/// The typed calls the rest of the crate makes.
impl ProviderComponent {
    /// The `authorization` header value and the status of the credential it came from.
    pub(crate) async fn resolve(
        &self,
        ctx: &CallContext,
    ) -> ClaudeCodeAuthResult<(SecretString, TokenStatus)> {
        let resolution = self
            .call(ctx, |bindings, store, config| {
                Box::pin(
                    bindings
                        .entelix_claude_code_auth_provider()
                        .call_resolve_with_status(store, config),
                )
            })
            .await?;
        let header = checked_header(&resolution.header.name, resolution.header.value)?;
        Ok((SecretString::from(header), token_status(resolution.status)))
    }

    /// The stored credential's status, without refreshing or network access.
    pub(crate) async fn status(&self, ctx: &CallContext) -> ClaudeCodeAuthResult<TokenStatus> {
        self.call(ctx, |bindings, store, config| {
            Box::pin(
                bindings
                    .entelix_claude_code_auth_provider()
                    .call_status(store, config),
            )
        })
        .await
        .map(token_status)
    }

    /// A refresh in `mode`.
    pub(crate) async fn refresh(
        &self,
        ctx: &CallContext,
        mode: RefreshMode,
    ) -> ClaudeCodeAuthResult<RefreshReport> {
        let report = self
            .call(ctx, move |bindings, store, config| {
                let provider = bindings.entelix_claude_code_auth_provider();
                match mode {
                    RefreshMode::IfNeeded => Box::pin(provider.call_ensure_fresh(store, config)),
                    RefreshMode::Force => Box::pin(provider.call_force_refresh(store, config)),
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

/// The contract's `config` for `config`.
pub(super) fn config(config: &ClaudeCodeOAuthConfig) -> wit::Config {
    wit::Config {
        token_url: config.token_url.clone(),
        client_id: config.client_id.clone(),
        expiry_skew_ms: crate::time::millis(config.expiry_skew),
        timeout_ms: crate::time::millis(config.refresh_timeout),
        user_agent: Some(config.user_agent.clone()),
        max_answer_bytes: u64::try_from(config.max_answer_bytes).unwrap_or(u64::MAX),
    }
}

fn token_status(status: wit::TokenStatus) -> TokenStatus {
    TokenStatus {
        logged_in: status.logged_in,
        expires_at_ms: status.expires_at_ms,
        expired: status.expired,
        needs_refresh: status.needs_refresh,
        has_refresh_token: status.has_refresh_token,
        subscription_type: status.subscription_type,
        rate_limit_tier: status.rate_limit_tier,
        scopes: status.scopes,
        login_expires_at_ms: status.login_expires_at_ms,
    }
}

impl From<wit::AuthError> for Failure {
    fn from(failure: wit::AuthError) -> Self {
        // The case is the component's own reading; the host's error says how to react.
        let (wit::AuthError::Missing(detail)
        | wit::AuthError::Expired(detail)
        | wit::AuthError::Refused(detail)
        | wit::AuthError::SourceUnreachable(detail)) = failure;
        Failure {
            cause: cause(detail.cause),
            message: detail.message,
        }
    }
}

fn cause(cause: wit::Cause) -> Cause {
    match cause {
        wit::Cause::CredentialsMissing => Cause::CredentialsMissing,
        wit::Cause::OauthSectionMissing => Cause::OauthSectionMissing,
        wit::Cause::RefreshTokenMissing => Cause::RefreshTokenMissing,
        wit::Cause::LoggedOut => Cause::LoggedOut,
        wit::Cause::NotRefreshable => Cause::NotRefreshable,
        wit::Cause::DocumentInvalid => Cause::DocumentInvalid,
        wit::Cause::GrantRejected => Cause::GrantRejected,
        wit::Cause::EndpointRefused => Cause::EndpointRefused,
        wit::Cause::EndpointUnavailable => Cause::EndpointUnavailable,
        wit::Cause::AnswerInvalid => Cause::AnswerInvalid,
        wit::Cause::StoreFailed => Cause::StoreFailed,
        wit::Cause::LockTimeout => Cause::LockTimeout,
    }
}

impl From<StoreFailure> for StoreError {
    fn from(failure: StoreFailure) -> Self {
        match failure {
            StoreFailure::NotFound => StoreError::NotFound,
            StoreFailure::Corrupt(why) => StoreError::Corrupt(why),
            StoreFailure::ReadOnly(why) => StoreError::ReadOnly(why),
            StoreFailure::LockTimeout(why) => StoreError::LockTimeout(why),
            StoreFailure::Conflict(why) => StoreError::Conflict(why),
            StoreFailure::Unavailable(why) => StoreError::Unavailable(why),
        }
    }
}

impl store_wit::Host for HostState {
    async fn load(&mut self) -> Result<String, StoreError> {
        self.store_error = None;
        match self.load_document().await {
            Ok(Some(document)) => Ok(document.to_string()),
            Ok(None) => Err(StoreError::NotFound),
            Err(error) => Err(self.record(error).into()),
        }
    }

    async fn lock(&mut self) -> Result<Resource<ComponentLock>, StoreError> {
        self.store_error = None;
        match self.lock_for_component().await {
            Ok(Some(handle)) => Ok(handle),
            Ok(None) => Err(StoreError::Conflict(
                "a refresh in this process finished while waiting for the lock".into(),
            )),
            Err(error) => Err(self.record(error).into()),
        }
    }
}

impl store_wit::HostRefreshLock for HostState {
    async fn prepare(
        &mut self,
        lock: Resource<ComponentLock>,
        size: u64,
    ) -> Result<(), StoreError> {
        self.store_error = None;
        let prepared = HostState::prepare(self, &lock, size).await;
        prepared.map_err(|error| self.record(error).into())
    }

    async fn load_for_write(
        &mut self,
        lock: Resource<ComponentLock>,
    ) -> Result<String, StoreError> {
        self.store_error = None;
        match HostState::load_for_write(self, &lock).await {
            Ok(Some(document)) => Ok(document.to_string()),
            Ok(None) => Err(StoreError::NotFound),
            Err(error) => Err(self.record(error).into()),
        }
    }

    async fn commit(
        &mut self,
        lock: Resource<ComponentLock>,
        document: String,
    ) -> Result<Kept, StoreError> {
        self.store_error = None;
        // The document holds freshly rotated tokens: this copy is wiped once kept.
        match HostState::commit(self, &lock, Zeroizing::new(document)).await {
            Ok(credentials::Kept::Stored) => Ok(Kept::Stored),
            Ok(credentials::Kept::Rescued) => Ok(Kept::Rescued),
            Err(error) => Err(self.record(error).into()),
        }
    }

    async fn drop(&mut self, lock: Resource<ComponentLock>) -> wasmtime::Result<()> {
        self.unlock(lock).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each of this version's causes becomes the host's cause of the same name.
    #[test]
    fn each_cause_keeps_its_name() {
        use wit::Cause as W;
        let all = [
            W::CredentialsMissing,
            W::OauthSectionMissing,
            W::RefreshTokenMissing,
            W::LoggedOut,
            W::NotRefreshable,
            W::DocumentInvalid,
            W::GrantRejected,
            W::EndpointRefused,
            W::EndpointUnavailable,
            W::AnswerInvalid,
            W::StoreFailed,
            W::LockTimeout,
        ];
        for theirs in all {
            let ours = format!("{:?}", cause(theirs));
            let name = format!("{theirs:?}");
            assert!(name.ends_with(&ours), "{name} became {ours}");
        }
    }
}
