//! The `claude` CLI's own refresh locks, taken the way the CLI takes them, so our refresh and the
//! CLI's never overlap.
//!
//! The CLI's locks: a lock is a directory created with `mkdir` (atomic), kept fresh by touching
//! its mtime while held, removed on release, and considered abandoned ("stale") when its mtime is
//! older than a bound. It takes two: `<config dir>/.oauth_refresh.lock` and the legacy
//! `<realpath(config dir)>.lock`, both stale after 60 s in 2.1.332 (2.1.197 said 10 s; a live
//! 2.1.332 holder aborts its refresh when its lock is touched, so nothing younger is taken). The
//! holder of the first leaves an owner record ([`owner`]) that proves it gone when it dies,
//! so its lock is taken over at once rather than after those 60 s.
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
//! no-replace creation ([`staged`]), stale judgment and takeover ([`stale`]), the owner record
//! ([`owner`]), the toucher ([`toucher`]), which directory is ours ([`identity`]), the one wait
//! loop ([`retry`]); and the held session the file and keychain stores refresh under, journal,
//! prepared write, hand-over of a killed holder's answer and all ([`session`]).

mod acquire;
pub(crate) mod flock;
mod identity;
mod journal;
mod liveness;
pub(crate) mod owner;
mod retry;
pub(crate) mod session;
mod sites;
mod staged;
mod stale;
mod toucher;

pub(crate) use acquire::{HeldDirLocks, acquire_all};
pub(crate) use journal::{Journal, PreparedRecord, Record};
pub(crate) use sites::{DirLock, claude_cli_locks, claude_cli_write_lock};

#[cfg(test)]
mod tests;
