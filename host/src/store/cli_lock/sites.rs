//! Where the `claude` CLI's locks live and when it counts each as abandoned.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// One lock directory and when it counts as abandoned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DirLock {
    pub(crate) path: PathBuf,
    pub(crate) stale_after: Duration,
    /// For the CLI's main refresh lock: where its owner record is, and the legacy lock that goes
    /// with it (see [`super::owner`]).
    pub(crate) owned: Option<Owned>,
}

/// Where the owner record of a refresh lock lives, and the legacy lock beside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Owned {
    pub(crate) config_dir: PathBuf,
    pub(crate) legacy: Option<PathBuf>,
}

/// How long the CLI (2.1.332) lets a refresh lock go untouched before it counts as abandoned:
/// both of them. It aborts its own refresh when a lock it holds is touched or removed, so one
/// younger than this is never taken over (unless its owner record proves the holder gone).
pub(crate) const REFRESH_LOCK_STALE: Duration = Duration::from_secs(60);

/// The two locks the CLI takes for the credentials in `config_dir`, which must be resolved
/// (`realpath`): `<dir>/.oauth_refresh.lock`, and the legacy `<dir>.lock` beside it
/// (proper-lockfile resolves the locked path first). The CLI names the first through the
/// directory as it was given; through the resolved one it is the same directory entry.
pub(crate) fn claude_cli_locks(config_dir: &Path) -> Vec<DirLock> {
    let legacy = config_dir.file_name().map(|name| {
        let mut legacy = name.to_os_string();
        legacy.push(".lock");
        config_dir.with_file_name(legacy)
    });
    let mut locks = vec![DirLock {
        path: config_dir.join(".oauth_refresh.lock"),
        stale_after: REFRESH_LOCK_STALE,
        owned: Some(Owned {
            config_dir: config_dir.to_path_buf(),
            legacy: legacy.clone(),
        }),
    }];
    if let Some(legacy) = legacy {
        locks.push(DirLock {
            path: legacy,
            stale_after: REFRESH_LOCK_STALE,
            owned: None,
        });
    }
    locks
}

/// The lock the CLI takes around every read-modify-write of its credential store
/// (`<config dir>/.storage-write.lock`, stale after 15 s), refresh or not.
pub(crate) fn claude_cli_write_lock(config_dir: &Path) -> DirLock {
    DirLock {
        path: config_dir.join(".storage-write.lock"),
        stale_after: Duration::from_secs(15),
        owned: None,
    }
}
