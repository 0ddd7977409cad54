//! A call that trapped, as this crate's error type: named by what the guest did, not by
//! wasmtime's internals. Independent of the contract's version.

use super::PACKAGE;
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
