//! A call that failed, as this crate's error type: a trap named by what the guest did, and a
//! failure the component reported read together with what the host knows (the store's own
//! typed error, the policy's reason for refusing a request). Independent of the contract's
//! version: a version's module converts its `auth-error` into a [`Failure`].

use super::CONTRACT;
use super::refusal::Refusal;
use super::state::HostState;
use crate::config::ClaudeCodeOAuthConfig;
use crate::error::ClaudeCodeAuthError;

/// The error for a call that trapped: named by what the guest did, not by wasmtime's internals.
pub(super) fn trap_error(
    error: &wasmtime::Error,
    config: &ClaudeCodeOAuthConfig,
) -> ClaudeCodeAuthError {
    let what = match error.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::OutOfFuel) => format!(
            "used up its CPU budget ({} units of fuel) and was stopped",
            config.fuel
        ),
        Some(wasmtime::Trap::UnreachableCodeReached) => {
            "crashed (a panic or an abort inside the component)".to_owned()
        }
        Some(trap) => format!("trapped ({trap})"),
        // The limiter's refusal is the root of a chain that only `Debug` shows in full.
        None if format!("{error:?}").contains("growing memory") => format!(
            "exceeded its memory limit of {} MiB and was stopped",
            config.memory_limit >> 20
        ),
        None => format!("failed: {}", first_line(error)),
    };
    ClaudeCodeAuthError::Sandbox {
        message: format!("the {CONTRACT} component {what}"),
    }
}

/// The first line of an error: wasmtime appends a multi-line guest backtrace.
fn first_line(error: &wasmtime::Error) -> String {
    error
        .to_string()
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// What the component reported when it failed: its reading of the cause and its one-line
/// summary. The case it put it under (missing, expired, …) is not kept: the host's error says
/// how to react through `reaction()`, and the tests below check the two agree.
pub(super) struct Failure {
    pub(super) cause: Cause,
    pub(super) message: String,
}

/// The causes a component can report, as every contract version so far names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Cause {
    CredentialsMissing,
    OauthSectionMissing,
    RefreshTokenMissing,
    LoggedOut,
    NotRefreshable,
    DocumentInvalid,
    GrantRejected,
    EndpointRefused,
    EndpointUnavailable,
    AnswerInvalid,
    StoreFailed,
    LockTimeout,
}

/// How a store error reaches the component, whatever the contract calls its cases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum StoreFailure {
    NotFound,
    Corrupt(String),
    ReadOnly(String),
    LockTimeout(String),
    Conflict(String),
    Unavailable(String),
}

impl HostState {
    /// The error for a failure the component reported, preferring what the host recorded over
    /// the component's summary.
    pub(super) fn component_error(
        &mut self,
        failure: Failure,
        config: &ClaudeCodeOAuthConfig,
    ) -> ClaudeCodeAuthError {
        let known = Known {
            nothing_stored: self.credentials.nothing_stored(),
            location: self.credentials.location(),
            recorded: self.store_error.take(),
            refused: self.policy.refusal(),
        };
        error_for(failure, known, config)
    }

    /// Keep `error` for the host and give the component its summary.
    pub(super) fn record(&mut self, error: ClaudeCodeAuthError) -> StoreFailure {
        let summary = error.to_string();
        let failure = match &error {
            ClaudeCodeAuthError::CredentialsMissing { .. } => StoreFailure::NotFound,
            ClaudeCodeAuthError::InvalidStorage { .. }
            | ClaudeCodeAuthError::InvalidDocument { .. } => StoreFailure::Corrupt(summary),
            ClaudeCodeAuthError::ReadOnly { .. } => StoreFailure::ReadOnly(summary),
            ClaudeCodeAuthError::LockTimeout { .. } => StoreFailure::LockTimeout(summary),
            ClaudeCodeAuthError::StoreConflict { .. } => StoreFailure::Conflict(summary),
            _ => StoreFailure::Unavailable(summary),
        };
        self.store_error = Some(error);
        failure
    }
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

/// How the component's `logged-out` message starts when the CLI ended the login at its time
/// limit (the contract has no cause of its own for it; the guest's `TIME_LIMIT`, checked below).
const LOGIN_TIME_LIMIT: &str = "not logged in: the login reached its time limit";

/// The error for the component's `failure`, given what the host knows.
fn error_for(
    failure: Failure,
    known: Known,
    config: &ClaudeCodeOAuthConfig,
) -> ClaudeCodeAuthError {
    let Failure { cause, message } = failure;
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

    /// The host's name for a guest cause, and its place in [`ALL`]. Exhaustive, so a new cause
    /// fails to compile here until it is added, and then fails the test until it is in `ALL`.
    fn host_cause(cause: GuestCause) -> (Cause, usize) {
        match cause {
            GuestCause::CredentialsMissing => (Cause::CredentialsMissing, 0),
            GuestCause::OAuthSectionMissing => (Cause::OauthSectionMissing, 1),
            GuestCause::RefreshTokenMissing => (Cause::RefreshTokenMissing, 2),
            GuestCause::LoggedOut => (Cause::LoggedOut, 3),
            GuestCause::NotRefreshable => (Cause::NotRefreshable, 4),
            GuestCause::DocumentInvalid => (Cause::DocumentInvalid, 5),
            GuestCause::GrantRejected => (Cause::GrantRejected, 6),
            GuestCause::EndpointRefused => (Cause::EndpointRefused, 7),
            GuestCause::EndpointUnavailable => (Cause::EndpointUnavailable, 8),
            GuestCause::AnswerInvalid => (Cause::AnswerInvalid, 9),
            GuestCause::StoreFailed => (Cause::StoreFailed, 10),
            GuestCause::LockTimeout => (Cause::LockTimeout, 11),
        }
    }

    /// The `auth-error` case the component reports for a guest kind, as a reaction.
    fn reaction(kind: Kind) -> Reaction {
        match kind {
            Kind::Missing => Reaction::Missing,
            Kind::Expired => Reaction::Expired,
            Kind::Refused => Reaction::Refused,
            Kind::SourceUnreachable => Reaction::Unreachable,
        }
    }

    fn known(recorded: Option<ClaudeCodeAuthError>) -> Known {
        Known {
            nothing_stored: ClaudeCodeAuthError::CredentialsMissing {
                path: "store".into(),
            },
            location: "store".into(),
            recorded,
            refused: None,
        }
    }

    fn failure(cause: Cause, message: &str) -> Failure {
        Failure {
            cause,
            message: message.into(),
        }
    }

    #[test]
    fn the_host_reacts_to_each_cause_as_the_component_does() {
        let places: Vec<usize> = ALL.iter().map(|c| host_cause(*c).1).collect();
        assert_eq!(
            places,
            (0..ALL.len()).collect::<Vec<_>>(),
            "ALL is in order"
        );
        let config = ClaudeCodeOAuthConfig::default();
        for cause in ALL {
            let error = error_for(failure(host_cause(cause).0, "why"), known(None), &config);
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
        let recorded = ClaudeCodeAuthError::ReadOnly {
            store: "kept".into(),
        };
        let error = error_for(
            failure(Cause::StoreFailed, "why"),
            known(Some(recorded)),
            &config,
        );
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
        let message = format!("{LOGIN_TIME_LIMIT} (…); run `claude login`");
        let ended = error_for(failure(Cause::LoggedOut, &message), known(None), &config);
        assert!(
            matches!(ended, ClaudeCodeAuthError::LoginEnded { .. }),
            "{ended:?}"
        );
        let blank = error_for(
            failure(Cause::LoggedOut, "not logged in"),
            known(None),
            &config,
        );
        assert!(
            matches!(blank, ClaudeCodeAuthError::LoggedOut { .. }),
            "{blank:?}"
        );
    }
}
