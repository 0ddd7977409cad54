//! The cross-process refresh lock of [`crate::FileCredentialStore`]: an OS file lock (`flock`) on
//! a file next to the credential file. The kernel releases it when the holder exits, however it
//! exits, so a crash never leaves it held.

use std::fs::{File, OpenOptions, TryLockError};
use std::io;
use std::path::Path;
use std::time::Duration;

use crate::error::{ClaudeCodeAuthError, ClaudeCodeAuthResult};
use crate::files::create_private_dir;

use super::retry::{Attempt, GaveUp, until_taken};

/// Longest pause between two tries.
const MAX_PAUSE: Duration = Duration::from_millis(50);

/// Open the lock file, never through a symlink: a file another user planted there (or a link to
/// one) would have our journal written into it. Made `0600` when missing, owned like its
/// directory (so root refreshing a user's credential leaves a lock file the user can open);
/// an existing one must be a regular file owned by us or by the directory's owner.
fn open(lock_path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.read(true).write(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    }
    let made = options.clone().create_new(true).open(lock_path);
    let (file, made) = match made {
        Ok(file) => (file, true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            (options.open(lock_path).map_err(refuse_symlink)?, false)
        }
        Err(e) => return Err(e),
    };
    #[cfg(unix)]
    {
        use crate::files::{ownership, parent_of};
        ownership::check_or_adopt(&file, &parent_of(lock_path), made)?;
    }
    let _ = made;
    Ok(file)
}

/// `O_NOFOLLOW` met a symlink: say so rather than "too many levels of symbolic links".
fn refuse_symlink(error: io::Error) -> io::Error {
    #[cfg(unix)]
    if error.raw_os_error() == Some(libc::ELOOP) {
        return io::Error::new(
            io::ErrorKind::InvalidInput,
            "a symlink is where the lock file goes; refusing to follow it",
        );
    }
    error
}

/// Lock `lock_path` exclusively, waiting at most `wait`. The returned file holds the lock until
/// it is dropped. Blocking: call from a blocking thread.
pub(crate) fn acquire(lock_path: &Path, wait: Duration) -> ClaudeCodeAuthResult<File> {
    let io_error = |source| ClaudeCodeAuthError::Io {
        path: lock_path.display().to_string(),
        source,
    };
    let file = match open(lock_path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            // The directory is made on the first save only.
            if let Some(dir) = lock_path.parent().filter(|d| !d.as_os_str().is_empty()) {
                create_private_dir(dir).map_err(io_error)?;
            }
            open(lock_path)
        }
        opened => opened,
    }
    .map_err(io_error)?;
    let taken = until_taken(wait, Duration::from_millis(2), MAX_PAUSE, || {
        match file.try_lock() {
            Ok(()) => Attempt::Done(()),
            Err(TryLockError::WouldBlock) => Attempt::Busy,
            Err(TryLockError::Error(e)) => Attempt::Failed(e),
        }
    });
    match taken {
        Ok(()) => Ok(file),
        Err(GaveUp::Failed(e)) => Err(io_error(e)),
        Err(GaveUp::TimedOut(waited)) => Err(ClaudeCodeAuthError::LockTimeout {
            lock: lock_path.display().to_string(),
            waited,
        }),
        Err(GaveUp::Stopped) => Err(ClaudeCodeAuthError::Draining),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_lock_blocks_until_released_and_times_out_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".credentials.json.flock");
        let held = acquire(&path, Duration::ZERO).unwrap();
        let err = acquire(&path, Duration::from_millis(30)).unwrap_err();
        assert!(
            matches!(&err, ClaudeCodeAuthError::LockTimeout { waited, .. } if *waited >= Duration::from_millis(30)),
            "{err}"
        );
        assert!(err.to_string().contains(".credentials.json.flock"));
        drop(held);
        acquire(&path, Duration::ZERO).unwrap();
    }
}
