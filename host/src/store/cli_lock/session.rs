//! The held refresh lock of credentials that belong to `claude` config directories (a file in
//! one, the file a symlink there points to, a keychain item named after one), and the write that
//! follows a refresh under it.
//!
//! Taking it: our OS lock on each site's lock file (the last one also carries the journal of
//! what the holder made), then the CLI's refresh lock directories of every site. While held: the
//! prepared write (a temporary file next to the target, its space reserved, on record before it
//! exists), and the CLI's `.storage-write.lock` around the read-modify-write. A dead holder's
//! locks are removed and its complete write adopted by the next holder.
//!
//! This is where the file store keeps the crate's invariant — from the moment a refresh request
//! may have reached the endpoint, the tokens it answers reach durable storage or a rescue place
//! the next process adopts, never discarded: the temporary file exists, its space reserved,
//! before the request; once complete it is on record, so a kill before the rename leaves it to
//! the next holder; a refused rename falls back to a write in place.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use zeroize::Zeroizing;

use super::owner::{self, OwnerRecord};
use super::{self as lock, DirLock, HeldDirLocks, Journal, PreparedRecord, Record, flock};
use crate::error::{ClaudeCodeAuthError, ClaudeCodeAuthResult};
use crate::files::{self, Prepared};

use crate::store::exchange::{Answer, ExchangeLog};
use crate::store::handover::{self, Verdict};
use crate::store::{HeldLock, RefreshLock, blocking};

/// One place whose locks are taken: our lock file, and the config dir whose CLI locks count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Site {
    pub(crate) flock: PathBuf,
    /// Resolved (`realpath`), so that one directory has one name.
    pub(crate) config_dir: PathBuf,
}

impl Site {
    /// The site of `flock` in `config_dir`, the directory resolved when it exists (else taken
    /// as it is: nothing can hold a lock in a directory that does not exist yet).
    pub(crate) fn new(config_dir: &Path, flock_name: &std::ffi::OsStr) -> Self {
        let config_dir =
            std::fs::canonicalize(config_dir).unwrap_or_else(|_| config_dir.to_path_buf());
        Self {
            flock: config_dir.join(flock_name),
            config_dir,
        }
    }
}

/// Take the refresh lock of `sites`, in order, waiting at most `wait` in all. A write a killed
/// holder left is handed over only if it was to one of `targets` (the credential file).
pub(crate) async fn lock(
    sites: Vec<Site>,
    targets: Vec<PathBuf>,
    wait: Duration,
) -> ClaudeCodeAuthResult<Session> {
    blocking(move || Session::acquire(&sites, &targets, wait)).await
}

/// Write `document` over `target` outside any refresh, as the CLI writes outside its refreshes:
/// under the CLI's write lock of every site only, so it also works while this process holds the
/// refresh lock. No journal records that lock: a kill while holding it leaves it to go stale
/// (15 s), as the CLI's own does.
pub(crate) async fn write_alone(
    sites: Vec<Site>,
    target: PathBuf,
    document: Zeroizing<Vec<u8>>,
    wait: Duration,
) -> ClaudeCodeAuthResult<()> {
    under_write_locks(sites, wait, move || {
        files::write_atomically(&target, &document).map_err(|source| ClaudeCodeAuthError::Io {
            path: target.display().to_string(),
            source,
        })
    })
    .await
}

/// Run `write` (blocking) under the CLI's write locks of `sites`, taken within `wait`: how a
/// write outside a refresh goes, whatever it writes to.
pub(crate) async fn under_write_locks<T: Send + 'static>(
    sites: Vec<Site>,
    wait: Duration,
    write: impl FnOnce() -> ClaudeCodeAuthResult<T> + Send + 'static,
) -> ClaudeCodeAuthResult<T> {
    blocking(move || {
        let locks = distinct(
            sites
                .iter()
                .map(|site| lock::claude_cli_write_lock(&site.config_dir)),
        );
        let mut scratch = tempfile::tempfile().map_err(|source| ClaudeCodeAuthError::Io {
            path: "a scratch journal".into(),
            source,
        })?;
        let mut held =
            lock::acquire_all(&locks, wait, &mut Journal(&mut scratch), &mut Record::new())?;
        let written = write();
        held.release();
        written
    })
    .await
}

/// Whoever held these OS locks before us is gone: clear up after it if it died holding them —
/// only what these sites' locks and files are. The write it left on its way in, if any.
fn recover_orphans(
    flocks: &mut [File],
    cli_locks: &[DirLock],
    write_locks: &[DirLock],
    targets: &[PathBuf],
) -> Option<PreparedRecord> {
    let expected: Vec<PathBuf> = cli_locks
        .iter()
        .chain(write_locks)
        .map(|lock| lock.path.clone())
        .collect();
    let mut left_behind = Vec::new();
    for file in flocks {
        left_behind.extend(Journal(file).recover_orphans(&expected, targets).prepared);
    }
    left_behind.pop()
}

/// The CLI's refresh locks, all or none, on record in `journal`. When they cannot be had, the
/// journal keeps a killed writer's document for the next holder, or nothing.
fn refresh_locks(
    cli_locks: &[DirLock],
    wait: Duration,
    journal: &mut File,
    record: &mut Record,
) -> ClaudeCodeAuthResult<HeldDirLocks> {
    lock::acquire_all(cli_locks, wait, &mut Journal(journal), record).inspect_err(|_| {
        if record.prepared.is_some() {
            // Not ours to keep: leave a killed writer's document to the next holder.
            record.release_holder();
            let _ = Journal(journal).write(record);
        } else {
            // Nothing held, nothing on its way in: no record to leave.
            let _ = Journal(journal).clear();
        }
    })
}

/// The held lock, shared so its blocking work can move to a blocking thread.
#[derive(Clone)]
pub(crate) struct Session(Arc<Mutex<Held>>);

pub(crate) struct Held {
    /// Our OS locks, in the order taken; the last carries the journal.
    flocks: Vec<File>,
    /// What the journal says we hold.
    record: Record,
    refresh_dirs: HeldDirLocks,
    /// The owner records this holder left beside the CLI's refresh locks it holds.
    owners: Vec<(PathBuf, OwnerRecord)>,
    /// The CLI's write locks of every site, and whether they are held.
    write_locks: Vec<DirLock>,
    write_dirs: Option<HeldDirLocks>,
    /// The temporary file the next save writes into.
    prepared: Option<Prepared>,
    /// The answer a killed holder's temporary file keeps (on record in `record.prepared`), for
    /// the refresh that presents the token it spent (see [`ExchangeLog::replay`]).
    replay: Option<Answer>,
}

impl Session {
    /// Take every site's OS lock, clear up after a holder that died, then take the CLI's
    /// refresh locks and hand over a killed writer's document, all within `wait`.
    fn acquire(sites: &[Site], targets: &[PathBuf], wait: Duration) -> ClaudeCodeAuthResult<Self> {
        let started = Instant::now();
        let remaining = || wait.saturating_sub(started.elapsed());
        let mut flocks = Vec::with_capacity(sites.len());
        for site in sites {
            flocks.push(flock::acquire(&site.flock, remaining())?);
        }
        let cli_locks = distinct(
            sites
                .iter()
                .flat_map(|site| lock::claude_cli_locks(&site.config_dir)),
        );
        let write_locks = distinct(
            sites
                .iter()
                .map(|site| lock::claude_cli_write_lock(&site.config_dir)),
        );
        let mut record = Record::new();
        // A write left behind stays on record (now ours) until it is adopted or removed.
        record.prepared = recover_orphans(&mut flocks, &cli_locks, &write_locks, targets);
        let journal = flocks.last_mut().ok_or_else(|| ClaudeCodeAuthError::Io {
            path: "refresh lock".into(),
            source: io::Error::other("no lock site"),
        })?;
        let refresh_dirs = refresh_locks(&cli_locks, remaining(), journal, &mut record)?;
        let owners = leave_owner_records(&cli_locks, &refresh_dirs);
        let mut held = Held {
            flocks,
            record,
            refresh_dirs,
            owners,
            write_locks,
            write_dirs: None,
            prepared: None,
            replay: None,
        };
        if let Some(orphan) = held.record.prepared.clone() {
            held.hand_over(&orphan, remaining())?;
        }
        Ok(Self(Arc::new(Mutex::new(held))))
    }

    /// Run `work` on the held state on a blocking thread.
    pub(crate) async fn with<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Held) -> ClaudeCodeAuthResult<T> + Send + 'static,
    ) -> ClaudeCodeAuthResult<T> {
        let inner = self.0.clone();
        blocking(move || work(&mut inner.lock().unwrap_or_else(PoisonError::into_inner))).await
    }

    /// The refresh lock a store hands out over this session: `held`, the store's own steps over
    /// it, with the session as the record of the exchange.
    pub(crate) fn refresh_lock(&self, held: impl HeldLock) -> RefreshLock {
        let log: Arc<dyn ExchangeLog> = Arc::new(self.clone());
        RefreshLock::new(held).with_exchange_log(log)
    }
}

/// The file store's record of the exchange: the spent token's digest in the journal, the answer
/// in the prepared file, and the answer a killed holder left for its replay. Each is a `pwrite`
/// or less, done where it is asked for: a hop to a blocking thread would cost more.
#[async_trait::async_trait]
impl ExchangeLog for Session {
    async fn sending(&self, spent: &str) -> ClaudeCodeAuthResult<()> {
        let mut held = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(record) = held.record.prepared.as_mut() else {
            return Ok(());
        };
        if record.spent_sha256.as_deref() == Some(spent) {
            return Ok(());
        }
        record.spent_sha256 = Some(spent.to_owned());
        // Without it on record, a kill after the answer could not be handed over.
        held.note().map_err(|source| ClaudeCodeAuthError::Io {
            path: "refresh lock journal".into(),
            source,
        })
    }

    async fn answered(&self, answer: &Answer) -> io::Result<()> {
        let mut held = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let kept = match &held.prepared {
            Some(prepared) => prepared.write_side(&answer.to_record()),
            None => Ok(()),
        };
        // From here until the credential file holds the answer, only a process of ours can
        // hand it over: without our owner record a CLI waits out the stale time (60 s) before
        // taking the lock of a holder killed now, instead of presenting the spent token within
        // seconds.
        for (config_dir, record) in std::mem::take(&mut held.owners) {
            owner::remove_if(&config_dir, &record);
        }
        kept
    }

    async fn replay(&self, spent: &str) -> Option<Answer> {
        let held = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        held.replay
            .as_ref()
            .filter(|answer| answer.spent_sha256 == spent)
            .cloned()
    }
}

impl Held {
    fn journal(&mut self) -> Journal<'_> {
        // `acquire` makes sure there is at least one.
        Journal(self.flocks.last_mut().expect("a lock site"))
    }

    fn note(&mut self) -> io::Result<()> {
        let record = self.record.clone();
        self.journal().write(&record)
    }

    /// Take the CLI's write locks (unless held), waiting at most `wait`.
    pub(crate) fn lock_write(&mut self, wait: Duration) -> ClaudeCodeAuthResult<()> {
        if self.write_dirs.is_some() {
            return Ok(());
        }
        let locks = self.write_locks.clone();
        let mut record = std::mem::take(&mut self.record);
        let taken = lock::acquire_all(&locks, wait, &mut self.journal(), &mut record);
        self.record = record;
        self.write_dirs = Some(taken?);
        Ok(())
    }

    /// Release the CLI's write locks, if held.
    pub(crate) fn unlock_write(&mut self) {
        if let Some(mut dirs) = self.write_dirs.take() {
            let released = dirs.identities();
            dirs.release();
            self.record.forget(&released);
            let _ = self.note();
        }
    }

    /// Create the temporary file for a document of up to `size` bytes replacing `target`, on
    /// record before it exists, its space reserved (and room past it for the endpoint's answer).
    /// While a killed holder's answer waits for its replay, its own temporary file is taken up
    /// instead, the answer kept in it.
    pub(crate) fn prepare(&mut self, target: &Path, size: u64) -> ClaudeCodeAuthResult<()> {
        if let Some(left) = self.record.prepared.clone() {
            if self.replay.is_some() && self.prepared.is_none() {
                return self.take_up(&left, size);
            }
            // Only while a killed writer's document could not be handed over yet.
            return Err(ClaudeCodeAuthError::Io {
                path: left.target.display().to_string(),
                source: io::Error::other(format!(
                    "a refreshed credential a killed process left in `{}` is not back in place yet",
                    left.temp.display()
                )),
            });
        }
        // Held all along? A lock taken over by someone else (who judged it stale) means another
        // refresh may be under way: spending now could present a token twice.
        if let Some(lost) = self.refresh_dirs.lost() {
            return Err(ClaudeCodeAuthError::LockLost {
                lock: format!("the refresh lock `{}`", lost.display()),
                why: "taken over by another process".into(),
            });
        }
        if let Some(old) = self.prepared.take() {
            old.discard();
        }
        let temp = files::temp_path(&files::parent_of(target));
        let io_error = |source| ClaudeCodeAuthError::Io {
            path: target.display().to_string(),
            source,
        };
        self.record.prepared = Some(PreparedRecord {
            temp: temp.clone(),
            target: target.to_path_buf(),
            complete: false,
            spent_sha256: None,
            // Where `files::prepare` puts the side record: right past the document's room.
            side_at: Some(size),
        });
        self.note().map_err(io_error)?;
        let prepared =
            files::prepare(temp, size).and_then(|prepared| match prepared.keep_owner_of(target) {
                Ok(()) => Ok(prepared),
                Err(e) => {
                    prepared.discard();
                    Err(e)
                }
            });
        match prepared {
            Ok(prepared) => {
                debug_assert_eq!(prepared.side_at(), size);
                self.prepared = Some(prepared);
                Ok(())
            }
            Err(e) => {
                self.record.prepared = None;
                let _ = self.note();
                Err(io_error(e))
            }
        }
    }

    /// Take up `left`, the temporary file holding a killed holder's answer, as this refresh's
    /// prepared file: its answer stays in it (moved past `size` if the document needs the room,
    /// on record before the document can overwrite the old place).
    fn take_up(&mut self, left: &PreparedRecord, size: u64) -> ClaudeCodeAuthResult<()> {
        let io_error = |source| ClaudeCodeAuthError::Io {
            path: left.target.display().to_string(),
            source,
        };
        let side_at = left.side_at.unwrap_or(0);
        let prepared = Prepared::reopen(left.temp.clone(), side_at, size).map_err(io_error)?;
        if prepared.side_at() != side_at {
            if let Some(record) = &mut self.record.prepared {
                record.side_at = Some(prepared.side_at());
            }
            self.note().map_err(io_error)?;
        }
        self.prepared = Some(prepared);
        Ok(())
    }

    /// Replace `target` with `document` (through the prepared file, renamed over it; else in
    /// place) and release the write locks.
    pub(crate) fn commit(&mut self, target: &Path, document: &[u8]) -> ClaudeCodeAuthResult<()> {
        let result = self.write(target, document);
        self.unlock_write();
        result
    }

    fn write(&mut self, target: &Path, document: &[u8]) -> ClaudeCodeAuthResult<()> {
        let io_error = |source| ClaudeCodeAuthError::Io {
            path: target.display().to_string(),
            source,
        };
        // The token this write replaces: the one the request presented, noted before it left;
        // for a write without a request (a hand-over), the one stored now.
        let spent = self
            .record
            .prepared
            .as_ref()
            .and_then(|record| record.spent_sha256.clone())
            .or_else(|| {
                std::fs::read_to_string(target)
                    .ok()
                    .and_then(|text| handover::refresh_token_digest(&Zeroizing::new(text)))
            });
        let mut prepared = match self.prepared.take() {
            Some(prepared) => prepared,
            // Nothing prepared (a save without a refresh): prepare now.
            None => {
                self.prepare(target, document.len() as u64)?;
                self.prepared.take().expect("just prepared")
            }
        };
        self.replay = None;
        let attempt = match self.fill(&mut prepared, document, spent) {
            Ok(()) => {
                let links = hard_links(target);
                let installed = prepared.install(target);
                if installed.is_ok() && links > 1 {
                    tracing::warn!(
                        path = %target.display(),
                        links,
                        "the credential file had other hard links; they keep the previous login, whose refresh token this refresh spent"
                    );
                }
                installed
            }
            Err(e) => Err((prepared, e)),
        };
        let result = match attempt {
            Ok(()) => Ok(()),
            Err((prepared, renaming)) => {
                tracing::warn!(error = %renaming, "could not replace the credential file; writing it in place");
                // The complete file stays on record until the write in place is done: a kill in
                // the middle of it leaves the next process that file to hand over.
                let written =
                    files::overwrite_in_place(target, document).map_err(|_| io_error(renaming));
                prepared.discard();
                written
            }
        };
        self.record.prepared = None;
        let _ = self.note();
        result
    }

    /// Write `document` into `prepared` and put it on record as complete the moment the write
    /// returns — a killed process's page cache survives it; only a power loss needs the fsync,
    /// which follows. An fsync that fails does not stop the write: the bytes are there, and a
    /// spent token on disk is worse.
    fn fill(
        &mut self,
        prepared: &mut Prepared,
        document: &[u8],
        spent: Option<String>,
    ) -> io::Result<()> {
        let length = u64::try_from(document.len()).unwrap_or(u64::MAX);
        if length > prepared.side_at() {
            // The answer moves past the document first, and its new place is on record.
            prepared.make_room(length)?;
            if let Some(record) = &mut self.record.prepared {
                record.side_at = Some(prepared.side_at());
            }
            self.note()?;
        }
        prepared.write(document)?;
        if let Some(record) = &mut self.record.prepared {
            record.complete = true;
            record.spent_sha256 = spent;
        }
        // Complete and on record: from here a kill leaves it for the next holder.
        let _ = self.note();
        if let Err(e) = prepared.sync() {
            tracing::warn!(
                error = %e,
                "the refreshed credential could not be synced to disk; it is put in place, but a power loss may lose it"
            );
        }
        Ok(())
    }

    /// What a killed holder left in `orphan`: a complete document goes back in place if the
    /// target still holds the token it replaced; an answer (the holder was killed before its
    /// document was written) waits for the refresh that presents the token it spent, which gets
    /// it instead of a request (see [`ExchangeLog::replay`]); anything else is removed.
    fn hand_over(&mut self, orphan: &PreparedRecord, wait: Duration) -> ClaudeCodeAuthResult<()> {
        let kept = handover::kept_in(&orphan.temp, orphan.side_at);
        if kept.document.is_none() {
            let stored_digest = std::fs::read_to_string(&orphan.target)
                .ok()
                .and_then(|text| handover::refresh_token_digest(&Zeroizing::new(text)));
            let waiting = kept
                .answer
                .filter(|answer| Some(&answer.spent_sha256) == stored_digest.as_ref());
            match waiting {
                Some(answer) => {
                    tracing::warn!(
                        temp = %orphan.temp.display(),
                        "a process was killed after the token endpoint answered its refresh and before its write: the answer is kept for the next refresh"
                    );
                    let mut record = orphan.clone();
                    record.spent_sha256 = Some(answer.spent_sha256.clone());
                    self.record.prepared = Some(record);
                    self.replay = Some(answer);
                    let _ = self.note();
                }
                None => {
                    remove_temp(&orphan.temp);
                    self.record.prepared = None;
                    let _ = self.note();
                }
            }
            return Ok(());
        }
        let kept = kept.document.unwrap_or_default();
        self.lock_write(wait)?;
        let stored = std::fs::read_to_string(&orphan.target)
            .ok()
            .map(Zeroizing::new);
        let verdict = handover::judge(
            &kept,
            orphan.spent_sha256.as_deref(),
            stored.as_deref().map(String::as_str),
        );
        self.record.prepared = None;
        let result = match verdict {
            Verdict::Adopt(document) => {
                tracing::warn!(
                    temp = %orphan.temp.display(),
                    "a process was killed after a refresh and before its write: its rotated credential was put in place"
                );
                self.prepare(&orphan.target, document.len() as u64)
                    .and_then(|()| self.write(&orphan.target, document.as_bytes()))
            }
            Verdict::AlreadyThere | Verdict::Obsolete => Ok(()),
        };
        match &result {
            Ok(()) => remove_temp(&orphan.temp),
            // Still the only copy: it stays on record for the next attempt.
            Err(_) => {
                self.record.prepared = Some(orphan.clone());
                let _ = self.note();
            }
        }
        self.unlock_write();
        result
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(prepared) = self.prepared.take() {
            prepared.discard();
            self.record.prepared = None;
        }
        self.unlock_write();
        // As the CLI releases: its record first (only while it is ours), then the locks.
        for (config_dir, record) in &self.owners {
            owner::remove_if(config_dir, record);
        }
        let released = self.refresh_dirs.identities();
        self.refresh_dirs.release();
        if self.record.prepared.is_none() {
            let _ = self.journal().clear();
        } else {
            // A document not handed over yet stays on record, held by no one, for the next
            // holder to hand over.
            self.record.forget(&released);
            self.record.release_holder();
            let _ = self.note();
        }
    }
}

/// Leave, beside each of the CLI's main refresh locks now held, the owner record the CLI
/// leaves (see [`owner`]): a CLI waiting on it takes it over within seconds should this process
/// die holding it, instead of after the stale time. Best effort: without one, it waits that out.
fn leave_owner_records(locks: &[DirLock], held: &HeldDirLocks) -> Vec<(PathBuf, OwnerRecord)> {
    let is_held = |path: &Path| held.holds(path);
    let mut left = Vec::new();
    for lock in locks {
        let Some(owned) = lock.owned.as_ref().filter(|_| is_held(&lock.path)) else {
            continue;
        };
        let legacy = owned.legacy.as_deref().filter(|path| is_held(path));
        let Some(record) = owner::ours(&lock.path, legacy) else {
            continue;
        };
        match owner::write(&owned.config_dir, &record) {
            Ok(()) => left.push((owned.config_dir.clone(), record)),
            Err(error) => {
                tracing::debug!(error = %error, "no owner record left beside the refresh lock")
            }
        }
    }
    left
}

/// Remove a temporary file of ours named in a record (never anything else).
fn remove_temp(path: &Path) {
    let ours = path
        .file_name()
        .is_some_and(|name| files::is_temp_name(&name.to_string_lossy()));
    if ours {
        let _ = std::fs::remove_file(path);
    }
}

/// `locks` without repeats (sites name their directories resolved, so one directory reached
/// two ways gives one lock).
fn distinct(locks: impl Iterator<Item = DirLock>) -> Vec<DirLock> {
    let mut out: Vec<DirLock> = Vec::new();
    for lock in locks {
        if !out.iter().any(|seen| seen.path == lock.path) {
            out.push(lock);
        }
    }
    out
}

/// How many names (hard links) the file at `target` has; a rename over it gives only this one
/// the new login.
fn hard_links(target: &Path) -> u64 {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        std::fs::symlink_metadata(target).map_or(1, |meta| meta.nlink())
    }
    #[cfg(not(unix))]
    {
        let _ = target;
        1
    }
}
