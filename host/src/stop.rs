//! A stop that waits see. Set when a provider is drained, it ends a wait for the refresh lock at
//! once — a blocking wait pauses on it, an async one selects on it — and the wait gives back
//! whatever it had taken before it returns, so a process told to stop never exits in the middle
//! of taking a lock and leaves none behind.
//!
//! The stop reaches the stores' waits without a parameter: [`scope`] makes it the current one
//! for a future (the provider scopes the taking of the refresh lock, nothing else), and
//! [`crate::store::blocking`] carries it onto the blocking thread that does the waiting. The
//! write that follows an answer is never scoped: stopping must not cut it short.

use std::cell::RefCell;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;

/// A stop request, shared by everyone who waits on the provider's behalf.
#[derive(Debug, Default)]
pub(crate) struct Stop {
    requested: AtomicBool,
    /// Wakes blocking sleepers.
    mutex: Mutex<()>,
    wake: Condvar,
    /// Wakes async waiters.
    notify: Notify,
}

impl Stop {
    /// Ask every wait to stop, now and from now on.
    pub(crate) fn request(&self) {
        self.requested.store(true, Ordering::SeqCst);
        drop(self.mutex.lock().unwrap_or_else(PoisonError::into_inner));
        self.wake.notify_all();
        self.notify.notify_waiters();
    }

    /// Whether a stop was asked for.
    pub(crate) fn is_requested(&self) -> bool {
        self.requested.load(Ordering::SeqCst)
    }

    /// Sleep for `pause` unless a stop comes first. Blocking. `true`: stopped.
    pub(crate) fn sleep(&self, pause: Duration) -> bool {
        let guard = self.mutex.lock().unwrap_or_else(PoisonError::into_inner);
        let (_guard, _) = self
            .wake
            .wait_timeout_while(guard, pause, |()| !self.is_requested())
            .unwrap_or_else(PoisonError::into_inner);
        self.is_requested()
    }

    /// Resolves once a stop is asked for.
    pub(crate) async fn requested(&self) {
        loop {
            let notified = self.notify.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            if self.is_requested() {
                return;
            }
            notified.await;
        }
    }
}

tokio::task_local! {
    static SCOPED: Arc<Stop>;
}

thread_local! {
    static ON_THREAD: RefCell<Option<Arc<Stop>>> = const { RefCell::new(None) };
}

/// Run `future` with `stop` as the stop its waits see.
pub(crate) async fn scope<F: Future>(stop: Arc<Stop>, future: F) -> F::Output {
    SCOPED.scope(stop, future).await
}

/// The stop the waits of the current task (or blocking thread) see, if any.
pub(crate) fn current() -> Option<Arc<Stop>> {
    SCOPED
        .try_with(Arc::clone)
        .ok()
        .or_else(|| ON_THREAD.with(|slot| slot.borrow().clone()))
}

/// Run blocking `work` with `stop` (captured by the caller with [`current`] before it left its
/// task) as the stop its waits see.
pub(crate) fn within<T>(stop: Option<Arc<Stop>>, work: impl FnOnce() -> T) -> T {
    let before = ON_THREAD.with(|slot| slot.replace(stop));
    let out = work();
    ON_THREAD.with(|slot| *slot.borrow_mut() = before);
    out
}

/// Sleep `pause` on the current stop (or plainly, without one). Blocking. `true`: stopped.
pub(crate) fn sleep(pause: Duration) -> bool {
    match current() {
        Some(stop) => stop.sleep(pause),
        None => {
            std::thread::sleep(pause);
            false
        }
    }
}

/// Whether the current stop was asked for.
pub(crate) fn requested() -> bool {
    current().is_some_and(|stop| stop.is_requested())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn a_sleep_ends_when_the_stop_comes() {
        let stop = Arc::new(Stop::default());
        let waker = stop.clone();
        let started = Instant::now();
        let sleeper =
            std::thread::spawn(move || within(Some(stop), || sleep(Duration::from_secs(30))));
        std::thread::sleep(Duration::from_millis(50));
        waker.request();
        assert!(sleeper.join().unwrap(), "woken as stopped");
        assert!(started.elapsed() < Duration::from_secs(10));
        // From now on every sleep on it returns at once.
        assert!(waker.sleep(Duration::from_secs(30)));
    }

    #[tokio::test]
    async fn the_scope_reaches_the_task_and_what_it_hands_to_a_blocking_thread() {
        assert!(current().is_none());
        let stop = Arc::new(Stop::default());
        stop.request();
        let seen = scope(stop, async {
            let carried = current();
            tokio::task::spawn_blocking(move || within(carried, requested))
                .await
                .unwrap()
        })
        .await;
        assert!(seen);
        assert!(current().is_none(), "only inside the scope");
    }

    #[tokio::test]
    async fn an_async_wait_sees_a_stop_asked_before_or_after_it_began() {
        let stop = Arc::new(Stop::default());
        let waiting = tokio::spawn({
            let stop = stop.clone();
            async move { stop.requested().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        stop.request();
        tokio::time::timeout(Duration::from_secs(10), waiting)
            .await
            .unwrap()
            .unwrap();
        tokio::time::timeout(Duration::from_secs(10), stop.requested())
            .await
            .unwrap();
    }
}
