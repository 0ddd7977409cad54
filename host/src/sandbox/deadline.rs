//! The wall-clock bound of one call into the component, which a request sent during the call
//! extends: an answer that arrives within the refresh budget is never cut off after the endpoint
//! rotated the refresh token.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use crate::config::ClaudeCodeOAuthConfig;

/// Added to the lock and refresh bounds for the rest of a call (instantiation, store I/O).
const CALL_SLACK: Duration = Duration::from_secs(5);

/// When a call must have finished.
pub(super) struct CallDeadline {
    started: Instant,
    /// The lock and refresh bounds plus slack, from the start.
    bound: Duration,
    /// The refresh budget plus slack, from the last request sent.
    after_sending: Duration,
    /// When the component's last request was sent, as the HTTP policy records it.
    last_sent: Arc<Mutex<Option<Instant>>>,
}

impl CallDeadline {
    /// The deadline of a call starting now under `config`, whose store waits at most
    /// `lock_wait` for its lock.
    pub(super) fn new(
        config: &ClaudeCodeOAuthConfig,
        lock_wait: Duration,
        last_sent: Arc<Mutex<Option<Instant>>>,
    ) -> Self {
        Self {
            started: Instant::now(),
            bound: lock_wait + config.refresh_timeout + CALL_SLACK,
            after_sending: config.refresh_timeout + CALL_SLACK,
            last_sent,
        }
    }

    /// The deadline as it stands now.
    fn at(&self) -> Instant {
        let sent = *self
            .last_sent
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let call = self.started + self.bound;
        sent.map_or(call, |sent| call.max(sent + self.after_sending))
    }

    /// `run`'s output, or how long it ran when the deadline passed first.
    pub(super) async fn run<F: Future>(&self, run: F) -> Result<F::Output, Duration> {
        let mut run = std::pin::pin!(run);
        loop {
            let until = self.at();
            match tokio::time::timeout_at(until, &mut run).await {
                Ok(outcome) => return Ok(outcome),
                // A request sent meanwhile moved the deadline: keep waiting for its answer.
                Err(_) if self.at() > until => {}
                Err(_) => return Err(until - self.started),
            }
        }
    }
}
