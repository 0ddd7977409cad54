//! The `claude` CLI's own refresh locks, taken the way the CLI takes them, so our refresh and the
//! CLI's never overlap.
//!
//! The CLI uses `proper-lockfile`: a lock is a directory created with `mkdir` (atomic), kept fresh
//! by touching its mtime while held, removed on release, and considered abandoned ("stale") when
//! its mtime is older than a bound. It takes two: `<config dir>/.oauth_refresh.lock` (stale after
//! 60 s) and the legacy `<realpath(config dir)>.lock` (stale after 10 s).
//!
//! Differences from the CLI, on purpose: a lock whose mtime lies in the future beyond a small
//! tolerance is stale (the CLI would wait on it forever), and both locks are taken all-or-nothing
//! so a process that takes them in the other order can never deadlock with us. A crashed process
//! of ours leaves a record (the [`Journal`]) that lets the next one remove its locks at once
//! instead of waiting for them to go stale — whatever instant it was killed at, since a lock
//! directory reaches its path (by a rename that never replaces) only once it is on record.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

use crate::error::{ClaudeCodeAuthError, ClaudeCodeAuthResult};

use super::liveness::process_alive;

/// How often a held lock's mtime is refreshed (the CLI's interval).
pub(crate) const TOUCH_INTERVAL: Duration = Duration::from_secs(5);

/// A lock mtime this far in the future is treated as stale rather than waited on.
pub(crate) const FUTURE_TOLERANCE: Duration = Duration::from_secs(10);

/// Longest pause between two attempts.
const MAX_PAUSE: Duration = Duration::from_millis(100);

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

/// What the current holder wrote down, so a successor can tell our orphans from live locks.
#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Record {
    pid: u32,
    locks: Vec<Identity>,
    /// A lock directory on its way in (see [`create_lock_dir`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    staged: Option<Staged>,
    /// The temporary file a refreshed credential is written to before it replaces the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) prepared: Option<PreparedRecord>,
}

impl Record {
    /// An empty record of this process.
    pub(crate) fn new() -> Self {
        Self {
            pid: std::process::id(),
            ..Self::default()
        }
    }

    /// Stop naming `released` (lock directories given back).
    pub(crate) fn forget(&mut self, released: &[Identity]) {
        self.locks
            .retain(|lock| !released.iter().any(|r| r.path == lock.path));
    }

    /// Leave this record to whoever takes the lock next, even while this process lives (pid 0
    /// names no process).
    pub(crate) fn release_holder(&mut self) {
        self.pid = 0;
    }
}

/// Paths in the journal as their bytes (hex), so that any path the system allows — not only
/// UTF-8 — can be recorded.
mod path_bytes {
    use std::path::{Path, PathBuf};

    use serde::{Deserialize, Deserializer, Serializer};

    fn to_hex(path: &Path) -> String {
        #[cfg(unix)]
        let bytes = std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str()).to_vec();
        #[cfg(not(unix))]
        let bytes = path.to_string_lossy().into_owned().into_bytes();
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn from_hex(text: &str) -> Option<PathBuf> {
        let bytes: Vec<u8> = (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
            .collect::<Option<_>>()?;
        #[cfg(unix)]
        let path =
            PathBuf::from(<std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(bytes));
        #[cfg(not(unix))]
        let path = PathBuf::from(String::from_utf8(bytes).ok()?);
        Some(path)
    }

    pub(super) fn serialize<S: Serializer>(path: &Path, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&to_hex(path))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<PathBuf, D::Error> {
        let text = String::deserialize(d)?;
        from_hex(&text).ok_or_else(|| serde::de::Error::custom("not a hex path"))
    }

    /// The same for an optional path.
    pub(super) mod option {
        use std::path::PathBuf;

        use serde::{Deserialize, Deserializer, Serializer};

        #[allow(clippy::ref_option)]
        pub(in super::super) fn serialize<S: Serializer>(
            path: &Option<PathBuf>,
            serializer: S,
        ) -> Result<S::Ok, S::Error> {
            match path {
                Some(path) => serializer.serialize_some(&super::to_hex(path)),
                None => serializer.serialize_none(),
            }
        }

        pub(in super::super) fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<PathBuf>, D::Error> {
            Option::<String>::deserialize(d)?
                .map(|text| {
                    super::from_hex(&text).ok_or_else(|| serde::de::Error::custom("not a hex path"))
                })
                .transpose()
        }
    }
}

/// A prepared write, as recorded: once `complete`, the temporary file holds the whole refreshed
/// document, the only copy of a rotated login until it replaces `target`. A successor hands it
/// over when `target` still holds the refresh token it replaced.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct PreparedRecord {
    #[serde(with = "path_bytes")]
    pub(crate) temp: PathBuf,
    #[serde(with = "path_bytes")]
    pub(crate) target: PathBuf,
    pub(crate) complete: bool,
    /// SHA-256 (hex) of the refresh token `target` held when the write began; `None` when it
    /// held none.
    #[serde(default)]
    pub(crate) replaced_sha256: Option<String>,
}

/// A lock directory being created: made under a name only this process uses
/// (`.ccauth-<pid>-<n>.staging`, beside the lock), noted here, then renamed onto the lock path
/// without replacing anything. A successor can thus remove it wherever a kill left it, and never
/// mistakes someone else's directory for it. `staging: None`: a file system that cannot rename
/// without replacing, where the lock is made with a plain `mkdir` once noted here.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct Staged {
    #[serde(with = "path_bytes::option", default)]
    staging: Option<PathBuf>,
    #[serde(with = "path_bytes")]
    lock: PathBuf,
    /// Device and inode, once the directory exists.
    made: Option<(u64, u64)>,
}

/// A lock directory as we left it: path, device, inode and the mtime we last gave it, so a
/// directory someone else created at the same path — even on a reused inode — is never taken
/// for ours.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Identity {
    #[serde(with = "path_bytes")]
    path: PathBuf,
    dev: u64,
    ino: u64,
    mtime_ns: u64,
}

/// The identities of held locks, updated by the toucher after each touch.
type Held = Arc<HeldInner>;
type HeldInner = Mutex<Vec<Identity>>;

/// The file our processes keep their [`Record`] in: the OS lock file, written only by the
/// process holding the OS lock.
pub(crate) struct Journal<'a>(pub(crate) &'a mut File);

impl Journal<'_> {
    fn read(&mut self) -> Option<Record> {
        let mut text = String::new();
        self.0.seek(SeekFrom::Start(0)).ok()?;
        self.0.read_to_string(&mut text).ok()?;
        // The first value: a kill between `write` and `set_len` leaves an older record's tail.
        serde_json::Deserializer::from_str(&text)
            .into_iter()
            .next()?
            .ok()
    }

    pub(crate) fn write(&mut self, record: &Record) -> io::Result<()> {
        let text = serde_json::to_vec(record).map_err(io::Error::other)?;
        // Overwritten in place, never truncated first: a kill in between would leave no record
        // at all. A shorter record leaves an older one's tail behind it, which `read` ignores
        // (it takes the first JSON value). One write of a few hundred bytes is not split by a
        // kill. No fsync: the record serves the next process after a crash of this one, and the
        // page cache outlives a process; after a machine crash every holder is dead anyway and
        // the locks go stale on their own.
        super::atomic::write_at_start(self.0, &text)
    }

    /// Forget the record (the holder released its locks).
    pub(crate) fn clear(&mut self) -> io::Result<()> {
        self.0.set_len(0)
    }

    /// Remove the locks a dead process of ours left behind, and hand over the write it had
    /// prepared, if any (the caller adopts or removes it once it holds the locks). Call with the
    /// OS lock held. Only what this code itself would have made is touched: lock directories at
    /// the paths in `expected`, staging directories with the names derived from them and the
    /// dead process's pid, temporary files beside a credential in one of `dirs`. Anything else
    /// a journal names — hand-written, or from another version — is ignored.
    pub(crate) fn recover_orphans(&mut self, expected: &[PathBuf], dirs: &[PathBuf]) -> Orphans {
        let Some(record) = self.read() else {
            return Orphans::default();
        };
        // pid 0: a record its holder left on purpose (see `Record::release_holder`).
        let held =
            record.pid != 0 && (record.pid == std::process::id() || process_alive(record.pid));
        if held {
            return Orphans::default();
        }
        let mut removed = record
            .locks
            .iter()
            .filter(|lock| expected.contains(&lock.path))
            .filter(|lock| identity_of(&lock.path).as_ref() == Some(lock))
            .filter(|lock| std::fs::remove_dir(&lock.path).is_ok())
            .count();
        if let Some(staged) = record
            .staged
            .as_ref()
            .filter(|s| expected.contains(&s.lock))
        {
            let staging = staged
                .staging
                .as_ref()
                .filter(|path| is_staging_of(path, &staged.lock, record.pid));
            if let Some(staging) = staging {
                // A name only the dead process used: whatever is there is its.
                let _ = std::fs::remove_dir(staging);
            }
            let renamed = identity_of(&staged.lock)
                .is_some_and(|now| Some((now.dev, now.ino)) == staged.made);
            if staged.made.is_some() && renamed && std::fs::remove_dir(&staged.lock).is_ok() {
                removed += 1;
            }
        }
        let _ = self.clear();
        if removed > 0 {
            tracing::debug!(
                removed,
                pid = record.pid,
                "removed refresh locks left by a dead process"
            );
        }
        let prepared = record.prepared.filter(|prepared| {
            let beside = prepared.temp.parent() == prepared.target.parent();
            let ours = prepared
                .temp
                .file_name()
                .is_some_and(|n| super::atomic::is_temp_name(&n.to_string_lossy()));
            let dir_ok = prepared
                .target
                .parent()
                .is_some_and(|dir| dirs.iter().any(|d| d == dir));
            beside && ours && dir_ok
        });
        Orphans { prepared }
    }
}

/// A staging name this code gives `pid`'s lock directories beside `lock`:
/// `.ccauth-<pid>-<n>.staging` in the same directory. Short, whatever the lock's name.
fn staging_name(lock: &Path, pid: u32) -> PathBuf {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    super::atomic::parent_of(lock).join(format!(".ccauth-{pid}-{n}.staging"))
}

/// Whether `path` is a staging name [`staging_name`] gives `pid` beside `lock`.
fn is_staging_of(path: &Path, lock: &Path, pid: u32) -> bool {
    let beside = path.parent() == lock.parent();
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let derived = name.as_deref().and_then(|n| {
        let rest = n.strip_prefix(&format!(".ccauth-{pid}-"))?;
        let counter = rest.strip_suffix(".staging")?;
        (!counter.is_empty() && counter.bytes().all(|b| b.is_ascii_digit())).then_some(())
    });
    beside && derived.is_some()
}

/// What a dead holder left besides its lock directories (which are removed): the write it had
/// prepared.
#[derive(Debug, Default)]
pub(crate) struct Orphans {
    pub(crate) prepared: Option<PreparedRecord>,
}

/// Held lock directories, refreshed in the background and removed on drop.
pub(crate) struct HeldDirLocks {
    held: Held,
}

impl std::fmt::Debug for HeldDirLocks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeldDirLocks")
            .field("held", &self.held)
            .finish()
    }
}

impl HeldDirLocks {
    /// The held directories as they are now (the toucher moves their mtimes).
    pub(crate) fn identities(&self) -> Vec<Identity> {
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The first held directory that is no longer ours (removed, or replaced by someone who
    /// took it over — even on the same inode, which file systems reuse at once: its mtime is not
    /// the one we last gave it), if any.
    pub(crate) fn lost(&self) -> Option<PathBuf> {
        let held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        held.iter()
            .find(|lock| identity_of(&lock.path).as_ref() != Some(*lock))
            .map(|lock| lock.path.clone())
    }

    /// Stop touching and remove the directories that are still ours. Idempotent.
    pub(crate) fn release(&mut self) {
        // Emptied under the toucher's lock: it never touches a directory after this.
        let held = std::mem::take(&mut *self.held.lock().unwrap_or_else(PoisonError::into_inner));
        for lock in held.iter().rev() {
            if identity_of(&lock.path).as_ref() == Some(lock) {
                let _ = std::fs::remove_dir(&lock.path);
            }
        }
    }
}

impl Drop for HeldDirLocks {
    fn drop(&mut self) {
        self.release();
    }
}

/// Take every lock in `locks`, all or nothing, waiting at most `wait`; note them in `journal`
/// on top of what `record` already holds (`record` then names them too). Blocking: call from a
/// blocking thread.
pub(crate) fn acquire_all(
    locks: &[DirLock],
    wait: Duration,
    journal: &mut Journal<'_>,
    record: &mut Record,
) -> ClaudeCodeAuthResult<HeldDirLocks> {
    let started = Instant::now();
    let mut pause = Duration::from_millis(5);
    let mut ahead = FutureDated::default();
    loop {
        match try_all(locks, journal, record, &mut ahead) {
            Ok(held) => {
                let held = Arc::new(Mutex::new(held));
                keep_touched(&held);
                return Ok(HeldDirLocks { held });
            }
            Err(Busy::Io(path, source)) => {
                return Err(ClaudeCodeAuthError::Io {
                    path: path.display().to_string(),
                    source,
                });
            }
            Err(Busy::Journal(source)) => {
                return Err(ClaudeCodeAuthError::Io {
                    path: "refresh lock journal".into(),
                    source,
                });
            }
            Err(Busy::Held(path)) => {
                let waited = started.elapsed();
                if waited >= wait {
                    return Err(ClaudeCodeAuthError::LockTimeout {
                        lock: path.display().to_string(),
                        waited,
                    });
                }
                thread::sleep(pause.min(wait - waited));
                pause = (pause * 2).min(MAX_PAUSE);
            }
        }
    }
}

enum Busy {
    /// Someone holds this lock and it is not stale.
    Held(PathBuf),
    /// The lock cannot be taken for another reason (no permission, no such directory...).
    Io(PathBuf, io::Error),
    /// The journal could not be written: taking a lock without a record could strand it.
    Journal(io::Error),
}

fn try_all(
    locks: &[DirLock],
    journal: &mut Journal<'_>,
    record: &mut Record,
    ahead: &mut FutureDated,
) -> Result<Vec<Identity>, Busy> {
    let base = record.locks.len();
    for lock in locks {
        let taken = try_one(lock, journal, record, ahead);
        record.staged = None;
        match taken {
            Ok(Some(identity)) => record.locks.push(identity),
            Ok(None) => {}
            Err(busy) => {
                release_all(&record.locks[base..]);
                record.locks.truncate(base);
                let _ = journal.write(record);
                return Err(busy);
            }
        }
    }
    if let Err(e) = journal.write(record) {
        release_all(&record.locks[base..]);
        record.locks.truncate(base);
        return Err(Busy::Journal(e));
    }
    Ok(record.locks[base..].to_vec())
}

/// Take `lock`; `None` when it cannot exist at all (its parent is missing or not writable):
/// then no CLI can hold it either, and there is nothing to coordinate.
fn try_one(
    lock: &DirLock,
    journal: &mut Journal<'_>,
    record: &mut Record,
    ahead: &mut FutureDated,
) -> Result<Option<Identity>, Busy> {
    // One steal at most per attempt: if the lock is taken again right after, someone is alive.
    for _ in 0..2 {
        match create_lock_dir(&lock.path, journal, record) {
            Ok(()) => {
                return identity_of(&lock.path).map(Some).ok_or_else(|| {
                    Busy::Io(lock.path.clone(), io::Error::other("the lock vanished"))
                });
            }
            Err(CreateError::Io(e)) if cannot_exist(&e) => return Ok(None),
            Err(CreateError::Io(e)) if e.kind() == io::ErrorKind::AlreadyExists => {
                let Some(stale) = stale_identity(&lock.path, lock.stale_after, ahead) else {
                    return Err(Busy::Held(lock.path.clone()));
                };
                tracing::debug!(lock = %lock.path.display(), "taking over a stale refresh lock");
                take_over(&stale, record.pid).map_err(|e| Busy::Io(lock.path.clone(), e))?;
            }
            Err(CreateError::Journal(e)) => return Err(Busy::Journal(e)),
            Err(CreateError::Io(e)) => return Err(Busy::Io(lock.path.clone(), e)),
        }
    }
    Err(Busy::Held(lock.path.clone()))
}

/// Remove the stale lock `stale` — and nothing else: it is first renamed aside (to a staging
/// name of ours), and removed only if what was moved is still that directory, untouched; a lock
/// someone took or touched in the meantime is put back.
fn take_over(stale: &Identity, pid: u32) -> io::Result<()> {
    let aside = staging_name(&stale.path, pid);
    match std::fs::rename(&stale.path, &aside) {
        Ok(()) => {}
        // Gone meanwhile: the next mkdir decides.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    }
    let moved = identity_of(&aside).map(|i| (i.dev, i.ino, i.mtime_ns));
    if moved == Some((stale.dev, stale.ino, stale.mtime_ns)) {
        let _ = std::fs::remove_dir(&aside);
        return Ok(());
    }
    tracing::debug!(lock = %stale.path.display(), "a stale lock came alive while being taken over; put back");
    rename_noreplace(&aside, &stale.path).or_else(|e| {
        if no_noreplace(&e) && !stale.path.exists() {
            std::fs::rename(&aside, &stale.path)
        } else {
            Err(e)
        }
    })
}

/// Locks seen dated in the future, and since when: one whose mtime lies ahead beyond the
/// tolerance is stale only if it stays untouched for a touch interval — a live holder whose
/// clock stepped back touches it again within that time.
#[derive(Default)]
struct FutureDated(Vec<(Identity, Instant)>);

/// Why a lock directory was not created.
enum CreateError {
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
fn create_lock_dir(
    path: &Path,
    journal: &mut Journal<'_>,
    record: &mut Record,
) -> Result<(), CreateError> {
    create_lock_dir_with(path, journal, record, rename_noreplace)
}

/// [`create_lock_dir`] with the no-replace rename given, so the fallback can be tested.
fn create_lock_dir_with(
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
static NOREPLACE_WORKS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

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
fn no_noreplace(error: &io::Error) -> bool {
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
fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    rustix::fs::renameat_with(
        rustix::fs::CWD,
        from,
        rustix::fs::CWD,
        to,
        rustix::fs::RenameFlags::NOREPLACE,
    )
    .map_err(io::Error::from)
}

#[cfg(not(any(target_os = "linux", target_os = "android", target_vendor = "apple")))]
fn rename_noreplace(_from: &Path, _to: &Path) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "no rename without replacing here",
    ))
}

fn cannot_exist(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::PermissionDenied
            | io::ErrorKind::ReadOnlyFilesystem
            | io::ErrorKind::NotFound
    )
}

fn release_all(held: &[Identity]) {
    for lock in held.iter().rev() {
        let _ = std::fs::remove_dir(&lock.path);
    }
}

/// The lock at `path`, if it is abandoned: not touched for `stale_after`, or dated in the future
/// beyond the tolerance and left untouched for longer than a touch interval.
fn stale_identity(path: &Path, stale_after: Duration, ahead: &mut FutureDated) -> Option<Identity> {
    // Gone meanwhile: not stale; the next mkdir decides.
    let identity = identity_of(path)?;
    let modified = SystemTime::UNIX_EPOCH + Duration::from_nanos(identity.mtime_ns);
    match SystemTime::now().duration_since(modified) {
        Ok(age) => (age > stale_after).then_some(identity),
        Err(early) if early.duration() <= FUTURE_TOLERANCE => None,
        Err(_) => {
            ahead
                .0
                .retain(|(seen, _)| seen.path != identity.path || *seen == identity);
            match ahead.0.iter().find(|(seen, _)| *seen == identity) {
                Some((_, since)) if since.elapsed() > TOUCH_INTERVAL + Duration::from_secs(1) => {
                    Some(identity)
                }
                Some(_) => None,
                None => {
                    ahead.0.push((identity, Instant::now()));
                    None
                }
            }
        }
    }
}

/// Touch `held` every [`TOUCH_INTERVAL`] until it is released (emptied) and dropped. One thread
/// serves every lock of the process, so taking a lock costs no thread.
fn keep_touched(held: &Held) {
    static REGISTRY: OnceLock<Mutex<Vec<Weak<HeldInner>>>> = OnceLock::new();
    let mut started = false;
    let registry = REGISTRY.get_or_init(|| {
        started = true;
        Mutex::new(Vec::new())
    });
    registry
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(Arc::downgrade(held));
    if started {
        let spawned = thread::Builder::new()
            .name("claude-code-auth-lock-toucher".into())
            .spawn(move || {
                loop {
                    thread::sleep(TOUCH_INTERVAL);
                    let live: Vec<Held> = {
                        let mut all = registry.lock().unwrap_or_else(PoisonError::into_inner);
                        all.retain(|weak| weak.strong_count() > 0);
                        all.iter().filter_map(Weak::upgrade).collect()
                    };
                    live.iter().for_each(touch);
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start the lock toucher; held locks may go stale");
        }
    }
}

/// Touch every lock in `held` that is still ours, and remember its new mtime.
fn touch(held: &Held) {
    let mut held = held.lock().unwrap_or_else(PoisonError::into_inner);
    for lock in held.iter_mut() {
        if identity_of(&lock.path).as_ref() != Some(lock) {
            continue;
        }
        let touched = File::open(&lock.path).and_then(|d| d.set_modified(SystemTime::now()));
        if let (Ok(()), Some(now)) = (touched, identity_of(&lock.path)) {
            *lock = now;
        }
    }
}

#[cfg(unix)]
fn identity_of(path: &Path) -> Option<Identity> {
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
fn identity_of(path: &Path) -> Option<Identity> {
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

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(unix)]
    use std::os::unix::ffi::OsStrExt;

    fn journal_file(dir: &Path) -> File {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join("journal"))
            .unwrap()
    }

    fn set_mtime(path: &Path, at: SystemTime) {
        File::open(path).unwrap().set_modified(at).unwrap();
    }

    #[test]
    fn the_cli_locks_sit_where_the_cli_puts_them() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join(".claude");
        std::fs::create_dir(&config).unwrap();
        let locks = claude_cli_locks(&config);
        let real = std::fs::canonicalize(&config).unwrap();
        assert_eq!(locks[0].path, config.join(".oauth_refresh.lock"));
        assert_eq!(locks[0].stale_after, Duration::from_secs(60));
        assert_eq!(locks[1].path, real.with_file_name(".claude.lock"));
        assert_eq!(locks[1].stale_after, Duration::from_secs(10));
    }

    #[test]
    fn taken_all_or_nothing_and_removed_on_release() {
        let dir = tempfile::tempdir().unwrap();
        let locks = claude_cli_locks(dir.path());
        let mut file = journal_file(dir.path());
        let mut held = acquire_all(
            &locks,
            Duration::ZERO,
            &mut Journal(&mut file),
            &mut Record::new(),
        )
        .unwrap();
        assert!(locks.iter().all(|l| l.path.is_dir()));
        // A second taker finds them held and gives up at its bound, naming the lock.
        let mut other = journal_file(dir.path());
        let err = acquire_all(
            &locks,
            Duration::from_millis(50),
            &mut Journal(&mut other),
            &mut Record::new(),
        )
        .unwrap_err();
        assert!(err.to_string().contains(".oauth_refresh.lock"), "{err}");
        held.release();
        assert!(locks.iter().all(|l| !l.path.exists()));

        // The second lock held by someone else: the first is not kept while waiting.
        std::fs::create_dir(&locks[1].path).unwrap();
        let err = acquire_all(
            &locks,
            Duration::from_millis(50),
            &mut Journal(&mut file),
            &mut Record::new(),
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains(&locks[1].path.display().to_string()),
            "{err}"
        );
        assert!(!locks[0].path.exists());
        std::fs::remove_dir(&locks[1].path).unwrap();
    }

    #[test]
    fn stale_and_future_locks_are_taken_over_fresh_ones_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let lock = DirLock {
            path: dir.path().join(".oauth_refresh.lock"),
            stale_after: Duration::from_secs(60),
        };
        let now = SystemTime::now();
        // Dated in the future, a lock is stale only once seen untouched for a touch interval
        // (`the_clock_stepping_back_does_not_make_a_live_lock_stale`): not at a first look.
        let cases = [
            (now - Duration::from_secs(61), true),
            (now - Duration::from_secs(30), false),
            (now + Duration::from_secs(5), false),
            (now + Duration::from_secs(3600), false),
        ];
        for (mtime, taken) in cases {
            std::fs::create_dir(&lock.path).unwrap();
            set_mtime(&lock.path, mtime);
            let mut file = journal_file(dir.path());
            let got = acquire_all(
                std::slice::from_ref(&lock),
                Duration::ZERO,
                &mut Journal(&mut file),
                &mut Record::new(),
            );
            assert_eq!(got.is_ok(), taken, "mtime {mtime:?}");
            drop(got);
            let _ = std::fs::remove_dir(&lock.path);
        }
    }

    #[test]
    fn a_dead_holders_locks_are_recovered_a_live_holders_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let locks = claude_cli_locks(dir.path());
        let mut file = journal_file(dir.path());
        let held = acquire_all(
            &locks,
            Duration::ZERO,
            &mut Journal(&mut file),
            &mut Record::new(),
        )
        .unwrap();
        // Pretend the holder crashed: forget the guard, rewrite the record with a dead pid.
        let identities = held.held.lock().unwrap().clone();
        std::mem::forget(held);
        let dead = Record {
            pid: u32::MAX - 7,
            locks: identities.clone(),
            ..Record::default()
        };
        Journal(&mut file).write(&dead).unwrap();
        // A live pid (ours is excluded, so use init) keeps them.
        Journal(&mut file)
            .write(&Record {
                pid: 1,
                locks: identities,
                ..Record::default()
            })
            .unwrap();
        let expected: Vec<PathBuf> = locks.iter().map(|l| l.path.clone()).collect();
        Journal(&mut file).recover_orphans(&expected, &[]);
        assert!(locks.iter().all(|l| l.path.exists()));
        Journal(&mut file).write(&dead).unwrap();
        Journal(&mut file).recover_orphans(&expected, &[]);
        assert!(locks.iter().all(|l| !l.path.exists()));
        assert_eq!(Journal(&mut file).read(), None);
    }

    #[test]
    fn a_kill_at_any_step_of_taking_a_lock_leaves_nothing_to_wait_for() {
        let dir = tempfile::tempdir().unwrap();
        let lock = dir.path().join(".oauth_refresh.lock");
        let staging = dir.path().join(".ccauth-4294967288-3.staging");
        let expected = [lock.clone()];
        let mut file = journal_file(dir.path());
        let dead = |made: Option<(u64, u64)>| Record {
            pid: u32::MAX - 7,
            locks: Vec::new(),
            staged: Some(Staged {
                staging: Some(staging.clone()),
                lock: lock.clone(),
                made,
            }),
            prepared: None,
        };
        // Killed after making the staging directory, before noting its inode.
        std::fs::create_dir(&staging).unwrap();
        Journal(&mut file).write(&dead(None)).unwrap();
        Journal(&mut file).recover_orphans(&expected, &[]);
        assert!(!staging.exists());

        // Killed after the rename, before the identity was recorded.
        std::fs::create_dir(&staging).unwrap();
        let made = dev_ino(&staging);
        std::fs::rename(&staging, &lock).unwrap();
        Journal(&mut file).write(&dead(made)).unwrap();
        Journal(&mut file).recover_orphans(&expected, &[]);
        assert!(!lock.exists());

        // Someone else's lock at the path (another inode) is left alone.
        std::fs::create_dir(&staging).unwrap();
        let made = dev_ino(&staging);
        std::fs::remove_dir(&staging).unwrap();
        std::fs::create_dir(dir.path().join("keep-the-inode-busy")).unwrap();
        std::fs::create_dir(&lock).unwrap();
        if dev_ino(&lock) != made {
            Journal(&mut file).write(&dead(made)).unwrap();
            Journal(&mut file).recover_orphans(&expected, &[]);
            assert!(lock.exists());
        }
    }

    /// A journal decides nothing this code would not have made: a hand-written record naming
    /// any empty directory — as a lock, as a staging directory, with a lock path not among ours —
    /// removes nothing.
    #[test]
    fn a_journal_removes_only_what_this_code_derives() {
        let dir = tempfile::tempdir().unwrap();
        let lock = dir.path().join(".oauth_refresh.lock");
        let victim = dir.path().join("someones-empty-dir");
        let expected = [lock.clone()];
        let dead = u32::MAX - 7;
        let mut file = journal_file(dir.path());
        let forged = [
            // A foreign directory as the staging directory of one of our locks.
            Staged {
                staging: Some(victim.clone()),
                lock: lock.clone(),
                made: None,
            },
            // Our derived name, but for another pid than the record's.
            Staged {
                staging: Some(dir.path().join(".ccauth-1-0.staging")),
                lock: lock.clone(),
                made: None,
            },
            // A lock path that is not ours, "made" on the victim's inode.
            Staged {
                staging: None,
                lock: victim.clone(),
                made: None,
            },
        ];
        std::fs::create_dir(dir.path().join(".ccauth-1-0.staging")).unwrap();
        for staged in forged {
            std::fs::create_dir_all(&victim).unwrap();
            let mut staged = staged;
            if staged.lock == victim {
                staged.made = dev_ino(&victim);
            }
            let record = Record {
                pid: dead,
                locks: vec![identity_of(&victim).unwrap()],
                staged: Some(staged),
                prepared: None,
            };
            Journal(&mut file).write(&record).unwrap();
            Journal(&mut file).recover_orphans(&expected, &[]);
            assert!(victim.is_dir(), "{record:?}");
        }
        assert!(dir.path().join(".ccauth-1-0.staging").is_dir());
    }

    fn dev_ino(path: &Path) -> Option<(u64, u64)> {
        identity_of(path).map(|i| (i.dev, i.ino))
    }

    /// On file systems that cannot rename without replacing, the lock is made with `mkdir`,
    /// noted first; and the journal keeps any path, not only UTF-8 ones.
    #[test]
    fn without_rename_noreplace_a_plain_mkdir_is_noted() {
        let dir = tempfile::tempdir().unwrap();
        #[cfg(unix)]
        let config = dir
            .path()
            .join(std::ffi::OsStr::from_bytes(b"cfg-\xff\xfe"));
        #[cfg(not(unix))]
        let config = dir.path().join("cfg");
        std::fs::create_dir(&config).unwrap();
        let lock = config.join(".oauth_refresh.lock");
        let mut file = journal_file(dir.path());
        let mut record = Record::new();
        let einval = |_: &Path, _: &Path| Err(io::Error::from_raw_os_error(libc::EINVAL));
        create_lock_dir_with(&lock, &mut Journal(&mut file), &mut record, einval)
            .map_err(|_| "not made")
            .unwrap();
        assert!(lock.is_dir());
        let noted = Journal(&mut file).read().unwrap();
        let staged = noted.staged.unwrap();
        assert_eq!((staged.staging, &staged.lock), (None, &lock));
        assert_eq!(staged.made, dev_ino(&lock));
        let leftovers: Vec<_> = std::fs::read_dir(&config)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers.len(), 1, "{leftovers:?}");
        NOREPLACE_WORKS.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Between judging a lock stale and removing it, its holder (the CLI) may have re-taken
    /// it: what is removed must be the very directory judged stale.
    #[test]
    fn a_lock_re_taken_while_being_taken_over_is_put_back() {
        let dir = tempfile::tempdir().unwrap();
        let lock = dir.path().join(".oauth_refresh.lock");
        std::fs::create_dir(&lock).unwrap();
        set_mtime(&lock, SystemTime::now() - Duration::from_secs(600));
        let stale =
            stale_identity(&lock, Duration::from_secs(60), &mut FutureDated::default()).unwrap();
        // Re-taken meanwhile: removed as stale by the CLI and made again (another inode, or the
        // same one touched now).
        std::fs::remove_dir(&lock).unwrap();
        std::fs::create_dir(dir.path().join("hold-the-old-inode")).unwrap();
        std::fs::create_dir(&lock).unwrap();
        let theirs = identity_of(&lock).unwrap();
        take_over(&stale, std::process::id()).unwrap();
        assert_eq!(
            dev_ino(&lock),
            Some((theirs.dev, theirs.ino)),
            "their lock is gone"
        );
        let staged: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".staging"))
            .collect();
        assert!(staged.is_empty(), "{staged:?}");

        // The stale one itself is removed.
        set_mtime(&lock, SystemTime::now() - Duration::from_secs(600));
        let stale =
            stale_identity(&lock, Duration::from_secs(60), &mut FutureDated::default()).unwrap();
        take_over(&stale, std::process::id()).unwrap();
        assert!(!lock.exists());
    }

    #[cfg(any(target_os = "linux", target_os = "android", target_vendor = "apple"))]
    #[test]
    fn taking_a_lock_never_replaces_one_that_appears_meanwhile() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".oauth_refresh.lock");
        std::fs::create_dir(&path).unwrap();
        let theirs = identity_of(&path).unwrap();
        let mut file = journal_file(dir.path());
        let mut record = Record::new();
        let made = create_lock_dir(&path, &mut Journal(&mut file), &mut record);
        assert!(
            matches!(made, Err(CreateError::Io(ref e)) if e.kind() == io::ErrorKind::AlreadyExists)
        );
        assert_eq!(identity_of(&path), Some(theirs));
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(
            left.iter()
                .all(|name| !name.to_string_lossy().ends_with(".staging")),
            "{left:?}"
        );
    }

    #[test]
    fn a_directory_recreated_by_someone_else_is_not_ours() {
        let dir = tempfile::tempdir().unwrap();
        let locks = claude_cli_locks(dir.path());
        let mut file = journal_file(dir.path());
        let mut held = acquire_all(
            &locks[..1],
            Duration::ZERO,
            &mut Journal(&mut file),
            &mut Record::new(),
        )
        .unwrap();
        // Someone steals and re-creates it (perhaps on the same inode, which file systems reuse
        // at once): our release must leave it alone.
        std::fs::remove_dir(&locks[0].path).unwrap();
        std::fs::create_dir(&locks[0].path).unwrap();
        set_mtime(&locks[0].path, SystemTime::now() - Duration::from_secs(3));
        held.release();
        assert!(locks[0].path.is_dir());
    }

    #[test]
    fn held_locks_are_touched_until_released() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l");
        std::fs::create_dir(&path).unwrap();
        set_mtime(&path, SystemTime::now() - Duration::from_secs(100));
        let held = Arc::new(Mutex::new(vec![identity_of(&path).unwrap()]));
        keep_touched(&held);
        // The toucher is process-wide and may tick at any phase: wait for a touch (the mtime
        // turning recent) for up to a few intervals rather than sampling once.
        let started = Instant::now();
        loop {
            let modified = std::fs::metadata(&path).unwrap().modified().unwrap();
            let age = SystemTime::now()
                .duration_since(modified)
                .unwrap_or_default();
            if age < Duration::from_secs(10) {
                break;
            }
            assert!(
                started.elapsed() < 3 * TOUCH_INTERVAL,
                "never touched (age {age:?})"
            );
            thread::sleep(Duration::from_millis(50));
        }
        // The remembered identity follows the touch, so release still knows the lock is ours.
        assert_eq!(held.lock().unwrap()[0], identity_of(&path).unwrap());
    }
}
