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
//!
//! Besides those directories, a refresh holds an OS file lock ([`flock`]) next to the credential,
//! which the kernel releases when its holder dies. One file per concept: where the CLI's locks
//! live ([`sites`]), the crash journal ([`journal`]), all-or-nothing acquisition ([`acquire`]),
//! no-replace creation ([`staged`]), stale judgment and takeover ([`stale`]), the toucher
//! ([`toucher`]), which directory is ours ([`identity`]), the one wait loop ([`retry`]).

mod acquire;
pub(crate) mod flock;
mod identity;
mod journal;
mod liveness;
mod path_bytes;
mod retry;
mod sites;
mod staged;
mod stale;
mod toucher;

pub(crate) use acquire::{HeldDirLocks, acquire_all};
pub(crate) use journal::{Journal, PreparedRecord, Record};
pub(crate) use sites::{DirLock, claude_cli_locks, claude_cli_write_lock};

#[cfg(test)]
mod tests;
