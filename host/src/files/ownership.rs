//! Who owns what we write. Root refreshing a user's credential (from `sudo` or cron) must leave
//! the user's files the user's: the credential keeps its owner and group, and files we make in
//! the user's directory (the lock file) are owned like that directory. And a file of ours that
//! someone else put in place (the lock file, planted by another user) is not used.

use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use rustix::fs::{Gid, Uid, fchown};

/// Check the lock file `file` in `dir` (`made`: we just created it): a regular file; when made,
/// given the directory's owner and group; else owned by us or by the directory's owner.
pub(crate) fn check_or_adopt(file: &File, dir: &Path, made: bool) -> io::Result<()> {
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file; something else was put where the lock file goes",
        ));
    }
    let dir_meta = std::fs::metadata(dir)?;
    let me = rustix::process::geteuid().as_raw();
    if made {
        if dir_meta.uid() != me {
            // Only root can give a file away; anyone else made it in their own directory.
            let _ = give(file, dir_meta.uid(), dir_meta.gid());
        }
        return Ok(());
    }
    if meta.uid() != me && meta.uid() != dir_meta.uid() {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "the lock file belongs to user {}, neither this user nor the directory's owner; refusing to use it",
                meta.uid()
            ),
        ));
    }
    Ok(())
}

/// Give the new file `file` the owner and group of `target`, which it will replace (nothing to
/// do when `target` does not exist or already has them). Fails when this user may not: writing
/// would take another user's credential over.
pub(crate) fn own_like(file: &File, target: &Path) -> io::Result<()> {
    let Ok(target) = std::fs::metadata(target) else {
        return Ok(());
    };
    let meta = file.metadata()?;
    if (meta.uid(), meta.gid()) == (target.uid(), target.gid()) {
        return Ok(());
    }
    give(file, target.uid(), target.gid()).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!(
                "the credential file belongs to user {} (group {}) and this user cannot keep it theirs ({e}); refusing to take it over",
                target.uid(),
                target.gid()
            ),
        )
    })
}

fn give(file: &File, uid: u32, gid: u32) -> io::Result<()> {
    let (uid, gid) = (Uid::from_raw(uid), Gid::from_raw(gid));
    fchown(file, Some(uid), Some(gid)).map_err(io::Error::from)
}
