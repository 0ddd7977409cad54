//! The refresh lock for credentials that belong to a `claude` config directory, whatever holds
//! them (a file in it, a keychain item named after it): our OS lock first, then the CLI's own
//! lock directories.

use std::fs::File;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::error::ClaudeCodeAuthResult;

use super::cli_lock::{self, HeldDirLocks, Journal};
use super::{RefreshLock, atomic, blocking, flock};

/// Take the lock, waiting at most `wait` in all. `lock_file` carries the OS lock (and the
/// journal of what its holder created); `tidy` is a file whose half-written temporaries, left
/// by dead writers, are removed once the lock is held.
pub(crate) async fn lock(
    lock_file: PathBuf,
    config_dir: PathBuf,
    tidy: Option<PathBuf>,
    wait: Duration,
) -> ClaudeCodeAuthResult<RefreshLock> {
    blocking(move || {
        let started = Instant::now();
        let mut file = flock::acquire(&lock_file, wait)?;
        // Whoever held the lock before is gone: clear up after it if it died holding it.
        let mut journal = Journal(&mut file);
        journal.recover_orphans();
        if let Some(tidy) = &tidy {
            atomic::remove_orphaned_temps(&config_dir, tidy);
        }
        let remaining = wait.saturating_sub(started.elapsed());
        let cli_locks = cli_lock::claude_cli_locks(&config_dir);
        let dirs = cli_lock::acquire_all(&cli_locks, remaining, &mut journal)?;
        Ok(RefreshLock::new(Held {
            dirs,
            journal: file,
        }))
    })
    .await
}

/// Both halves of the held lock: the CLI's directories are removed first, then the OS lock goes
/// with the file handle.
struct Held {
    dirs: HeldDirLocks,
    journal: File,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.dirs.release();
        let _ = Journal(&mut self.journal).clear();
    }
}
