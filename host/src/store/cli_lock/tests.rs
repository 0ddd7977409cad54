//! The lock module as a whole: taking, touching, judging stale, recovering after a kill.

use super::acquire::*;
use super::identity::*;
use super::journal::*;
use super::sites::*;
use super::staged::*;
use super::stale::*;
use super::toucher::*;
use std::fs::File;
use std::io;
#[cfg(unix)]
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

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
    crate::files::times::set_modified(path, at).unwrap();
}

#[test]
fn the_cli_locks_sit_where_the_cli_puts_them() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join(".claude");
    std::fs::create_dir(&config).unwrap();
    let locks = claude_cli_locks(&config);
    let real = std::fs::canonicalize(&config).unwrap();
    // As the CLI's `realpath` gives it: without Windows' verbatim `\\?\` prefix.
    let real = PathBuf::from(real.to_str().unwrap().trim_start_matches(r"\\?\"));
    assert_eq!(locks[0].path, config.join(".oauth_refresh.lock"));
    assert_eq!(locks[0].stale_after, Duration::from_secs(60));
    assert_eq!(locks[1].path, real.with_file_name(".claude.lock"));
    assert_eq!(locks[1].stale_after, Duration::from_secs(60));
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
        owned: None,
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
    let identities = held.identities();
    std::mem::forget(held);
    let dead = Record {
        pid: u32::MAX - 7,
        locks: identities.clone(),
        ..Record::default()
    };
    Journal(&mut file).write(&dead).unwrap();
    // A live pid (ours is excluded: a child waiting for input) keeps them.
    let mut live = std::process::Command::new(if cfg!(windows) { "cmd" } else { "cat" })
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    Journal(&mut file)
        .write(&Record {
            pid: live.id(),
            locks: identities,
            ..Record::default()
        })
        .unwrap();
    let expected: Vec<PathBuf> = locks.iter().map(|l| l.path.clone()).collect();
    Journal(&mut file).recover_orphans(&expected, &[]);
    live.kill().unwrap();
    live.wait().unwrap();
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

/// A dead holder's record may hand over a write to the credential file only: one naming
/// another file of the config directory (or somewhere else) as its target is not followed.
#[test]
fn a_journal_hands_over_writes_to_the_credential_file_only() {
    let dir = tempfile::tempdir().unwrap();
    let credential = dir.path().join(".credentials.json");
    let dead = u32::MAX - 9;
    let mut file = journal_file(dir.path());
    let prepared = |target: PathBuf| PreparedRecord {
        temp: dir.path().join(".ccauth-1-0.tmp"),
        target,
        complete: true,
        spent_sha256: None,
        side_at: None,
    };
    for (target, handed) in [
        (dir.path().join("settings.json"), false),
        (dir.path().join("sub").join(".credentials.json"), false),
        (credential.clone(), true),
    ] {
        let record = Record {
            pid: dead,
            locks: Vec::new(),
            staged: None,
            prepared: Some(prepared(target.clone())),
        };
        Journal(&mut file).write(&record).unwrap();
        let orphans = Journal(&mut file).recover_orphans(&[], std::slice::from_ref(&credential));
        assert_eq!(orphans.prepared.is_some(), handed, "{target:?}");
    }
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
    // What a file system without a no-replace rename answers.
    #[cfg(unix)]
    let einval = |_: &Path, _: &Path| Err(io::Error::from_raw_os_error(libc::EINVAL));
    #[cfg(not(unix))]
    let einval = |_: &Path, _: &Path| Err(io::Error::from(io::ErrorKind::Unsupported));
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

#[cfg(any(
    target_os = "linux",
    target_os = "android",
    target_vendor = "apple",
    windows
))]
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
