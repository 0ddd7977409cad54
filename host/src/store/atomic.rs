//! Crash-safe replacement of a file: a reader sees the old content or the new, never a mix, and a
//! crash at any moment leaves one of the two on disk.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use super::liveness::process_alive;

/// Replace `path` with `contents`: write a same-directory temporary file created `0600`, fsync it,
/// rename it over the target, fsync the directory. A symlink is written through to its target
/// and stays a symlink.
pub(crate) fn write_atomically(path: &Path, contents: &[u8]) -> io::Result<()> {
    let target = write_target(path)?;
    let dir = match target.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    create_private_dir(&dir)?;
    let tmp = dir.join(temp_name(&target));
    let result = write_then_rename(&tmp, &target, contents);
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result?;
    sync_dir(&dir)
}

/// Remove temporary files that writers of `target` left when they died mid-write. Called by the
/// next holder of the refresh lock (writers write under it), not on every write.
pub(crate) fn remove_orphaned_temps(dir: &Path, target: &Path) {
    let Some(name) = target.file_name().map(|n| n.to_string_lossy().into_owned()) else {
        return;
    };
    let prefix = format!(".{name}.");
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = file_name
            .strip_prefix(&prefix)
            .and_then(|r| r.strip_suffix(".tmp"))
        else {
            continue;
        };
        let writer = rest
            .split('.')
            .next()
            .and_then(|pid| pid.parse::<u32>().ok());
        if writer.is_some_and(|pid| pid != std::process::id() && !process_alive(pid)) {
            let _ = fs::remove_file(entry.path());
        }
    }
}

fn write_then_rename(tmp: &Path, target: &Path, contents: &[u8]) -> io::Result<()> {
    let mut file = private_options().open(tmp)?;
    file.write_all(contents)?;
    file.sync_all()?;
    drop(file);
    fs::rename(tmp, target)
}

/// The file a write must replace: `path` itself, or what it links to.
fn write_target(path: &Path) -> io::Result<PathBuf> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => match fs::canonicalize(path) {
            Ok(resolved) => Ok(resolved),
            // A dangling link: create its target.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let link = fs::read_link(path)?;
                Ok(path
                    .parent()
                    .map_or(link.clone(), |parent| parent.join(&link)))
            }
            Err(e) => Err(e),
        },
        _ => Ok(path.to_path_buf()),
    }
}

/// `.<name>.<pid>.<n>.<nanos>.tmp`: unique across processes and threads, hidden, and never a
/// name the CLI's own lock directories use.
fn temp_name(target: &Path) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = target
        .file_name()
        .map_or_else(|| "credentials".into(), |n| n.to_string_lossy());
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(".{name}.{}.{n}.{nanos}.tmp", std::process::id())
}

/// Options for a new file only its owner can read.
pub(crate) fn private_options() -> OpenOptions {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
}

/// Create `dir` (and parents) readable by the owner only, as the CLI does for `~/.claude`.
pub(crate) fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::{PermissionsExt, symlink};

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn new_and_replaced_files_are_private_and_complete() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join(".credentials.json");
        write_atomically(&path, b"one").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"one");
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        write_atomically(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(mode(&path), 0o600);
        let leftovers: Vec<_> = fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers, [".credentials.json"]);
    }

    #[test]
    fn temps_of_dead_writers_are_removed_live_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".credentials.json");
        // Temp names are `.<file name>.<pid>.<n>.<nanos>.tmp`.
        let dead = dir
            .path()
            .join(format!("..credentials.json.{}.0.1.tmp", u32::MAX - 7));
        let live = dir.path().join("..credentials.json.1.0.1.tmp");
        let other = dir.path().join(".other.json.4294967288.0.1.tmp");
        for p in [&dead, &live, &other] {
            fs::write(p, b"half").unwrap();
        }
        remove_orphaned_temps(dir.path(), &path);
        assert!(!dead.exists() && live.exists() && other.exists());
    }

    #[test]
    fn symlinks_are_written_through_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.json");
        fs::write(&real, b"old").unwrap();
        let link = dir.path().join("link.json");
        symlink("real.json", &link).unwrap();
        write_atomically(&link, b"new").unwrap();
        assert!(
            fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(fs::read(&real).unwrap(), b"new");

        let dangling = dir.path().join("dangling.json");
        symlink("made.json", &dangling).unwrap();
        write_atomically(&dangling, b"made").unwrap();
        assert_eq!(fs::read(dir.path().join("made.json")).unwrap(), b"made");
    }

    #[test]
    fn a_symlink_loop_is_an_error_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        symlink(&b, &a).unwrap();
        symlink(&a, &b).unwrap();
        assert!(write_atomically(&a, b"x").is_err());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 2);
    }
}
