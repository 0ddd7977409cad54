//! A Redis login's high-water mark on this machine: the newest state of it this machine has seen
//! (epoch and generation), the refresh tokens it has presented, and the newest login it wrote,
//! sealed as in Redis. Redis can go back in time — a failover to a replica that lags, a snapshot
//! restored, anyone who can write the key — or forget (an eviction, a flush, a restart without
//! persistence), and a login read from an older state holds a refresh token the endpoint has
//! rotated already: presenting it would revoke the login everywhere. So a read of an older
//! generation of the same epoch is refused, a token this machine presented once is never
//! presented again, and the newest login this machine wrote stays in the mark for the operator to
//! import back (`claude-code-auth --store … import MARK --force`).
//!
//! The mark is a small file in this crate's state directory (`redis/`), `0600`, replaced
//! atomically under an OS lock of its own, since the processes of one machine share it.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::seal::hex;
use crate::files;
use crate::store::handover::digest_hex;
use crate::store::state_dir;

/// Refresh tokens remembered as presented (a few rotations back is all a rollback reaches).
const SPENT_KEPT: usize = 32;

/// What the mark holds.
#[derive(Serialize, Deserialize, Default, Debug, Clone)]
pub(super) struct Mark {
    /// The store and key it is of.
    pub(super) location: String,
    /// The login's epoch in Redis (a login imported anew into an emptied Redis has another).
    pub(super) epoch: Option<String>,
    /// The newest generation seen of that epoch.
    pub(super) generation: u64,
    /// SHA-256 (hex) of the refresh tokens this machine presented, newest last.
    #[serde(default)]
    pub(super) spent: Vec<String>,
    /// The newest login this machine wrote, sealed as in Redis.
    #[serde(default)]
    pub(super) newest: Option<Newest>,
}

/// A login this machine wrote, as Redis got it.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub(super) struct Newest {
    pub(super) generation: u64,
    /// The sealed value (or the plaintext document, for a plaintext store), hex.
    pub(super) value: String,
}

/// How the login in Redis compares with the mark.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Compared {
    /// As new as, or newer than, anything seen (or another epoch: a new login).
    Current,
    /// An older generation of the epoch seen: Redis went back in time.
    Older { seen: u64 },
    /// No login, where this machine saw one.
    Gone { seen: u64 },
}

/// The mark file of one login.
#[derive(Debug, Clone)]
pub(super) struct Marks {
    path: Option<PathBuf>,
    location: String,
}

impl Marks {
    /// The mark of the login `location` (the store's URL without password, and its key), in
    /// `dir` or this crate's state directory.
    pub(super) fn new(location: &str, dir: Option<&Path>) -> Self {
        let base = match dir {
            Some(dir) => Some(dir.to_path_buf()),
            None => state_dir::default().or_else(state_dir::fallback),
        };
        let name = format!("{}.json", &digest_hex(location.as_bytes())[..32]);
        Self {
            path: base.map(|base| base.join("redis").join(name)),
            location: location.to_owned(),
        }
    }

    /// Where the mark is (for messages).
    pub(super) fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The mark as it stands.
    pub(super) fn read(&self) -> Option<Mark> {
        read_at(self.path.as_deref()?).filter(|mark| mark.location == self.location)
    }

    /// Compare the login read from Redis (`epoch`, `generation`; 0: none) with the mark, and
    /// raise the mark to it when it is newer.
    pub(super) fn seen(&self, epoch: Option<&str>, generation: u64) -> Compared {
        let mut compared = Compared::Current;
        self.update(|mark| {
            let same_epoch = epoch.is_some() && mark.epoch.as_deref() == epoch;
            if generation == 0 {
                if mark.generation > 0 {
                    compared = Compared::Gone {
                        seen: mark.generation,
                    };
                }
                return false;
            }
            if same_epoch && generation < mark.generation {
                compared = Compared::Older {
                    seen: mark.generation,
                };
                return false;
            }
            if !same_epoch || generation > mark.generation {
                mark.epoch = epoch.map(str::to_owned);
                mark.generation = generation;
                return true;
            }
            false
        });
        compared
    }

    /// This machine is about to present the refresh token whose digest is `spent`: `false` if it
    /// presented it before (the store went back in time); noted otherwise.
    pub(super) fn spending(&self, spent: &str) -> bool {
        let mut fresh = true;
        self.update(|mark| {
            if mark.spent.iter().any(|s| s == spent) {
                fresh = false;
                return false;
            }
            mark.spent.push(spent.to_owned());
            let excess = mark.spent.len().saturating_sub(SPENT_KEPT);
            mark.spent.drain(..excess);
            true
        });
        fresh
    }

    /// This machine wrote generation `generation` of epoch `epoch`, stored as `value`.
    pub(super) fn wrote(&self, epoch: Option<&str>, generation: u64, value: &[u8]) {
        self.update(|mark| {
            let same_epoch = epoch.is_some() && mark.epoch.as_deref() == epoch;
            mark.generation = match same_epoch {
                true => mark.generation.max(generation),
                // A login put in anew: what was seen of the old one no longer counts.
                false => generation,
            };
            mark.epoch = epoch.map(str::to_owned);
            mark.newest = Some(Newest {
                generation,
                value: hex(value),
            });
            true
        });
    }

    /// Change the mark under its lock; `change` says whether it changed. Best effort: a mark
    /// that cannot be kept only weakens the checks, and says so.
    fn update(&self, change: impl FnOnce(&mut Mark) -> bool) {
        let Some(path) = &self.path else {
            return;
        };
        let updated = (|| -> io::Result<()> {
            let dir = files::parent_of(path);
            files::create_private_dir(&dir)?;
            let _lock = lock(&dir.join(".marks.lock"))?;
            let mut mark = read_at(path)
                .filter(|mark| mark.location == self.location)
                .unwrap_or_else(|| Mark {
                    location: self.location.clone(),
                    ..Mark::default()
                });
            if change(&mut mark) {
                let text = serde_json::to_vec(&mark).map_err(io::Error::other)?;
                files::write_atomically(path, &text)?;
            }
            Ok(())
        })();
        if let Err(error) = updated {
            tracing::warn!(
                error = %error,
                mark = %path.display(),
                "this machine's high-water mark of the Redis login could not be kept; a Redis that goes back in time may go unnoticed"
            );
        }
    }
}

/// The mark at `path`, if it is a private file of this user holding one.
pub(super) fn read_at(path: &Path) -> Option<Mark> {
    let mut options = OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    }
    let file = options.open(path).ok()?;
    let meta = file.metadata().ok()?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let me = rustix::process::geteuid().as_raw();
        if !meta.is_file() || meta.uid() != me || meta.mode() & 0o077 != 0 {
            return None;
        }
    }
    #[cfg(not(unix))]
    if !meta.is_file() {
        return None;
    }
    let mut text = String::new();
    file.take(1 << 20).read_to_string(&mut text).ok()?;
    serde_json::from_str(&text).ok()
}

/// An OS lock on `path` (made `0600` if missing), held until dropped.
fn lock(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600).custom_flags(libc::O_NOFOLLOW);
    }
    let file = options.open(path)?;
    file.lock()?;
    Ok(file)
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn a_mark_notices_redis_going_back_or_forgetting_and_a_token_presented_twice() {
        let dir = tempfile::tempdir().unwrap();
        let marks = Marks::new("redis://h key k", Some(dir.path()));
        assert_eq!(marks.seen(Some("e1"), 3), Compared::Current);
        assert_eq!(marks.seen(Some("e1"), 5), Compared::Current);
        assert_eq!(marks.seen(Some("e1"), 4), Compared::Older { seen: 5 });
        assert_eq!(marks.seen(None, 0), Compared::Gone { seen: 5 });
        // A login imported anew (another epoch) is no rollback.
        assert_eq!(marks.seen(Some("e2"), 1), Compared::Current);
        assert_eq!(marks.read().unwrap().generation, 1);
        assert!(marks.spending("d1"));
        assert!(!marks.spending("d1"), "presented twice");
        marks.wrote(Some("e2"), 2, b"sealed");
        let mark = marks.read().unwrap();
        assert_eq!(mark.newest.unwrap().value, hex(b"sealed"));
        // Another login's mark is not this one's.
        let other = Marks {
            location: "redis://h key other".into(),
            ..marks.clone()
        };
        assert!(other.read().is_none());
    }
}
