//! The component's failures and traps as this crate's error type, preferring what the host
//! recorded (the store's own typed error, the policy's reason for refusing a request) over the
//! component's one-line summary.

use std::io;

use super::state::HostState;
use super::{PACKAGE, wit};
use crate::config::ClaudeCodeOAuthConfig;
use crate::error::ClaudeCodeAuthError;

/// The error for a failure the component reported.
pub(super) fn host_error(
    failure: wit::AuthError,
    state: &mut HostState,
    config: &ClaudeCodeOAuthConfig,
) -> ClaudeCodeAuthError {
    use wit::Cause;
    let (wit::AuthError::Missing(detail)
    | wit::AuthError::Expired(detail)
    | wit::AuthError::Refused(detail)
    | wit::AuthError::SourceUnreachable(detail)) = failure;
    let location = state.store.location();
    let recorded = state.store_error.take();
    let refused = state.policy.refusal();
    let message = detail.message;
    match detail.cause {
        Cause::CredentialsMissing => ClaudeCodeAuthError::CredentialsMissing { path: location },
        Cause::OauthSectionMissing => ClaudeCodeAuthError::OAuthSectionMissing { path: location },
        Cause::RefreshTokenMissing => ClaudeCodeAuthError::RefreshTokenMissing,
        Cause::GrantRejected => ClaudeCodeAuthError::RefreshRejected { message },
        Cause::EndpointRefused => ClaudeCodeAuthError::RefreshRefused { message },
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
            source: io::Error::other(message),
        }),
    }
}

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
        message: format!("the {PACKAGE} component {what}"),
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
