//! The crash journal: what the holder of the OS lock wrote down — its pid, the lock directories
//! it made (and the one on its way in), the write it prepared — so that the next holder can
//! remove a dead process's locks at once and hand over its complete write, touching only what
//! this code itself would have made.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::identity::{Identity, identity_of};
use super::liveness::process_alive;
use crate::files::path_bytes;

/// What the current holder wrote down, so a successor can tell our orphans from live locks.
#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Record {
    pub(super) pid: u32,
    pub(super) locks: Vec<Identity>,
    /// A lock directory on its way in (see [`super::staged::create_lock_dir`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) staged: Option<Staged>,
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

/// A prepared write, as recorded. Once the refresh request has left, the temporary file holds
/// the only copy of a rotated login until it replaces `target`: first the endpoint's answer (a
/// side record at `side_at`), then the whole refreshed document from its start (`complete` is
/// set as soon as it is written). A successor hands it over when `target` still holds the
/// refresh token the request spent — judging by what the file holds, whatever `complete` says.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct PreparedRecord {
    #[serde(with = "path_bytes")]
    pub(crate) temp: PathBuf,
    #[serde(with = "path_bytes")]
    pub(crate) target: PathBuf,
    pub(crate) complete: bool,
    /// SHA-256 (hex) of the refresh token the write replaces: the one the refresh request
    /// presented (noted before it left), else the one `target` held when the write began; `None`
    /// when there was none.
    #[serde(default, alias = "replaced_sha256")]
    pub(crate) spent_sha256: Option<String>,
    /// Where in `temp` the endpoint's answer goes (see [`crate::files::Prepared::side_at`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) side_at: Option<u64>,
}

/// A lock directory being created: made under a name only this process uses
/// (`.ccauth-<pid>-<n>.staging`, beside the lock), noted here, then renamed onto the lock path
/// without replacing anything. A successor can thus remove it wherever a kill left it, and never
/// mistakes someone else's directory for it. `staging: None`: a file system that cannot rename
/// without replacing, where the lock is made with a plain `mkdir` once noted here.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(super) struct Staged {
    #[serde(with = "path_bytes::option", default)]
    pub(super) staging: Option<PathBuf>,
    #[serde(with = "path_bytes")]
    pub(super) lock: PathBuf,
    /// Device and inode, once the directory exists.
    pub(super) made: Option<(u64, u64)>,
}

/// The file our processes keep their [`Record`] in: the OS lock file, written only by the
/// process holding the OS lock.
pub(crate) struct Journal<'a>(pub(crate) &'a mut File);

impl Journal<'_> {
    pub(super) fn read(&mut self) -> Option<Record> {
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
        crate::files::write_at_start(self.0, &text)
    }

    /// Forget the record (the holder released its locks).
    pub(crate) fn clear(&mut self) -> io::Result<()> {
        self.0.set_len(0)
    }

    /// Remove the locks a dead process of ours left behind, and hand over the write it had
    /// prepared, if any (the caller adopts or removes it once it holds the locks). Call with the
    /// OS lock held. Only what this code itself would have made is touched: lock directories at
    /// the paths in `expected`, staging directories with the names derived from them and the
    /// dead process's pid, a temporary file beside one of `targets` (the credential file) for a
    /// write to it. Anything else a journal names — hand-written, another file of the config
    /// directory, a record of another version — is ignored.
    pub(crate) fn recover_orphans(&mut self, expected: &[PathBuf], targets: &[PathBuf]) -> Orphans {
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
                .is_some_and(|n| crate::files::is_temp_name(&n.to_string_lossy()));
            let to_the_credential = targets.contains(&prepared.target);
            beside && ours && to_the_credential
        });
        Orphans { prepared }
    }
}

/// A staging name this code gives `pid`'s lock directories beside `lock`:
/// `.ccauth-<pid>-<n>.staging` in the same directory. Short, whatever the lock's name.
pub(super) fn staging_name(lock: &Path, pid: u32) -> PathBuf {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    crate::files::parent_of(lock).join(format!(".ccauth-{pid}-{n}.staging"))
}

/// Whether `path` is a staging name [`staging_name`] gives `pid` beside `lock`.
pub(super) fn is_staging_of(path: &Path, lock: &Path, pid: u32) -> bool {
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
