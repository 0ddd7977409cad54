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

use crate::error::{ClaudeCodeAuthError, ClaudeCodeAuthResult};
use crate::files::{self, Prepared};
use crate::lock::{self, DirLock, HeldDirLocks, Journal, PreparedRecord, Record, flock};

use super::handover::{self, Verdict};
use super::{RefreshLock, blocking};

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

/// Take the refresh lock of `sites`, in order, waiting at most `wait` in all.
pub(crate) async fn lock(sites: Vec<Site>, wait: Duration) -> ClaudeCodeAuthResult<RefreshLock> {
    blocking(move || Session::acquire(&sites, wait).map(RefreshLock::new)).await
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
        let written = files::write_atomically(&target, &document);
        held.release();
        written.map_err(|source| ClaudeCodeAuthError::Io {
            path: target.display().to_string(),
            source,
        })
    })
    .await
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
    /// The CLI's write locks of every site, and whether they are held.
    write_locks: Vec<DirLock>,
    write_dirs: Option<HeldDirLocks>,
    /// The temporary file the next save writes into.
    prepared: Option<Prepared>,
}

impl Session {
    fn acquire(sites: &[Site], wait: Duration) -> ClaudeCodeAuthResult<Self> {
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
        // Whoever held these before us is gone; clear up after it if it died holding them —
        // only what these sites' locks and files are.
        let expected: Vec<PathBuf> = cli_locks
            .iter()
            .chain(&write_locks)
            .map(|lock| lock.path.clone())
            .collect();
        let dirs: Vec<PathBuf> = sites.iter().map(|site| site.config_dir.clone()).collect();
        let mut left_behind = Vec::new();
        for file in &mut flocks {
            left_behind.extend(Journal(file).recover_orphans(&expected, &dirs).prepared);
        }
        let mut record = Record::new();
        // A write left behind stays on record (now ours) until it is adopted or removed.
        record.prepared = left_behind.pop();
        let journal = flocks.last_mut().ok_or_else(|| ClaudeCodeAuthError::Io {
            path: "refresh lock".into(),
            source: io::Error::other("no lock site"),
        })?;
        let refresh_dirs =
            match lock::acquire_all(&cli_locks, remaining(), &mut Journal(journal), &mut record) {
                Ok(dirs) => dirs,
                Err(error) => {
                    if record.prepared.is_some() {
                        // Not ours to keep: leave a killed writer's document to the next holder.
                        record.release_holder();
                        let _ = Journal(journal).write(&record);
                    }
                    return Err(error);
                }
            };
        let mut held = Held {
            flocks,
            record,
            refresh_dirs,
            write_locks,
            write_dirs: None,
            prepared: None,
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
    /// record before it exists, its space reserved.
    pub(crate) fn prepare(&mut self, target: &Path, size: u64) -> ClaudeCodeAuthResult<()> {
        if let Some(left) = &self.record.prepared {
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
            return Err(ClaudeCodeAuthError::LockTimeout {
                lock: format!(
                    "{} (taken over by another process while held)",
                    lost.display()
                ),
                waited: Duration::ZERO,
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
            replaced_sha256: None,
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
        let replaced = std::fs::read_to_string(target)
            .ok()
            .and_then(|text| handover::refresh_token_digest(&Zeroizing::new(text)));
        let mut prepared = match self.prepared.take() {
            Some(prepared) => prepared,
            // Nothing prepared (a save without a refresh): prepare now.
            None => {
                self.prepare(target, document.len() as u64)?;
                self.prepared.take().expect("just prepared")
            }
        };
        let attempt = match prepared.fill(document) {
            Ok(synced) => {
                if let Err(e) = synced {
                    // The bytes are written; durability is what is in doubt. Going on is better
                    // than keeping the spent token on disk.
                    tracing::warn!(
                        error = %e,
                        "the refreshed credential could not be synced to disk; it is put in place, but a power loss may lose it"
                    );
                }
                if let Some(record) = &mut self.record.prepared {
                    record.complete = true;
                    record.replaced_sha256 = replaced;
                }
                // Complete and on record: from here a kill leaves it for the next holder.
                let _ = self.note();
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
                prepared.discard();
                tracing::warn!(error = %renaming, "could not replace the credential file; writing it in place");
                files::overwrite_in_place(target, document).map_err(|_| io_error(renaming))
            }
        };
        self.record.prepared = None;
        let _ = self.note();
        result
    }

    /// Put back the document a killed holder left complete in `orphan`, if the target still
    /// holds the token it replaced; remove it otherwise.
    fn hand_over(&mut self, orphan: &PreparedRecord, wait: Duration) -> ClaudeCodeAuthResult<()> {
        let kept = match std::fs::read_to_string(&orphan.temp) {
            Ok(text) if orphan.complete => Zeroizing::new(text),
            _ => {
                remove_temp(&orphan.temp);
                self.record.prepared = None;
                let _ = self.note();
                return Ok(());
            }
        };
        self.lock_write(wait)?;
        let stored = std::fs::read_to_string(&orphan.target)
            .ok()
            .map(Zeroizing::new);
        let verdict = handover::judge(
            &kept,
            orphan.replaced_sha256.as_deref(),
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
