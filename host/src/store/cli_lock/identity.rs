//! Which lock directory is ours: path, device, inode and the mtime we last gave it.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::files::path_bytes;

/// A lock directory as we left it: path, device, inode and the mtime we last gave it, so a
/// directory someone else created at the same path — even on a reused inode — is never taken
/// for ours.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Identity {
    #[serde(with = "path_bytes")]
    pub(super) path: PathBuf,
    pub(super) dev: u64,
    pub(super) ino: u64,
    pub(super) mtime_ns: u64,
}

/// The directory at `path` as it is now (not following a symlink); `None` when there is none.
#[cfg(unix)]
pub(super) fn identity_of(path: &Path) -> Option<Identity> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(path).ok()?;
    meta.is_dir().then(|| Identity {
        path: path.to_path_buf(),
        dev: meta.dev(),
        ino: meta.ino(),
        mtime_ns: mtime_ns(&meta),
    })
}

#[cfg(not(unix))]
pub(super) fn identity_of(path: &Path) -> Option<Identity> {
    std::fs::symlink_metadata(path)
        .ok()
        .filter(std::fs::Metadata::is_dir)
        .map(|meta| Identity {
            path: path.to_path_buf(),
            dev: 0,
            ino: 0,
            mtime_ns: mtime_ns(&meta),
        })
}

fn mtime_ns(meta: &std::fs::Metadata) -> u64 {
    meta.modified()
        .ok()
        .and_then(|m| m.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}
