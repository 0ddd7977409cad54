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

/// Where a committed document was kept. Mirrors the WIT `kept` enum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kept {
    /// In the store.
    Stored,
    /// In the host's rescue place, because the store refused it.
    Rescued,
}

/// The credential document's home.
pub trait Store {
    /// A held refresh lock; dropping it releases the lock.
    type Lock: HeldLock;
    /// Load the document as raw JSON text.
    fn load(&mut self) -> Result<String, StoreError>;
    /// Take the cross-process refresh lock.
    fn lock(&mut self) -> Result<Self::Lock, StoreError>;
}

/// What a held refresh lock offers: the write that follows a refresh, prepared before the
/// refresh token is spent and done as a read-modify-write under the store's write lock.
pub trait HeldLock {
    /// Get ready to store a document of up to `size` bytes. Called before the refresh request.
    fn prepare(&mut self, size: u64) -> Result<(), StoreError>;
    /// Take the store's write lock and load the document under it.
    fn load_for_write(&mut self) -> Result<String, StoreError>;
    /// Keep `document`: in the store, or in the host's rescue place.
    fn commit(&mut self, document: &str) -> Result<Kept, StoreError>;
}

/// The refresh request, as the `claude` CLI sends it.
#[derive(Clone, PartialEq, Eq)]
pub struct GrantRequest {
    /// The token endpoint.
    pub url: String,
    /// The JSON body; it holds the refresh token.
    pub body: String,
    /// The `User-Agent` header.
    pub user_agent: String,
}

impl std::fmt::Debug for GrantRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrantRequest")
            .field("url", &self.url)
            .field("body_bytes", &self.body.len())
            .field("user_agent", &self.user_agent)
            .finish()
    }
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
    /// The endpoint's TLS certificate is not trusted: retrying does not help.
    Untrusted(String),
    /// The answer's body exceeded the cap.
    TooLarge {
        /// The cap in bytes.
        limit: usize,
    },
}

/// Outgoing HTTP, as the refresh grant needs it.
pub trait Http {
    /// POST `request.body` as `application/json` with a `Content-Length` (never chunked),
    /// giving up after `timeout` for the whole exchange.
    fn post_json(
        &mut self,
        request: &GrantRequest,
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
