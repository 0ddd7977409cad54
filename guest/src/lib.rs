//! The refresh logic of `entelix-auth-claude-code`, built as a `wasm32-wasip2` component.
//!
//! The logic is pure: it talks to the world only through the [`ports`] traits (a store, HTTP, a
//! clock). In the component those are the WIT imports (`credential-store`,
//! `wasi:http/outgoing-handler`, `wasi:clocks`), wired in `component.rs`; natively they are
//! in-memory fakes, so every decision is unit tested with `cargo test`.
//!
//! - [`document`] reads and edits the credential document, keeping unknown fields.
//! - [`answer`] interprets the token endpoint's answer.
//! - [`json`] holds what both read JSON with: typed field readers and the strict parser.
//! - [`engine`] decides when to refresh, takes the lock, retries, and writes back.
//! - [`target`] splits the token URL as `wasi:http` takes it; [`error_words`] turns the
//!   transport's error variants into words for messages.

// Unit tests panic to report failure.
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod answer;
pub mod document;
pub mod engine;
pub mod error_words;
pub mod failure;
#[cfg(not(target_arch = "wasm32"))]
pub mod fuzz_checks;
pub mod json;
pub mod ports;
pub mod scrub;
pub mod splice;
pub mod target;

#[cfg(test)]
pub(crate) mod fakes;

#[cfg(target_arch = "wasm32")]
mod component;
