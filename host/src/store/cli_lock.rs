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

/// A prepared write, as recorded: once `complete`, the temporary file holds the whole refreshed
/// document, the only copy of a rotated login until it replaces `target`. A successor hands it
/// over when `target` still holds the refresh token it replaced.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct PreparedRecord {
    pub(crate) temp: PathBuf,
    pub(crate) target: PathBuf,
    pub(crate) complete: bool,
    /// SHA-256 (hex) of the refresh token `target` held when the write began; `None` when it
    /// held none.
    #[serde(default)]
    pub(crate) replaced_sha256: Option<String>,
}

/// A lock directory being created: made under a name only this process uses, noted here, then
/// renamed onto the lock path without replacing anything. A successor can thus remove it
/// wherever a kill left it, and never mistakes someone else's directory for it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct Staged {
    staging: PathBuf,
    lock: PathBuf,
    /// Device and inode, once the staging directory exists.
    made: Option<(u64, u64)>,
}

/// A lock directory as we left it: path, device, inode and the mtime we last gave it, so a
/// directory someone else created at the same path — even on a reused inode — is never taken
/// for ours.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Identity {
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
    /// OS lock held.
    pub(crate) fn recover_orphans(&mut self) -> Orphans {
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
            .filter(|lock| identity_of(&lock.path).as_ref() == Some(lock))
            .filter(|lock| std::fs::remove_dir(&lock.path).is_ok())
            .count();
        if let Some(staged) = &record.staged {
            // The staging name is this dead process's own: whatever is there is its.
            let _ = std::fs::remove_dir(&staged.staging);
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
        Orphans {
            prepared: record.prepared,
        }
    }
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
    loop {
        match try_all(locks, journal, record) {
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
) -> Result<Vec<Identity>, Busy> {
    let base = record.locks.len();
    for lock in locks {
        let taken = try_one(lock, journal, record);
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
                if !is_stale(&lock.path, lock.stale_after) {
                    return Err(Busy::Held(lock.path.clone()));
                }
                tracing::debug!(lock = %lock.path.display(), "taking over a stale refresh lock");
                match std::fs::remove_dir(&lock.path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(Busy::Io(lock.path.clone(), e)),
                }
            }
            Err(CreateError::Journal(e)) => return Err(Busy::Journal(e)),
            Err(CreateError::Io(e)) => return Err(Busy::Io(lock.path.clone(), e)),
        }
    }
    Err(Busy::Held(lock.path.clone()))
}

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

/// `mkdir` the lock directory so that a kill at any instant leaves a record that names it:
/// where the platform can rename without replacing, the directory is made under a staging name
/// noted in the journal and then renamed onto the lock path; a plain `mkdir` of the lock path
/// would leave, for a kill right after it, a directory nobody knows is abandoned until it goes
/// stale (60 s for the CLI's lock). An existing lock answers `AlreadyExists`, as `mkdir` does.
#[cfg(any(target_os = "linux", target_os = "android", target_vendor = "apple"))]
fn create_lock_dir(
    path: &Path,
    journal: &mut Journal<'_>,
    record: &mut Record,
) -> Result<(), CreateError> {
    let mut staging = path.as_os_str().to_owned();
    staging.push(format!(".{}.staging", std::process::id()));
    let mut staged = Staged {
        staging: PathBuf::from(staging),
        lock: path.to_path_buf(),
        made: None,
    };
    let mut note = |record: &mut Record, staged: Option<Staged>| {
        record.staged = staged;
        journal.write(record).map_err(CreateError::Journal)
    };
    note(record, Some(staged.clone()))?;
    if let Err(e) = std::fs::create_dir(&staged.staging) {
        if e.kind() != io::ErrorKind::AlreadyExists {
            return Err(e.into());
        }
        // A leftover of an earlier process with our pid is ours to replace.
        std::fs::remove_dir(&staged.staging)?;
        std::fs::create_dir(&staged.staging)?;
    }
    let made = identity_of(&staged.staging)
        .ok_or_else(|| io::Error::other("the staging directory vanished"))?;
    staged.made = Some((made.dev, made.ino));
    note(record, Some(staged.clone()))?;
    let renamed = rustix::fs::renameat_with(
        rustix::fs::CWD,
        &staged.staging,
        rustix::fs::CWD,
        path,
        rustix::fs::RenameFlags::NOREPLACE,
    )
    .map_err(io::Error::from);
    if renamed.is_err() {
        let _ = std::fs::remove_dir(&staged.staging);
    }
    renamed?;
    // Until `try_all` records the identity, `staged` still names the lock for a successor.
    Ok(())
}

#[cfg(not(any(target_os = "linux", target_os = "android", target_vendor = "apple")))]
fn create_lock_dir(
    path: &Path,
    _journal: &mut Journal<'_>,
    _record: &mut Record,
) -> Result<(), CreateError> {
    Ok(std::fs::create_dir(path)?)
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

/// Abandoned: not touched for `stale_after`, or touched "in the future" beyond the tolerance.
fn is_stale(path: &Path, stale_after: Duration) -> bool {
    let Ok(modified) = std::fs::metadata(path).and_then(|m| m.modified()) else {
        // Gone meanwhile: the next mkdir decides.
        return false;
    };
    let now = SystemTime::now();
    match now.duration_since(modified) {
        Ok(age) => age > stale_after,
        Err(ahead) => ahead.duration() > FUTURE_TOLERANCE,
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
        let cases = [
            (now - Duration::from_secs(61), true),
            (now - Duration::from_secs(30), false),
            (now + Duration::from_secs(5), false),
            (now + Duration::from_secs(3600), true),
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
        Journal(&mut file).recover_orphans();
        assert!(locks.iter().all(|l| l.path.exists()));
        Journal(&mut file).write(&dead).unwrap();
        Journal(&mut file).recover_orphans();
        assert!(locks.iter().all(|l| !l.path.exists()));
        assert_eq!(Journal(&mut file).read(), None);
    }

    #[test]
    fn a_kill_at_any_step_of_taking_a_lock_leaves_nothing_to_wait_for() {
        let dir = tempfile::tempdir().unwrap();
        let lock = dir.path().join(".oauth_refresh.lock");
        let staging = dir.path().join(".oauth_refresh.lock.4294967288.staging");
        let mut file = journal_file(dir.path());
        let dead = |made: Option<(u64, u64)>| Record {
            pid: u32::MAX - 7,
            locks: Vec::new(),
            staged: Some(Staged {
                staging: staging.clone(),
                lock: lock.clone(),
                made,
            }),
            prepared: None,
        };
        let dev_ino = |path: &Path| identity_of(path).map(|i| (i.dev, i.ino));

        // Killed after making the staging directory, before noting its inode.
        std::fs::create_dir(&staging).unwrap();
        Journal(&mut file).write(&dead(None)).unwrap();
        Journal(&mut file).recover_orphans();
        assert!(!staging.exists());

        // Killed after the rename, before the identity was recorded.
        std::fs::create_dir(&staging).unwrap();
        let made = dev_ino(&staging);
        std::fs::rename(&staging, &lock).unwrap();
        Journal(&mut file).write(&dead(made)).unwrap();
        Journal(&mut file).recover_orphans();
        assert!(!lock.exists());

        // Someone else's lock at the path (another inode) is left alone.
        std::fs::create_dir(&staging).unwrap();
        let made = dev_ino(&staging);
        std::fs::remove_dir(&staging).unwrap();
        std::fs::create_dir(dir.path().join("keep-the-inode-busy")).unwrap();
        std::fs::create_dir(&lock).unwrap();
        if dev_ino(&lock) != made {
            Journal(&mut file).write(&dead(made)).unwrap();
            Journal(&mut file).recover_orphans();
            assert!(lock.exists());
        }
    }

    #[cfg(any(target_os = "linux", target_os = "android", target_vendor = "apple"))]
    #[test]
    fn taking_a_lock_never_replaces_one_that_appears_meanwhile() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".oauth_refresh.lock");
        std::fs::create_dir(&path).unwrap();
        let theirs = identity_of(&path).unwrap();
        let mut file = journal_file(dir.path());
        let mut record = Record::default();
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
