//! Crash-safe replacement of a file: a reader sees the old content or the new, never a mix, and a
//! crash at any moment leaves one of the two on disk.
//!
//! The write comes in two halves so that the part that can fail for lack of space, permission or
//! name length happens before anything is at stake: [`prepare`] creates the same-directory
//! temporary file exclusively and reserves its space; [`Prepared::fill`] (or
//! [`Prepared::write`] and [`Prepared::sync`]) and [`Prepared::install`] write into it and
//! rename it over the target.
//!
//! A prepared file also has room for a side record past its content's reservation
//! ([`Prepared::write_side`], at [`Prepared::side_at`]): what its owner must not lose before the
//! content is written (the credential store puts the token endpoint's answer there). Writing the
//! content never touches it, and cuts the file to the content's length.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A temporary file created next to the target, its space reserved, not yet written.
#[derive(Debug)]
pub(crate) struct Prepared {
    file: File,
    path: PathBuf,
    /// Where the side record goes: past the room reserved for the content.
    side_at: u64,
}

/// Room reserved past the content for the side record (a token endpoint's answer is under
/// 2 KiB; a larger one may still fit where the disk has space).
pub(crate) const SIDE_ROOM: u64 = 16 * 1024;

/// A fresh name for a temporary file in `dir`: short and fixed in length
/// (`.ccauth-<pid>-<n>.tmp`), so it fits whatever the target's name; unique in this process.
pub(crate) fn temp_path(dir: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    dir.join(format!(".ccauth-{}-{n}.tmp", std::process::id()))
}

/// Create the temporary file `path` (its directory created `0700` if missing) exclusively,
/// `0600`, never through a symlink, and reserve `size` bytes for it and [`SIDE_ROOM`] after.
pub(crate) fn prepare(path: PathBuf, size: u64) -> io::Result<Prepared> {
    let file = match private_options().open(&path) {
        // The directory is made on the first save only.
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            create_private_dir(&parent_of(&path))?;
            private_options().open(&path)
        }
        opened => opened,
    }?;
    match reserve(&file, size.saturating_add(SIDE_ROOM)) {
        Ok(()) => Ok(Prepared {
            file,
            path,
            side_at: size,
        }),
        Err(e) => {
            drop(file);
            let _ = fs::remove_file(&path);
            Err(e)
        }
    }
}

/// Whether `name` is one [`prepare`] gives its temporary files.
pub(crate) fn is_temp_name(name: &str) -> bool {
    name.starts_with(".ccauth-") && name.ends_with(".tmp")
}

impl Prepared {
    /// Where the temporary file is.
    #[cfg(all(test, unix))]
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Give the file the owner and group of `target`, which it will replace: root refreshing a
    /// user's credential leaves it the user's. Fails when that cannot be done (this user would
    /// take another user's credential over).
    pub(crate) fn keep_owner_of(&self, target: &Path) -> io::Result<()> {
        #[cfg(unix)]
        {
            super::ownership::own_like(&self.file, target)
        }
        #[cfg(not(unix))]
        {
            let _ = target;
            Ok(())
        }
    }

    /// Write `contents` from the start (the file is then exactly that) and fsync it. An fsync
    /// failure is returned apart (`Ok(Err(_))`): the bytes were written and may still be used.
    pub(crate) fn fill(&mut self, contents: &[u8]) -> io::Result<io::Result<()>> {
        self.write(contents)?;
        Ok(self.sync())
    }

    /// Write `contents` from the start and cut the file there: it is then exactly that (the side
    /// record and any padding gone), in the page cache, which a killed process leaves behind.
    /// Call [`make_room`](Self::make_room) first to keep the side record while writing.
    pub(crate) fn write(&mut self, contents: &[u8]) -> io::Result<()> {
        let length = u64::try_from(contents.len()).unwrap_or(u64::MAX);
        self.make_room(length)?;
        write_at_start(&mut self.file, contents)?;
        self.file.set_len(length)
    }

    /// Move the side record past `length` bytes of content if it lies within them (see
    /// [`side_at`](Self::side_at) for where it is then).
    pub(crate) fn make_room(&mut self, length: u64) -> io::Result<()> {
        if length > self.side_at {
            self.move_side(length)?;
        }
        Ok(())
    }

    /// Make what was written durable (fsync).
    pub(crate) fn sync(&self) -> io::Result<()> {
        self.file.sync_all()
    }

    /// Where the side record goes.
    pub(crate) fn side_at(&self) -> u64 {
        self.side_at
    }

    /// Write `record` as the side record: one `pwrite`, no fsync (it serves the next process
    /// should this one be killed; the page cache outlives a process).
    pub(crate) fn write_side(&self, record: &[u8]) -> io::Result<()> {
        write_at(&self.file, record, self.side_at)
    }

    /// Open `path`, a temporary file a killed process of this user prepared, to finish its write:
    /// only a regular private file with one name, never through a symlink. Its side record,
    /// at `side_at`, stays where it is, or moves past `size` when the content may need that room
    /// (the caller notes the new [`side_at`](Self::side_at) before writing the content).
    pub(crate) fn reopen(path: PathBuf, side_at: u64, size: u64) -> io::Result<Self> {
        let mut options = OpenOptions::new();
        options.read(true).write(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
        }
        let file = options.open(&path)?;
        check_private(&file)?;
        let mut prepared = Self {
            file,
            path,
            side_at,
        };
        if size > side_at {
            prepared.move_side(size)?;
        }
        Ok(prepared)
    }

    /// Copy the side record to `at` or beyond (the old copy stays until the content overwrites
    /// it; the caller's record names the new place first).
    fn move_side(&mut self, at: u64) -> io::Result<()> {
        let mut record = Vec::new();
        {
            use std::io::{Read, Seek, SeekFrom};
            let mut reader = &self.file;
            reader.seek(SeekFrom::Start(self.side_at))?;
            reader.take(SIDE_ROOM * 64).read_to_end(&mut record)?;
        }
        let record = zeroize::Zeroizing::new(record);
        let at = at.next_multiple_of(4096);
        if !record.is_empty() {
            write_at(&self.file, &record, at)?;
        }
        self.side_at = at;
        Ok(())
    }

    /// Rename the file over `target` and fsync the directory. On failure the file is handed
    /// back, for the caller to decide. On Windows a target another process holds open without
    /// `FILE_SHARE_DELETE` (an antivirus scan, an indexer, an editor) refuses the rename until
    /// it is let go: the rename is retried for up to [`HELD_TARGET_WAIT`], this complete file
    /// staying where a killed writer's successor finds it.
    pub(crate) fn install(self, target: &Path) -> Result<(), (Self, io::Error)> {
        if let Err(e) = rename_once_let_go(&self.path, target) {
            return Err((self, e));
        }
        if let Some(dir) = target.parent() {
            // The rename happened; a failed directory fsync only weakens durability.
            if let Err(e) = sync_dir(dir) {
                tracing::warn!(
                    error = %e,
                    "the refreshed credential is in place, but its directory could not be synced; a power loss may bring back the previous file"
                );
            }
        }
        Ok(())
    }

    /// Remove the file.
    pub(crate) fn discard(self) {
        drop(self.file);
        let _ = fs::remove_file(&self.path);
    }
}

/// How long a rename waits for another process to let go of its target (Windows).
pub(crate) const HELD_TARGET_WAIT: Duration = Duration::from_secs(5);

/// `fs::rename(from, to)`, retried while `to` is held open by another process that does not
/// share deletion (Windows' sharing violation, or access denied for a file open that way), for
/// up to [`HELD_TARGET_WAIT`]. Elsewhere, and for any other error, one attempt.
fn rename_once_let_go(from: &Path, to: &Path) -> io::Result<()> {
    let started = std::time::Instant::now();
    let mut pause = Duration::from_millis(10);
    loop {
        match fs::rename(from, to) {
            Err(e) if held_by_another(&e) && started.elapsed() < HELD_TARGET_WAIT => {
                std::thread::sleep(pause.min(HELD_TARGET_WAIT.saturating_sub(started.elapsed())));
                pause = (pause * 2).min(Duration::from_millis(200));
            }
            done => return done,
        }
    }
}

/// The target is open in another process in a way that refuses a rename over it, for now.
fn held_by_another(error: &io::Error) -> bool {
    // ERROR_ACCESS_DENIED, ERROR_SHARING_VIOLATION, ERROR_LOCK_VIOLATION.
    cfg!(windows) && matches!(error.raw_os_error(), Some(5 | 32 | 33))
}

/// Write `bytes` at the start of `file`, in one call where the platform has one.
pub(crate) fn write_at_start(file: &mut File, bytes: &[u8]) -> io::Result<()> {
    write_at(file, bytes, 0)
}

/// Write `bytes` at `offset` of `file`, in one call where the platform has one.
fn write_at(file: &File, bytes: &[u8], offset: u64) -> io::Result<()> {
    #[cfg(unix)]
    {
        std::os::unix::fs::FileExt::write_all_at(file, bytes, offset)
    }
    #[cfg(windows)]
    {
        let mut written = 0;
        while written < bytes.len() {
            let at = offset + written as u64;
            match std::os::windows::fs::FileExt::seek_write(file, &bytes[written..], at) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// A file a killed process of this user left: regular, one name, readable by its owner only, and
/// owned by this user (or, for root, by anyone: root prepares files owned like the target).
fn check_private(file: &File) -> io::Result<()> {
    let meta = file.metadata()?;
    let refuse = |why: &str| {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            why.to_owned(),
        ))
    };
    if !meta.is_file() {
        return refuse("not a regular file");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let euid = rustix::process::geteuid().as_raw();
        if meta.nlink() != 1 || meta.mode() & 0o077 != 0 || (euid != 0 && meta.uid() != euid) {
            return refuse("not a private file of this user with one name");
        }
    }
    Ok(())
}

/// Reserve `size` bytes for `file`, so that writing that much later cannot fail for space:
/// allocated without growing the file where `fallocate` works, else written as zeros (the
/// file is cut to length once written).
fn reserve(file: &File, size: u64) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use rustix::fs::{FallocateFlags, fallocate};
        match fallocate(file, FallocateFlags::KEEP_SIZE, 0, size) {
            Ok(()) => return Ok(()),
            // File systems without fallocate: write the space instead.
            Err(e) if e == rustix::io::Errno::OPNOTSUPP || e == rustix::io::Errno::NOSYS => {}
            Err(e) => return Err(e.into()),
        }
    }
    let mut writer = file;
    let zeros = [0u8; 4096];
    let mut left = size;
    while left > 0 {
        let n = usize::try_from(left.min(4096)).unwrap_or(4096);
        writer.write_all(&zeros[..n])?;
        left -= n as u64;
    }
    writer.flush()
}

/// Replace `path` with `contents` at once: prepare, fill, install. A symlink is written through
/// to its target and stays a symlink.
pub(crate) fn write_atomically(path: &Path, contents: &[u8]) -> io::Result<()> {
    let target = write_target(path)?;
    let mut prepared = prepare(temp_path(&parent_of(&target)), contents.len() as u64)?;
    if let Err(e) = prepared
        .keep_owner_of(&target)
        .and_then(|()| prepared.fill(contents))
        .and_then(|synced| synced)
    {
        prepared.discard();
        return Err(e);
    }
    prepared.install(&target).map_err(|(prepared, e)| {
        prepared.discard();
        e
    })
}

/// Overwrite `target` in place (no rename): for when the directory refuses a new entry but the
/// file itself is writable. Not atomic for a concurrent reader, so only a fallback.
pub(crate) fn overwrite_in_place(target: &Path, contents: &[u8]) -> io::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NOFOLLOW);
    }
    let mut file = options.open(target)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    file.write_all(contents)?;
    file.set_len(u64::try_from(contents.len()).unwrap_or(u64::MAX))?;
    file.sync_all()
}

/// The directory holding `path` (`.` for a bare name).
pub(crate) fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// The file a write must replace: `path` itself, or what it links to.
pub(crate) fn write_target(path: &Path) -> io::Result<PathBuf> {
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

/// Options for a new file only its owner can read, never opened through a symlink.
pub(crate) fn private_options() -> OpenOptions {
    let mut options = OpenOptions::new();
    options.read(true).write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600).custom_flags(libc::O_NOFOLLOW);
    }
    options
}

/// Create `dir` (and its missing parents) readable by the owner only, as the CLI does for
/// `~/.claude`; each directory made is owned like the one it is made in, so root working with a
/// user's `HOME` (sudo, cron) leaves the user's `~/.cache` and `~/.local` the user's.
pub(crate) fn create_private_dir(dir: &Path) -> io::Result<()> {
    if fs::metadata(dir).is_ok_and(|meta| meta.is_dir()) {
        return Ok(());
    }
    let parent = parent_of(dir);
    if parent != dir && fs::symlink_metadata(&parent).is_err() {
        create_private_dir(&parent)?;
    }
    #[cfg(unix)]
    let builder = {
        use std::os::unix::fs::DirBuilderExt;
        let mut builder = fs::DirBuilder::new();
        builder.mode(0o700);
        builder
    };
    #[cfg(not(unix))]
    let builder = fs::DirBuilder::new();
    match builder.create(dir) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
        made => made?,
    }
    #[cfg(unix)]
    if rustix::process::geteuid().is_root() {
        own_like_parent(dir, &parent)?;
    }
    Ok(())
}

/// Give `dir`, just made in `parent`, the owner and group of `parent` (opened without following
/// a link: what was made is what is given).
#[cfg(unix)]
fn own_like_parent(dir: &Path, parent: &Path) -> io::Result<()> {
    use rustix::fs::{Mode, OFlags, fchown, fstat, open, stat};
    let parent = stat(parent)?;
    let made = open(
        dir,
        OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let now = fstat(&made)?;
    if (now.st_uid, now.st_gid) != (parent.st_uid, parent.st_gid) {
        fchown(
            &made,
            Some(rustix::fs::Uid::from_raw(parent.st_uid)),
            Some(rustix::fs::Gid::from_raw(parent.st_gid)),
        )?;
    }
    Ok(())
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
    fn a_prepared_file_holds_its_space_and_is_cut_to_length() {
        let dir = tempfile::tempdir().unwrap();
        let mut prepared = prepare(temp_path(dir.path()), 8192).unwrap();
        assert!(is_temp_name(
            &prepared.path().file_name().unwrap().to_string_lossy()
        ));
        let meta = fs::metadata(prepared.path()).unwrap();
        let reserved = std::os::unix::fs::MetadataExt::blocks(&meta) * 512;
        assert!(
            reserved >= 8192 || meta.len() == 8192,
            "{reserved} bytes reserved"
        );
        prepared.fill(b"short").unwrap().unwrap();
        let target = dir.path().join(format!("{}.json", "n".repeat(250)));
        prepared.install(&target).unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"short");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_side_record_survives_until_the_content_is_written_and_moves_out_of_its_way() {
        let dir = tempfile::tempdir().unwrap();
        let path = temp_path(dir.path());
        let prepared = prepare(path.clone(), 100).unwrap();
        assert_eq!(prepared.side_at(), 100);
        prepared.write_side(b"{\"side\":1}").unwrap();
        let read = || fs::read(&path).unwrap();
        assert_eq!(&read()[100..], b"{\"side\":1}");
        assert!(
            read()[..100].iter().all(|b| *b == 0),
            "the room is unwritten"
        );

        // Taken up again (by the next process) for content that needs more room: the record
        // moves past it first, and the content never overwrites it.
        drop(prepared);
        let mut again = Prepared::reopen(path.clone(), 100, 5000).unwrap();
        let moved = again.side_at();
        assert!(moved >= 5000, "{moved}");
        assert_eq!(&read()[moved as usize..], b"{\"side\":1}");
        again.make_room(6000).unwrap();
        let moved = again.side_at();
        assert!(moved >= 6000, "{moved}");
        assert_eq!(&read()[moved as usize..], b"{\"side\":1}");

        // Written: the file is the content and nothing else.
        again.write(&[b'x'; 6000]).unwrap();
        again.sync().unwrap();
        assert_eq!(read(), vec![b'x'; 6000]);
    }

    #[test]
    fn only_a_private_file_of_ours_with_one_name_is_taken_up() {
        let dir = tempfile::tempdir().unwrap();
        let path = temp_path(dir.path());
        drop(prepare(path.clone(), 10).unwrap());
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(
            Prepared::reopen(path.clone(), 10, 10).is_err(),
            "readable by others"
        );
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        let other = dir.path().join("other-name");
        fs::hard_link(&path, &other).unwrap();
        assert!(Prepared::reopen(path.clone(), 10, 10).is_err(), "two names");
        fs::remove_file(&other).unwrap();
        let link = temp_path(dir.path());
        symlink(&path, &link).unwrap();
        assert!(Prepared::reopen(link, 10, 10).is_err(), "a symlink");
        Prepared::reopen(path, 10, 10).unwrap();
    }

    #[test]
    fn a_prepared_file_never_follows_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, b"keep").unwrap();
        let planted = temp_path(dir.path());
        symlink(&victim, &planted).unwrap();
        assert!(prepare(planted, 16).is_err());
        assert_eq!(fs::read(&victim).unwrap(), b"keep");
    }

    #[test]
    fn in_place_overwrite_keeps_the_inode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        fs::write(&path, b"a longer old content").unwrap();
        let inode = |p: &Path| std::os::unix::fs::MetadataExt::ino(&fs::metadata(p).unwrap());
        let before = inode(&path);
        overwrite_in_place(&path, b"new").unwrap();
        assert_eq!(
            (fs::read(&path).unwrap(), inode(&path)),
            (b"new".to_vec(), before)
        );
        let link = dir.path().join("l");
        symlink(&path, &link).unwrap();
        assert!(overwrite_in_place(&link, b"x").is_err());
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
