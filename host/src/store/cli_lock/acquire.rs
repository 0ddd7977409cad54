//! Taking the CLI's lock directories all or nothing: every lock of a set, or none of them, so a
//! process that takes them in another order can never deadlock with us.

use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::error::{ClaudeCodeAuthError, ClaudeCodeAuthResult};

use super::identity::{Identity, identity_of};
use super::journal::{Journal, Record};
use super::owner;
use super::retry::{Attempt, GaveUp, until_taken};
use super::sites::DirLock;
use super::staged::{CreateError, create_lock_dir};
use super::stale::{FutureDated, stale_identity, take_over};
use super::toucher::{Held, keep_touched};

/// Longest pause between two attempts.
const MAX_PAUSE: Duration = Duration::from_millis(100);

/// Held lock directories, refreshed in the background and removed on drop.
pub(crate) struct HeldDirLocks {
    held: Held,
}

impl std::fmt::Debug for HeldDirLocks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeldDirLocks")
            .field("held", &self.held)
            .finish()
    }
}

impl HeldDirLocks {
    /// The held directories as they are now (the toucher moves their mtimes).
    pub(crate) fn identities(&self) -> Vec<Identity> {
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Whether the directory at `path` is one of these.
    pub(crate) fn holds(&self, path: &std::path::Path) -> bool {
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .any(|lock| lock.path == path)
    }

    /// The first held directory that is no longer ours (removed, or replaced by someone who
    /// took it over — even on the same inode, which file systems reuse at once: its mtime is not
    /// the one we last gave it), if any.
    pub(crate) fn lost(&self) -> Option<PathBuf> {
        let held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        held.iter()
            .find(|lock| identity_of(&lock.path).as_ref() != Some(*lock))
            .map(|lock| lock.path.clone())
    }

    /// Stop touching and remove the directories that are still ours. Idempotent.
    pub(crate) fn release(&mut self) {
        // Emptied under the toucher's lock: it never touches a directory after this.
        let held = std::mem::take(&mut *self.held.lock().unwrap_or_else(PoisonError::into_inner));
        for lock in held.iter().rev() {
            if identity_of(&lock.path).as_ref() == Some(lock) {
                let _ = std::fs::remove_dir(&lock.path);
            }
        }
    }
}

impl Drop for HeldDirLocks {
    fn drop(&mut self) {
        self.release();
    }
}

/// Take every lock in `locks`, all or nothing, waiting at most `wait`; note them in `journal`
/// on top of what `record` already holds (`record` then names them too). Blocking: call from a
/// blocking thread.
pub(crate) fn acquire_all(
    locks: &[DirLock],
    wait: Duration,
    journal: &mut Journal<'_>,
    record: &mut Record,
) -> ClaudeCodeAuthResult<HeldDirLocks> {
    let mut ahead = FutureDated::default();
    let mut busy_on = PathBuf::new();
    let taken = until_taken(wait, Duration::from_millis(5), MAX_PAUSE, || match try_all(
        locks, journal, record, &mut ahead,
    ) {
        Ok(held) => Attempt::Done(held),
        Err(Busy::Held(path)) => {
            busy_on = path;
            Attempt::Busy
        }
        Err(Busy::Io(path, source)) => Attempt::Failed(ClaudeCodeAuthError::Io {
            path: path.display().to_string(),
            source,
        }),
        Err(Busy::Journal(source)) => Attempt::Failed(ClaudeCodeAuthError::Io {
            path: "refresh lock journal".into(),
            source,
        }),
    });
    match taken {
        Ok(held) => {
            let held = Arc::new(Mutex::new(held));
            keep_touched(&held);
            Ok(HeldDirLocks { held })
        }
        Err(GaveUp::Failed(error)) => Err(error),
        Err(GaveUp::TimedOut(waited)) => Err(ClaudeCodeAuthError::LockTimeout {
            lock: busy_on.display().to_string(),
            waited,
        }),
        Err(GaveUp::Stopped) => Err(ClaudeCodeAuthError::Draining),
    }
}

pub(super) enum Busy {
    /// Someone holds this lock and it is not stale.
    Held(PathBuf),
    /// The lock cannot be taken for another reason (no permission, no such directory...).
    Io(PathBuf, io::Error),
    /// The journal could not be written: taking a lock without a record could strand it.
    Journal(io::Error),
}

pub(super) fn try_all(
    locks: &[DirLock],
    journal: &mut Journal<'_>,
    record: &mut Record,
    ahead: &mut FutureDated,
) -> Result<Vec<Identity>, Busy> {
    let base = record.locks.len();
    for lock in locks {
        let taken = try_one(lock, journal, record, ahead);
        record.staged = None;
        match taken {
            Ok(Some(identity)) => record.locks.push(identity),
            Ok(None) => {}
            Err(busy) => {
                release_all(&record.locks[base..]);
                record.locks.truncate(base);
                let _ = journal.write(record);
                return Err(busy);
            }
        }
    }
    if let Err(e) = journal.write(record) {
        release_all(&record.locks[base..]);
        record.locks.truncate(base);
        return Err(Busy::Journal(e));
    }
    Ok(record.locks[base..].to_vec())
}

/// Take `lock`; `None` when it cannot exist at all (its parent is missing or not writable):
/// then no CLI can hold it either, and there is nothing to coordinate.
fn try_one(
    lock: &DirLock,
    journal: &mut Journal<'_>,
    record: &mut Record,
    ahead: &mut FutureDated,
) -> Result<Option<Identity>, Busy> {
    // One steal at most per attempt: if the lock is taken again right after, someone is alive.
    for _ in 0..2 {
        match create_lock_dir(&lock.path, journal, record) {
            Ok(()) => {
                return identity_of(&lock.path).map(Some).ok_or_else(|| {
                    Busy::Io(lock.path.clone(), io::Error::other("the lock vanished"))
                });
            }
            Err(CreateError::Io(e)) if cannot_exist(&e) => return Ok(None),
            Err(CreateError::Io(e)) if e.kind() == io::ErrorKind::AlreadyExists => {
                if let Some(owned) = &lock.owned
                    && owner::take_over_if_gone(&lock.path, owned)
                        .map_err(|e| Busy::Io(lock.path.clone(), e))?
                {
                    tracing::debug!(lock = %lock.path.display(), "took over a refresh lock whose owner record proves its holder gone");
                    continue;
                }
                let Some(stale) = stale_identity(&lock.path, lock.stale_after, ahead) else {
                    return Err(Busy::Held(lock.path.clone()));
                };
                tracing::debug!(lock = %lock.path.display(), "taking over a stale refresh lock");
                take_over(&stale, record.pid).map_err(|e| Busy::Io(lock.path.clone(), e))?;
            }
            Err(CreateError::Journal(e)) => return Err(Busy::Journal(e)),
            Err(CreateError::Io(e)) => return Err(Busy::Io(lock.path.clone(), e)),
        }
    }
    Err(Busy::Held(lock.path.clone()))
}

fn cannot_exist(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::PermissionDenied
            | io::ErrorKind::ReadOnlyFilesystem
            | io::ErrorKind::NotFound
    )
}

pub(super) fn release_all(held: &[Identity]) {
    for lock in held.iter().rev() {
        let _ = std::fs::remove_dir(&lock.path);
    }
}
