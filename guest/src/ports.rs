//! What the refresh logic needs from outside the sandbox: a store, HTTP and a clock.
//!
//! In the component these are the WIT imports (see `component.rs`); in unit tests they are
//! small in-memory fakes, so every decision the logic makes is tested natively.

use std::time::Duration;

/// Why a store operation failed. Mirrors the WIT `store-error` variant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// No credential document is stored.
    NotFound,
    /// The store could not be read or written.
    Unavailable(String),
    /// The stored bytes are not a usable text document.
    Corrupt(String),
    /// The store does not accept writes.
    ReadOnly(String),
    /// The stored document changed in a way that forbids this write.
    Conflict(String),
    /// The refresh lock was not acquired in time.
    LockTimeout(String),
}

/// The credential document's home.
pub trait Store {
    /// A held refresh lock; dropping it releases the lock.
    type Lock;
    /// Load the document as raw JSON text.
    fn load(&mut self) -> Result<String, StoreError>;
    /// Replace the document.
    fn save(&mut self, document: &str) -> Result<(), StoreError>;
    /// Take the cross-process refresh lock.
    fn lock(&mut self) -> Result<Self::Lock, StoreError>;
}

/// What the token endpoint answered, with the body already capped by the transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpAnswer {
    /// HTTP status code.
    pub status: u16,
    /// The `Retry-After` header, if any.
    pub retry_after: Option<String>,
    /// The body, at most the transport's cap.
    pub body: Vec<u8>,
}

/// Why no answer arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpFailure {
    /// Connecting, sending or reading failed (refused, reset, timed out, denied by the host).
    Unreachable(String),
    /// The answer's body exceeded the cap.
    TooLarge {
        /// The cap in bytes.
        limit: usize,
    },
}

/// Outgoing HTTP, as the refresh grant needs it.
pub trait Http {
    /// POST `body` as `application/json` to `url`, giving up after `timeout`.
    fn post_json(
        &mut self,
        url: &str,
        body: &str,
        timeout: Duration,
    ) -> Result<HttpAnswer, HttpFailure>;
}

/// Time, injected so expiry and retry decisions are testable.
pub trait Clock {
    /// Wall-clock time in Unix milliseconds.
    fn now_ms(&self) -> i64;
    /// Monotonic time since an arbitrary fixed point; only differences matter.
    fn elapsed(&self) -> Duration;
    /// Block for `duration`.
    fn sleep(&mut self, duration: Duration);
}
