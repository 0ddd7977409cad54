//! Waiting for a lock someone else holds: try, pause, try again — the pause doubling up to a
//! bound — until the wait is used up, or until the provider stops (see [`crate::stop`]). One
//! loop for every lock here.

use std::time::{Duration, Instant};

/// What one attempt found.
pub(crate) enum Attempt<T, E> {
    /// Taken.
    Done(T),
    /// Held by someone else: worth another try.
    Busy,
    /// Failed for good.
    Failed(E),
}

/// Why [`until_taken`] gave up.
pub(crate) enum GaveUp<E> {
    /// An attempt failed for good.
    Failed(E),
    /// Still busy after this long.
    TimedOut(Duration),
    /// The provider stopped while this waited (nothing is held).
    Stopped,
}

/// Try `attempt` until it is done or fails, pausing `first` and then twice as long each time (at
/// most `max`) while it is busy, for at most `wait` in all; a stop ends the wait at once (and
/// keeps a first attempt from being made). Blocking: call from a blocking thread.
pub(crate) fn until_taken<T, E>(
    wait: Duration,
    first: Duration,
    max: Duration,
    mut attempt: impl FnMut() -> Attempt<T, E>,
) -> Result<T, GaveUp<E>> {
    let started = Instant::now();
    let mut pause = first;
    loop {
        if crate::stop::requested() {
            return Err(GaveUp::Stopped);
        }
        match attempt() {
            Attempt::Done(taken) => return Ok(taken),
            Attempt::Failed(e) => return Err(GaveUp::Failed(e)),
            Attempt::Busy => {}
        }
        let waited = started.elapsed();
        if waited >= wait {
            return Err(GaveUp::TimedOut(waited));
        }
        if crate::stop::sleep(pause.min(wait - waited)) {
            return Err(GaveUp::Stopped);
        }
        pause = (pause * 2).min(max);
    }
}
