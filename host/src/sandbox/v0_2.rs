//! `entelix:claude-code-auth@0.2.0`: its bindings, the host side of its `credential-store`
//! import, and every conversion between its types and this crate's. A host for another version
//! of the contract adds a module beside this one; the rest of the crate sees only its own types
//! ([`TokenStatus`], [`RefreshReport`], [`ClaudeCodeAuthError`]) through the typed calls below.

use secrecy::SecretString;
use wasmtime::component::Resource;
use zeroize::Zeroizing;

use crate::config::ClaudeCodeOAuthConfig;
use crate::error::ClaudeCodeAuthError;
use crate::error::ClaudeCodeAuthResult;
use crate::status::{RefreshMode, RefreshOutcome, RefreshReport, TokenStatus};

use super::credentials;
use super::refusal::Refusal;
use super::state::{HeldLock, HostState};
use super::{CallContext, ProviderComponent};

wasmtime::component::bindgen!({
    path: "wit",
    world: "entelix:claude-code-auth/provider-host@0.2.0",
    imports: { default: async },
    exports: { default: async },
    with: {
        "entelix:claude-code-auth/credential-store.refresh-lock": super::state::HeldLock,
    },
});

use entelix::claude_code_auth::credential_store::{self as store_wit, Kept, StoreError};
use exports::entelix::claude_code_auth::provider as wit;

/// The WIT package this module binds, for messages.
pub(crate) const PACKAGE: &str = "entelix:claude-code-auth@0.2.0";

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
        let header = checked_header(resolution.header)?;
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
pub(super) fn wit_config(config: &ClaudeCodeOAuthConfig) -> wit::Config {
    wit::Config {
        token_url: config.token_url.clone(),
        client_id: config.client_id.clone(),
        expiry_skew_ms: crate::time::millis(config.expiry_skew),
        timeout_ms: crate::time::millis(config.refresh_timeout),
        user_agent: Some(config.user_agent.clone()),
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

/// Longest bearer token accepted from the component.
const MAX_TOKEN_BYTES: usize = 16 * 1024;

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

/// The error for a failure the component reported, preferring what the host recorded (the
/// store's own typed error, the policy's reason for refusing a request) over the component's
/// one-line summary.
pub(super) fn host_error(
    failure: wit::AuthError,
    state: &mut HostState,
    config: &ClaudeCodeOAuthConfig,
) -> ClaudeCodeAuthError {
    // The case the component chose is its own reading of the cause; the host's error says how
    // to react through `reaction()` (tests below check the two agree).
    let (wit::AuthError::Missing(detail)
    | wit::AuthError::Expired(detail)
    | wit::AuthError::Refused(detail)
    | wit::AuthError::SourceUnreachable(detail)) = failure;
    let known = Known {
        nothing_stored: state.credentials.nothing_stored(),
        location: state.credentials.location(),
        recorded: state.store_error.take(),
        refused: state.policy.refusal(),
    };
    error_for(detail.cause, detail.message, known, config)
}

/// What the host knows beside a failure the component reported.
struct Known {
    /// The store's error for "nothing stored".
    nothing_stored: ClaudeCodeAuthError,
    /// Where the store keeps the credential.
    location: String,
    /// The store's own error, if a store call failed.
    recorded: Option<ClaudeCodeAuthError>,
    /// Why the host refused or failed the component's request, if it did.
    refused: Option<Refusal>,
}

/// The error for the component's `cause` and `message`, given what the host knows.
/// How the component's `logged-out` message starts when the CLI ended the login at its time
/// limit (the contract has no cause of its own for it; the guest's `TIME_LIMIT`, checked below).
const LOGIN_TIME_LIMIT: &str = "not logged in: the login reached its time limit";

fn error_for(
    cause: wit::Cause,
    message: String,
    known: Known,
    config: &ClaudeCodeOAuthConfig,
) -> ClaudeCodeAuthError {
    use wit::Cause;
    let Known {
        nothing_stored,
        location,
        recorded,
        refused,
    } = known;
    match cause {
        Cause::CredentialsMissing => nothing_stored,
        Cause::OauthSectionMissing => ClaudeCodeAuthError::OAuthSectionMissing { path: location },
        Cause::RefreshTokenMissing => ClaudeCodeAuthError::RefreshTokenMissing,
        Cause::LoggedOut if message.starts_with(LOGIN_TIME_LIMIT) => {
            ClaudeCodeAuthError::LoginEnded { path: location }
        }
        Cause::LoggedOut => ClaudeCodeAuthError::LoggedOut { path: location },
        Cause::NotRefreshable => ClaudeCodeAuthError::NotRefreshable { from: location },
        Cause::GrantRejected => ClaudeCodeAuthError::RefreshRejected { message },
        Cause::EndpointRefused => match refused {
            Some(refusal) => refusal.into_error(&config.token_url),
            None => ClaudeCodeAuthError::RefreshRefused { message },
        },
        Cause::EndpointUnavailable | Cause::AnswerInvalid => match refused {
            Some(refusal) => refusal.into_error(&config.token_url),
            None => ClaudeCodeAuthError::RefreshHttp { message },
        },
        Cause::DocumentInvalid => recorded.unwrap_or(ClaudeCodeAuthError::InvalidDocument {
            path: location,
            problem: message,
        }),
        Cause::LockTimeout => recorded.unwrap_or(ClaudeCodeAuthError::LockTimeout {
            lock: location,
            waited: config.lock_timeout,
        }),
        Cause::StoreFailed => recorded.unwrap_or_else(|| ClaudeCodeAuthError::Io {
            path: location,
            source: std::io::Error::other(message),
        }),
    }
}

impl HostState {
    /// Keep `error` for the host and give the component its summary.
    fn record(&mut self, error: ClaudeCodeAuthError) -> StoreError {
        let summary = error.to_string();
        let wit = match &error {
            ClaudeCodeAuthError::CredentialsMissing { .. } => StoreError::NotFound,
            ClaudeCodeAuthError::InvalidStorage { .. }
            | ClaudeCodeAuthError::InvalidDocument { .. } => StoreError::Corrupt(summary),
            ClaudeCodeAuthError::ReadOnly { .. } => StoreError::ReadOnly(summary),
            ClaudeCodeAuthError::LockTimeout { .. } => StoreError::LockTimeout(summary),
            ClaudeCodeAuthError::StoreConflict { .. } => StoreError::Conflict(summary),
            _ => StoreError::Unavailable(summary),
        };
        self.store_error = Some(error);
        wit
    }
}

impl store_wit::Host for HostState {
    async fn load(&mut self) -> Result<String, StoreError> {
        self.store_error = None;
        match self.load_document().await {
            Ok(Some(document)) => Ok(document.to_string()),
            Ok(None) => Err(StoreError::NotFound),
            Err(error) => Err(self.record(error)),
        }
    }

    async fn lock(&mut self) -> Result<Resource<HeldLock>, StoreError> {
        self.store_error = None;
        match self.lock_for_component().await {
            Ok(Some(handle)) => Ok(handle),
            Ok(None) => Err(StoreError::Conflict(
                "a refresh in this process finished while waiting for the lock".into(),
            )),
            Err(error) => Err(self.record(error)),
        }
    }
}

impl store_wit::HostRefreshLock for HostState {
    async fn prepare(&mut self, lock: Resource<HeldLock>, size: u64) -> Result<(), StoreError> {
        self.store_error = None;
        let prepared = HostState::prepare(self, &lock, size).await;
        prepared.map_err(|error| self.record(error))
    }

    async fn load_for_write(&mut self, lock: Resource<HeldLock>) -> Result<String, StoreError> {
        self.store_error = None;
        match HostState::load_for_write(self, &lock).await {
            Ok(Some(document)) => Ok(document.to_string()),
            Ok(None) => Err(StoreError::NotFound),
            Err(error) => Err(self.record(error)),
        }
    }

    async fn commit(
        &mut self,
        lock: Resource<HeldLock>,
        document: String,
    ) -> Result<Kept, StoreError> {
        self.store_error = None;
        // The document holds freshly rotated tokens: this copy is wiped once kept.
        match HostState::commit(self, &lock, Zeroizing::new(document)).await {
            Ok(credentials::Kept::Stored) => Ok(Kept::Stored),
            Ok(credentials::Kept::Rescued) => Ok(Kept::Rescued),
            Err(error) => Err(self.record(error)),
        }
    }

    async fn drop(&mut self, lock: Resource<HeldLock>) -> wasmtime::Result<()> {
        self.unlock(lock).await
    }
}

#[cfg(test)]
mod tests {
    use claude_code_auth_guest::failure::{Cause as GuestCause, Kind};

    use super::*;
    use crate::error::Reaction;

    /// Every cause the component can report, in the guest's own type.
    const ALL: [GuestCause; 12] = [
        GuestCause::CredentialsMissing,
        GuestCause::OAuthSectionMissing,
        GuestCause::RefreshTokenMissing,
        GuestCause::LoggedOut,
        GuestCause::NotRefreshable,
        GuestCause::DocumentInvalid,
        GuestCause::GrantRejected,
        GuestCause::EndpointRefused,
        GuestCause::EndpointUnavailable,
        GuestCause::AnswerInvalid,
        GuestCause::StoreFailed,
        GuestCause::LockTimeout,
    ];

    /// The contract's name for a guest cause, and its place in [`ALL`]. Exhaustive, so a new
    /// cause fails to compile here until it is added, and then fails the test until it is in
    /// `ALL`.
    fn wit_cause(cause: GuestCause) -> (wit::Cause, usize) {
        match cause {
            GuestCause::CredentialsMissing => (wit::Cause::CredentialsMissing, 0),
            GuestCause::OAuthSectionMissing => (wit::Cause::OauthSectionMissing, 1),
            GuestCause::RefreshTokenMissing => (wit::Cause::RefreshTokenMissing, 2),
            GuestCause::LoggedOut => (wit::Cause::LoggedOut, 3),
            GuestCause::NotRefreshable => (wit::Cause::NotRefreshable, 4),
            GuestCause::DocumentInvalid => (wit::Cause::DocumentInvalid, 5),
            GuestCause::GrantRejected => (wit::Cause::GrantRejected, 6),
            GuestCause::EndpointRefused => (wit::Cause::EndpointRefused, 7),
            GuestCause::EndpointUnavailable => (wit::Cause::EndpointUnavailable, 8),
            GuestCause::AnswerInvalid => (wit::Cause::AnswerInvalid, 9),
            GuestCause::StoreFailed => (wit::Cause::StoreFailed, 10),
            GuestCause::LockTimeout => (wit::Cause::LockTimeout, 11),
        }
    }

    /// The WIT `auth-error` case the component reports for a guest kind, as a reaction.
    fn reaction(kind: Kind) -> Reaction {
        match kind {
            Kind::Missing => Reaction::Missing,
            Kind::Expired => Reaction::Expired,
            Kind::Refused => Reaction::Refused,
            Kind::SourceUnreachable => Reaction::Unreachable,
        }
    }

    #[test]
    fn the_host_reacts_to_each_cause_as_the_component_does() {
        let places: Vec<usize> = ALL.iter().map(|c| wit_cause(*c).1).collect();
        assert_eq!(
            places,
            (0..ALL.len()).collect::<Vec<_>>(),
            "ALL is in order"
        );
        let config = ClaudeCodeOAuthConfig::default();
        for cause in ALL {
            let known = Known {
                nothing_stored: ClaudeCodeAuthError::CredentialsMissing {
                    path: "store".into(),
                },
                location: "store".into(),
                recorded: None,
                refused: None,
            };
            let error = error_for(wit_cause(cause).0, "why".into(), known, &config);
            assert_eq!(
                error.reaction(),
                reaction(cause.kind()),
                "{cause:?} became {error:?}"
            );
        }
    }

    #[test]
    fn a_store_error_the_host_recorded_is_the_error_given() {
        let config = ClaudeCodeOAuthConfig::default();
        let known = Known {
            nothing_stored: ClaudeCodeAuthError::CredentialsMissing {
                path: "store".into(),
            },
            location: "store".into(),
            recorded: Some(ClaudeCodeAuthError::ReadOnly {
                store: "kept".into(),
            }),
            refused: None,
        };
        let error = error_for(wit::Cause::StoreFailed, "why".into(), known, &config);
        assert!(
            matches!(&error, ClaudeCodeAuthError::ReadOnly { store } if store == "kept"),
            "{error:?}"
        );
    }

    /// The component's words for a login ended at its time limit are the ones the host reads.
    #[test]
    fn a_login_ended_at_its_time_limit_is_told_apart() {
        assert_eq!(LOGIN_TIME_LIMIT, claude_code_auth_guest::engine::TIME_LIMIT);
        let config = ClaudeCodeOAuthConfig::default();
        let known = || Known {
            nothing_stored: ClaudeCodeAuthError::CredentialsMissing {
                path: "store".into(),
            },
            location: "store".into(),
            recorded: None,
            refused: None,
        };
        let message = format!("{LOGIN_TIME_LIMIT} (…); run `claude login`");
        let ended = error_for(wit::Cause::LoggedOut, message, known(), &config);
        assert!(
            matches!(ended, ClaudeCodeAuthError::LoginEnded { .. }),
            "{ended:?}"
        );
        let blank = error_for(
            wit::Cause::LoggedOut,
            "not logged in".into(),
            known(),
            &config,
        );
        assert!(
            matches!(blank, ClaudeCodeAuthError::LoggedOut { .. }),
            "{blank:?}"
        );
    }
}
