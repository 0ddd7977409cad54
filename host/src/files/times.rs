//! Setting a directory's modification time, as the `claude` CLI's lock protocol needs (a held
//! lock directory is touched; a stale one is judged by its mtime).

use std::fs::File;
use std::io;
use std::path::Path;
use std::time::SystemTime;

/// Set the modification time of the directory (or file) at `path` to `at`. On Windows a
/// directory opens only with backup semantics, and its times change only through a handle with
/// the right to write attributes: a plain `File::open` is refused there.
pub(crate) fn set_modified(path: &Path, at: SystemTime) -> io::Result<()> {
    open_for_times(path)?.set_modified(at)
}

#[cfg(not(windows))]
fn open_for_times(path: &Path) -> io::Result<File> {
    File::open(path)
}

#[cfg(windows)]
fn open_for_times(path: &Path) -> io::Result<File> {
    use std::os::windows::fs::OpenOptionsExt;
    /// `FILE_WRITE_ATTRIBUTES` and `FILE_FLAG_BACKUP_SEMANTICS`.
    const WRITE_ATTRIBUTES: u32 = 0x0100;
    const BACKUP_SEMANTICS: u32 = 0x0200_0000;
    std::fs::OpenOptions::new()
        .access_mode(WRITE_ATTRIBUTES)
        .custom_flags(BACKUP_SEMANTICS)
        .open(path)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    #[test]
    fn a_directorys_mtime_is_set() {
        let dir = tempfile::tempdir().unwrap();
        let lock = dir.path().join("a.lock");
        std::fs::create_dir(&lock).unwrap();
        let at = SystemTime::now() - Duration::from_secs(3600);
        super::set_modified(&lock, at).unwrap();
        let got = std::fs::metadata(&lock).unwrap().modified().unwrap();
        let off = got.duration_since(at).unwrap_or_else(|e| e.duration());
        assert!(off < Duration::from_secs(2), "{got:?} vs {at:?}");
    }
}
