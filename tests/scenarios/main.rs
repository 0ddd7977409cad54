//! The end-to-end scenarios, one module per area, in one test binary (each binary links
//! wasmtime: one binary is one link). They run the library over real files and loopback
//! servers, and the `claude-code-auth` binary cargo builds for them as real processes.
//!
//! A test that runs a body in a child process (`--exact module::name --ignored`) names it with
//! its module path.

// Tests panic to report failure.
#![allow(clippy::unwrap_used)]

mod support;

mod api_compat;
mod broker;
mod claude_cli;
mod cli;
mod entelix_transport;
mod faults;
mod hostile_guests;
mod hostile_inputs;
mod lock_owners;
mod permissions;
mod processes;
mod redis_store;
mod refresh;
mod rescue;
mod secrets;
mod stopping;
mod windows;
