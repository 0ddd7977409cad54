//! Making a lock directory so that a kill at any instant leaves a record naming it: made under
//! a staging name on record, then renamed onto the lock path without replacing anything; a plain
//! `mkdir`, noted first, where the file system cannot rename that way.

use std::io;
use std::path::Path;

use super::identity::identity_of;
use super::journal::{Journal, Record, Staged, staging_name};

/// Why a lock directory was not created.
pub(super) enum CreateError {
    Io(io::Error),
    Journal(io::Error),
}

impl From<io::Error> for CreateError {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

/// `mkdir` the lock directory so that a kill at any instant leaves a record that names it: the
/// directory is made under a staging name noted in the journal and then renamed onto the lock
/// path without replacing anything; a plain `mkdir` of the lock path would leave, for a kill
/// right after it, a directory nobody knows is abandoned until it goes stale (60 s for the
/// CLI's lock). Where the file system cannot rename without replacing (NFS, many FUSE file
/// systems), the intent is noted and the lock made with a plain `mkdir`: a kill in that instant
/// leaves the lock to go stale. An existing lock answers `AlreadyExists`, as `mkdir` does.
pub(super) fn create_lock_dir(
    path: &Path,
    journal: &mut Journal<'_>,
    record: &mut Record,
) -> Result<(), CreateError> {
    create_lock_dir_with(path, journal, record, rename_noreplace)
}

/// [`create_lock_dir`] with the no-replace rename given, so the fallback can be tested.
pub(super) fn create_lock_dir_with(
    path: &Path,
    journal: &mut Journal<'_>,
    record: &mut Record,
    rename: impl Fn(&Path, &Path) -> io::Result<()>,
) -> Result<(), CreateError> {
    let mut note = |record: &mut Record, staged: Option<Staged>| {
        record.staged = staged;
        journal.write(record).map_err(CreateError::Journal)
    };
    if !NOREPLACE_WORKS.load(std::sync::atomic::Ordering::Relaxed) {
        return mkdir_noted(path, record, &mut note);
    }
    let staging = staging_name(path, record.pid);
    let mut staged = Staged {
        staging: Some(staging.clone()),
        lock: path.to_path_buf(),
        made: None,
    };
    note(record, Some(staged.clone()))?;
    std::fs::create_dir(&staging)?;
    let made =
        identity_of(&staging).ok_or_else(|| io::Error::other("the staging directory vanished"))?;
    staged.made = Some((made.dev, made.ino));
    note(record, Some(staged))?;
    match rename(&staging, path) {
        // Until `try_all` records the identity, `staged` still names the lock for a successor.
        Ok(()) => Ok(()),
        Err(e) if no_noreplace(&e) => {
            let _ = std::fs::remove_dir(&staging);
            NOREPLACE_WORKS.store(false, std::sync::atomic::Ordering::Relaxed);
            tracing::debug!(lock = %path.display(), "no rename without replacing here; making lock directories with mkdir");
            mkdir_noted(path, record, &mut note)
        }
        Err(e) => {
            let _ = std::fs::remove_dir(&staging);
            Err(e.into())
        }
    }
}

/// Whether renames without replacing have worked in this process so far.
pub(super) static NOREPLACE_WORKS: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(true);

/// The lock made with a plain `mkdir`, noted first (no staging name) and its identity after.
fn mkdir_noted(
    path: &Path,
    record: &mut Record,
    note: &mut impl FnMut(&mut Record, Option<Staged>) -> Result<(), CreateError>,
) -> Result<(), CreateError> {
    let mut staged = Staged {
        staging: None,
        lock: path.to_path_buf(),
        made: None,
    };
    note(record, Some(staged.clone()))?;
    std::fs::create_dir(path)?;
    let made = identity_of(path).ok_or_else(|| io::Error::other("the lock vanished"))?;
    staged.made = Some((made.dev, made.ino));
    note(record, Some(staged))
}

/// The file system cannot rename without replacing (`EINVAL`, `ENOSYS`, `EOPNOTSUPP`).
pub(super) fn no_noreplace(error: &io::Error) -> bool {
    #[cfg(unix)]
    {
        matches!(
            error.raw_os_error(),
            Some(libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP)
        )
    }
    #[cfg(not(unix))]
    {
        error.kind() == io::ErrorKind::Unsupported
    }
}

/// Rename `from` onto `to` unless `to` exists (`AlreadyExists` then).
#[cfg(any(target_os = "linux", target_os = "android", target_vendor = "apple"))]
pub(super) fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    rustix::fs::renameat_with(
        rustix::fs::CWD,
        from,
        rustix::fs::CWD,
        to,
        rustix::fs::RenameFlags::NOREPLACE,
    )
    .map_err(io::Error::from)
}

/// Rename `from` onto `to` unless `to` exists (`AlreadyExists` then): `MoveFileExW` without
/// `MOVEFILE_REPLACE_EXISTING` never replaces.
#[cfg(windows)]
#[allow(unsafe_code)]
pub(super) fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    use std::os::windows::ffi::OsStrExt;
    let wide = |path: &Path| -> Vec<u16> {
        path.as_os_str()
            .encode_wide()
            .chain(std::iter::once(0))
            .collect()
    };
    let (from, to) = (wide(from), wide(to));
    // SAFETY: both are NUL-terminated wide strings that outlive the call.
    let moved = unsafe {
        windows_sys::Win32::Storage::FileSystem::MoveFileExW(from.as_ptr(), to.as_ptr(), 0)
    };
    if moved == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(not(any(
    target_os = "linux",
    target_os = "android",
    target_vendor = "apple",
    windows
)))]
pub(super) fn rename_noreplace(_from: &Path, _to: &Path) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "no rename without replacing here",
    ))
}
