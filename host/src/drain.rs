//! Letting a provider stop without losing a login. A refresh request that may have reached the
//! token endpoint has spent the refresh token; from then until the answer is kept (or known to
//! carry none) the refresh is *in flight*, and stopping the process then would throw the only
//! live login away. [`Drain`] counts those refreshes and, once asked, stops new ones: waits for
//! the refresh lock end at once (through its [`Stop`]), a request not sent yet is not sent, and
//! [`Drain::idle`] resolves when the last refresh in flight has kept its answer and let go of its
//! locks.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Notify;

use crate::stop::Stop;

/// The drain state of one provider and its clones.
#[derive(Debug, Default)]
pub(crate) struct Drain {
    stop: Arc<Stop>,
    in_flight: AtomicUsize,
    idle: Notify,
}

/// One refresh in flight: from just before its request may leave until its call has kept the
/// answer and released its locks. Dropping it ends it.
#[derive(Debug)]
pub(crate) struct InFlight(Arc<Drain>);

impl Drain {
    /// The stop the provider's waits see.
    pub(crate) fn stop(&self) -> Arc<Stop> {
        self.stop.clone()
    }

    /// Whether the provider is draining: no new refresh starts.
    pub(crate) fn draining(&self) -> bool {
        self.stop.is_requested()
    }

    /// Stop new refreshes from starting, for good.
    pub(crate) fn start(&self) {
        self.stop.request();
    }

    /// A refresh request is about to leave: it is in flight until the guard is dropped. `None`
    /// while draining: the request must not be sent.
    pub(crate) fn begin(self: &Arc<Self>) -> Option<InFlight> {
        // Counted before the stop is looked at, and the stop set before the count is (see
        // `idle`): one of the two always sees the other.
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        let flight = InFlight(self.clone());
        (!self.draining()).then_some(flight)
    }

    /// Resolves when no refresh is in flight.
    pub(crate) async fn idle(&self) {
        loop {
            let notified = self.idle.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            if self.in_flight.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn idle_waits_for_the_refreshes_in_flight_and_none_begins_after_the_start() {
        let drain = Arc::new(Drain::default());
        let flight = drain.begin().expect("not draining yet");
        drain.start();
        assert!(drain.begin().is_none(), "no new refresh once draining");
        let waiting = tokio::spawn({
            let drain = drain.clone();
            async move { drain.idle().await }
        });
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert!(!waiting.is_finished(), "a refresh is still in flight");
        drop(flight);
        tokio::time::timeout(Duration::from_secs(10), waiting)
            .await
            .expect("idle once the last flight ended")
            .unwrap();
        drain.idle().await;
    }
}
