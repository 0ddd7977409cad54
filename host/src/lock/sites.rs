//! Where the `claude` CLI's locks live and when it counts each as abandoned.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// One lock directory and when it counts as abandoned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DirLock {
    pub(crate) path: PathBuf,
    pub(crate) stale_after: Duration,
}

/// The two locks the CLI takes for the credentials in `config_dir`, which must be resolved
/// (`realpath`): `<dir>/.oauth_refresh.lock`, and the legacy `<dir>.lock` beside it
/// (proper-lockfile resolves the locked path first). The CLI names the first through the
/// directory as it was given; through the resolved one it is the same directory entry.
pub(crate) fn claude_cli_locks(config_dir: &Path) -> Vec<DirLock> {
    let mut locks = vec![DirLock {
        path: config_dir.join(".oauth_refresh.lock"),
        stale_after: Duration::from_secs(60),
    }];
    if let Some(name) = config_dir.file_name() {
        let mut legacy = name.to_os_string();
        legacy.push(".lock");
        locks.push(DirLock {
            path: config_dir.with_file_name(legacy),
            stale_after: Duration::from_secs(10),
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
    }
}
