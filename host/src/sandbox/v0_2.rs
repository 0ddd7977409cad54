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
use crate::store::handover::{self, Verdict};

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
        expiry_skew_ms: super::millis(config.expiry_skew),
        timeout_ms: super::millis(config.refresh_timeout),
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

    /// The stored document, and what a rescue file says of it: `Some(document)` when the rescued
    /// document supersedes the stored one.
    async fn documents(
        &mut self,
    ) -> Result<(Option<Zeroizing<String>>, Option<Zeroizing<String>>), ClaudeCodeAuthError> {
        let stored = self.credentials.load_document().await?.map(Zeroizing::new);
        let rescued = self.rescue.as_ref().and_then(|r| r.read());
        let adopt = rescued.and_then(|(kept, replaced)| {
            match handover::judge(
                &kept,
                replaced.as_deref(),
                stored.as_deref().map(String::as_str),
            ) {
                Verdict::Adopt(document) => Some(document),
                Verdict::AlreadyThere | Verdict::Obsolete => None,
            }
        });
        Ok((stored, adopt))
    }

    /// Under a fresh refresh lock: put a rescued login back into the store, or drop a rescue
    /// file that is obsolete. One that cannot go back yet stays, and is answered by `load`.
    async fn hand_over_rescue(&mut self, held: &mut HeldLock) {
        let Some(rescue) = self.rescue.clone() else {
            return;
        };
        let Some((kept, replaced)) = rescue.read() else {
            return;
        };
        let stored = self
            .credentials
            .load_document()
            .await
            .ok()
            .flatten()
            .map(Zeroizing::new);
        match handover::judge(
            &kept,
            replaced.as_deref(),
            stored.as_deref().map(String::as_str),
        ) {
            Verdict::Adopt(document) => {
                let credentials = self.credentials.clone();
                let lock = &mut held.lock;
                let written = async {
                    credentials
                        .prepare_save(lock, document.len() as u64)
                        .await?;
                    credentials.lock_write(lock, self.lock_timeout).await?;
                    credentials.save_refreshed(lock, &document).await
                }
                .await;
                match written {
                    Ok(()) => {
                        tracing::warn!(
                            rescue = %rescue.path().display(),
                            store = %self.credentials.location(),
                            "a refreshed credential the store had refused was written back from its rescue file"
                        );
                        rescue.remove();
                    }
                    Err(error) => tracing::warn!(
                        error = %error,
                        rescue = %rescue.path().display(),
                        "the store still refuses the rescued credential; it stays in its rescue file"
                    ),
                }
            }
            Verdict::AlreadyThere | Verdict::Obsolete => rescue.remove(),
        }
    }
}

impl store_wit::Host for HostState {
    async fn load(&mut self) -> Result<String, StoreError> {
        self.store_error = None;
        let (mut stored, mut rescued) = match self.documents().await {
            Ok(found) => found,
            Err(error) => return Err(self.record(error)),
        };
        // A rescued login goes back into the store at the first chance, before anything (the
        // `claude` CLI) presents the spent token still stored there.
        if rescued.is_some() && self.locks_held == 0 && !self.handover_tried {
            self.handover_tried = true;
            if let Ok(Some(mut held)) = self.take_lock().await {
                self.hand_over_rescue(&mut held).await;
                held.release().await;
                drop(held);
                self.policy.set_send_check(None);
                // Our own release is not "a refresh finished meanwhile".
                self.finished_seen = self.local_lock.finished();
                (stored, rescued) = match self.documents().await {
                    Ok(found) => found,
                    Err(error) => return Err(self.record(error)),
                };
            }
        }
        match rescued.or(stored) {
            Some(document) => Ok(document.to_string()),
            None => Err(StoreError::NotFound),
        }
    }

    async fn lock(&mut self) -> Result<Resource<HeldLock>, StoreError> {
        self.store_error = None;
        let mut held = match self.take_lock().await {
            Ok(Some(held)) => held,
            Ok(None) => {
                return Err(StoreError::Conflict(
                    "a refresh in this process finished while waiting for the lock".into(),
                ));
            }
            Err(error) => return Err(self.record(error)),
        };
        self.hand_over_rescue(&mut held).await;
        let handle = self
            .table
            .push(held)
            .map_err(|e| StoreError::Unavailable(format!("cannot hand out the lock: {e}")))?;
        self.locks_held += 1;
        Ok(handle)
    }
}

impl store_wit::HostRefreshLock for HostState {
    async fn prepare(&mut self, lock: Resource<HeldLock>, size: u64) -> Result<(), StoreError> {
        self.store_error = None;
        let credentials = self.credentials.clone();
        let held = self.table.get_mut(&lock).map_err(unavailable)?;
        let prepared = credentials.prepare_save(&mut held.lock, size).await;
        prepared.map_err(|error| {
            // Shown before anything was spent: say so.
            let error = match error {
                ClaudeCodeAuthError::Io { path, source } => {
                    ClaudeCodeAuthError::NotWritable { path, source }
                }
                other => other,
            };
            self.record(error)
        })
    }

    async fn load_for_write(&mut self, lock: Resource<HeldLock>) -> Result<String, StoreError> {
        self.store_error = None;
        let (credentials, wait) = (self.credentials.clone(), self.lock_timeout);
        let held = self.table.get_mut(&lock).map_err(unavailable)?;
        let locked = credentials.lock_write(&mut held.lock, wait).await;
        if let Err(error) = locked {
            return Err(self.record(error));
        }
        store_wit::Host::load(self).await
    }

    async fn commit(
        &mut self,
        lock: Resource<HeldLock>,
        document: String,
    ) -> Result<Kept, StoreError> {
        self.store_error = None;
        // The document holds freshly rotated tokens: wipe this copy once kept.
        let document = Zeroizing::new(document);
        let credentials = self.credentials.clone();
        let held = self.table.get_mut(&lock).map_err(unavailable)?;
        let error = match credentials.save_refreshed(&mut held.lock, &document).await {
            Ok(()) => {
                if let Some(rescue) = &self.rescue {
                    // Whatever a rescue file held is older than what the store now holds.
                    rescue.remove();
                }
                return Ok(Kept::Stored);
            }
            Err(error) => error,
        };
        // The refresh token the store holds is spent: the new one must survive its refusal.
        let replaced = credentials
            .load_document()
            .await
            .ok()
            .flatten()
            .and_then(|text| handover::refresh_token_digest(&Zeroizing::new(text)));
        let rescued = match &self.rescue {
            Some(rescue) => rescue
                .write(&document, replaced)
                .map(|()| rescue.path().display().to_string()),
            None => Err(std::io::Error::other(
                "no state directory for a rescue file",
            )),
        };
        match rescued {
            Ok(path) => {
                tracing::warn!(
                    error = %error,
                    rescue = %path,
                    "the store refused the refreshed credential; it is kept in a rescue file and written back under the next refresh lock"
                );
                Ok(Kept::Rescued)
            }
            Err(e) => {
                tracing::error!(error = %error, rescue_error = %e, "the refreshed credential could not be kept anywhere");
                Err(self.record(error))
            }
        }
    }

    async fn drop(&mut self, lock: Resource<HeldLock>) -> wasmtime::Result<()> {
        let mut held = self.table.delete(lock)?;
        held.release().await;
        drop(held);
        self.locks_held = self.locks_held.saturating_sub(1);
        if self.locks_held == 0 {
            self.policy.set_send_check(None);
        }
        Ok(())
    }
}

fn unavailable(error: wasmtime::component::ResourceTableError) -> StoreError {
    StoreError::Unavailable(format!("unknown refresh lock: {error}"))
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
}
