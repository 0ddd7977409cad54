//! Held lock directories kept fresh: their mtime is touched every [`TOUCH_INTERVAL`], as the CLI
//! does, by one thread for the whole process.

use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::thread;
use std::time::{Duration, SystemTime};

use super::identity::{Identity, identity_of};

/// How often a held lock's mtime is refreshed (the CLI's interval).
pub(crate) const TOUCH_INTERVAL: Duration = Duration::from_secs(5);

/// The identities of held locks, updated by the toucher after each touch.
pub(super) type Held = Arc<HeldInner>;
pub(super) type HeldInner = Mutex<Vec<Identity>>;

/// Touch `held` every [`TOUCH_INTERVAL`] until it is released (emptied) and dropped. One thread
/// serves every lock of the process, so taking a lock costs no thread.
pub(super) fn keep_touched(held: &Held) {
    static REGISTRY: OnceLock<Mutex<Vec<Weak<HeldInner>>>> = OnceLock::new();
    let mut started = false;
    let registry = REGISTRY.get_or_init(|| {
        started = true;
        Mutex::new(Vec::new())
    });
    registry
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(Arc::downgrade(held));
    if started {
        let spawned = thread::Builder::new()
            .name("claude-code-auth-lock-toucher".into())
            .spawn(move || {
                loop {
                    thread::sleep(TOUCH_INTERVAL);
                    let live: Vec<Held> = {
                        let mut all = registry.lock().unwrap_or_else(PoisonError::into_inner);
                        all.retain(|weak| weak.strong_count() > 0);
                        all.iter().filter_map(Weak::upgrade).collect()
                    };
                    live.iter().for_each(touch);
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start the lock toucher; held locks may go stale");
        }
    }
}

/// Touch every lock in `held` that is still ours, and remember its new mtime.
fn touch(held: &Held) {
    let mut held = held.lock().unwrap_or_else(PoisonError::into_inner);
    for lock in held.iter_mut() {
        if identity_of(&lock.path).as_ref() != Some(lock) {
            continue;
        }
        let touched = crate::files::times::set_modified(&lock.path, SystemTime::now());
        if let (Ok(()), Some(now)) = (touched, identity_of(&lock.path)) {
            *lock = now;
        }
    }
}
