//! Abandoned locks: when a lock directory counts as stale, and taking one over without ever
//! removing a lock someone has just re-taken.

use std::io;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use super::identity::{Identity, identity_of};
use super::journal::staging_name;
use super::staged::{no_noreplace, rename_noreplace};
use super::toucher::TOUCH_INTERVAL;

/// A lock mtime this far in the future is treated as stale rather than waited on.
pub(crate) const FUTURE_TOLERANCE: Duration = Duration::from_secs(10);

/// Remove the stale lock `stale` — and nothing else: it is first renamed aside (to a staging
/// name of ours), and removed only if what was moved is still that directory, untouched; a lock
/// someone took or touched in the meantime is put back.
pub(super) fn take_over(stale: &Identity, pid: u32) -> io::Result<()> {
    let aside = staging_name(&stale.path, pid);
    match std::fs::rename(&stale.path, &aside) {
        Ok(()) => {}
        // Gone meanwhile: the next mkdir decides.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    }
    let moved = identity_of(&aside).map(|i| (i.dev, i.ino, i.mtime_ns));
    if moved == Some((stale.dev, stale.ino, stale.mtime_ns)) {
        let _ = std::fs::remove_dir(&aside);
        return Ok(());
    }
    tracing::debug!(lock = %stale.path.display(), "a stale lock came alive while being taken over; put back");
    rename_noreplace(&aside, &stale.path).or_else(|e| {
        if no_noreplace(&e) && !stale.path.exists() {
            std::fs::rename(&aside, &stale.path)
        } else {
            Err(e)
        }
    })
}

/// Locks seen dated in the future, and since when: one whose mtime lies ahead beyond the
/// tolerance is stale only if it stays untouched for a touch interval — a live holder whose
/// clock stepped back touches it again within that time.
#[derive(Default)]
pub(super) struct FutureDated(Vec<(Identity, Instant)>);

/// The lock at `path`, if it is abandoned: not touched for `stale_after`, or dated in the future
/// beyond the tolerance and left untouched for longer than a touch interval.
pub(super) fn stale_identity(
    path: &Path,
    stale_after: Duration,
    ahead: &mut FutureDated,
) -> Option<Identity> {
    // Gone meanwhile: not stale; the next mkdir decides.
    let identity = identity_of(path)?;
    let modified = SystemTime::UNIX_EPOCH + Duration::from_nanos(identity.mtime_ns);
    match SystemTime::now().duration_since(modified) {
        Ok(age) => (age > stale_after).then_some(identity),
        Err(early) if early.duration() <= FUTURE_TOLERANCE => None,
        Err(_) => {
            ahead
                .0
                .retain(|(seen, _)| seen.path != identity.path || *seen == identity);
            match ahead.0.iter().find(|(seen, _)| *seen == identity) {
                Some((_, since)) if since.elapsed() > TOUCH_INTERVAL + Duration::from_secs(1) => {
                    Some(identity)
                }
                Some(_) => None,
                None => {
                    ahead.0.push((identity, Instant::now()));
                    None
                }
            }
        }
    }
}
