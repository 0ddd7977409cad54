//! The owner record the `claude` CLI (2.1.332) keeps beside its refresh lock,
//! `<config dir>/.oauth_refresh.lock.owner`: who holds the lock — pid, the process's start time,
//! its pid namespace — and the birth times of the two lock directories. A lock whose record
//! proves its holder gone is taken over at once, instead of after the 60 s stale time.
//!
//! Ours is written as the CLI writes its own — the same file, fields and computation, after both
//! locks are held (through `.oauth_refresh.lock.owner.tmp.<8 hex>`, created exclusively, mode
//! `0666` less the umask, then renamed; no fsync) — and removed at release only when it is still
//! ours, so that a CLI waiting on a lock one of our processes died holding takes it over within
//! seconds. The CLI's is read as the CLI reads one (a regular file of at most 4096 bytes, that
//! schema) and proves its holder gone only as the CLI's own takeover proves it: the same pid
//! domain and space as ours, a trustworthy view of `/proc`, the recorded birth times matching
//! the lock directories, and the pid gone (`ESRCH`), a zombie, or running with another start
//! time (the pid reused). `EPERM` proves nothing. Without birth times (a file system that keeps
//! none) there is no record, as with the CLI.

use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The record's name in the config dir.
const RECORD: &str = ".oauth_refresh.lock.owner";
/// Largest record read, as the CLI reads it.
const MAX_RECORD: u64 = 4096;

/// What the record holds, as the CLI writes it (`camelCase`, optional fields left out).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct OwnerRecord {
    pub(crate) pid: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) proc_start: Option<String>,
    pub(crate) pid_domain: String,
    pub(crate) pid_space: String,
    pub(crate) lock_birthtime_ms: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) legacy_lock_birthtime_ms: Option<f64>,
}

/// Where the record of the locks in `config_dir` is.
pub(crate) fn record_path(config_dir: &Path) -> PathBuf {
    config_dir.join(RECORD)
}

/// The record of this process holding `lock` (and `legacy`, if it holds that too): `None`
/// where the file system keeps no birth times.
pub(crate) fn ours(lock: &Path, legacy: Option<&Path>) -> Option<OwnerRecord> {
    let lock_birthtime_ms = birthtime_ms(lock)?;
    let pid = i64::from(std::process::id());
    Some(OwnerRecord {
        pid,
        proc_start: proc_start(std::process::id()),
        pid_domain: pid_domain(),
        pid_space: pid_space(),
        lock_birthtime_ms,
        legacy_lock_birthtime_ms: legacy.and_then(birthtime_ms).filter(|ms| *ms > 0.0),
    })
}

/// Write `record` in `config_dir`, replacing any, as the CLI does.
pub(crate) fn write(config_dir: &Path, record: &OwnerRecord) -> io::Result<()> {
    let text = serde_json::to_vec(record).map_err(io::Error::other)?;
    let mut suffix = [0u8; 4];
    unique_bytes(&mut suffix);
    let temp = config_dir.join(format!("{RECORD}.tmp.{}", hex::encode(suffix)));
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o666).custom_flags(libc::O_NOFOLLOW);
    }
    let written = options
        .open(&temp)
        .and_then(|mut file| file.write_all(&text))
        .and_then(|()| fs::rename(&temp, record_path(config_dir)));
    if written.is_err() {
        let _ = fs::remove_file(&temp);
    }
    written
}

/// Remove the record in `config_dir` if it is still `record` (ours: the same pid and lock
/// birth time); a newer holder's stays.
pub(crate) fn remove_if(config_dir: &Path, record: &OwnerRecord) {
    if read(config_dir).is_some_and(|now| {
        now.pid == record.pid && now.lock_birthtime_ms == record.lock_birthtime_ms
    }) {
        let _ = fs::remove_file(record_path(config_dir));
    }
}

/// The record in `config_dir`, read as the CLI reads it: a regular file (not followed through a
/// symlink) of at most 4096 bytes holding that schema; anything else is none.
pub(crate) fn read(config_dir: &Path) -> Option<OwnerRecord> {
    let path = record_path(config_dir);
    let meta = fs::symlink_metadata(&path).ok()?;
    if !meta.is_file() || meta.len() > MAX_RECORD {
        return None;
    }
    let mut options = OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    }
    let mut text = String::new();
    options
        .open(&path)
        .ok()?
        .take(MAX_RECORD)
        .read_to_string(&mut text)
        .ok()?;
    let record: OwnerRecord = serde_json::from_str(&text).ok()?;
    let valid = record.pid_domain.len() <= 512
        && record.pid_space.len() <= 512
        && record.proc_start.as_ref().is_none_or(|s| s.len() <= 64)
        && record.lock_birthtime_ms > 0.0
        && record.legacy_lock_birthtime_ms.is_none_or(|ms| ms > 0.0);
    valid.then_some(record)
}

/// Whether `record` proves that the holder of `lock` (and `legacy`) is gone, as the CLI's own
/// takeover proves it. `lock` must exist; a `legacy` that exists must carry the recorded birth
/// time.
pub(crate) fn proves_holder_gone(record: &OwnerRecord, lock: &Path, legacy: Option<&Path>) -> bool {
    if birthtime_ms(lock) != Some(record.lock_birthtime_ms) {
        return false;
    }
    if record.pid_domain != pid_domain() || record.pid_space != pid_space() {
        return false;
    }
    if !proc_is_trustworthy() {
        return false;
    }
    let Some(pid) = u32::try_from(record.pid).ok().filter(|pid| *pid > 1) else {
        return false;
    };
    let gone = no_such_process(pid)
        || zombie(pid)
        || record
            .proc_start
            .as_deref()
            .is_some_and(|recorded| proc_start(pid).is_some_and(|now| now != recorded));
    if !gone {
        return false;
    }
    match legacy.filter(|path| fs::symlink_metadata(path).is_ok()) {
        Some(legacy) => birthtime_ms(legacy) == record.legacy_lock_birthtime_ms,
        None => true,
    }
}

/// Take over `lock` (the CLI's main refresh lock, in `owned.config_dir`) if its owner record
/// proves its holder gone, as the CLI does: the legacy lock first (when it is there with the
/// recorded birth time), the main lock once it is checked again, then the record. `Ok(true)`:
/// taken over (both gone); `Ok(false)`: no proof, nothing touched.
pub(crate) fn take_over_if_gone(lock: &Path, owned: &super::sites::Owned) -> io::Result<bool> {
    let Some(record) = read(&owned.config_dir) else {
        return Ok(false);
    };
    let legacy = owned.legacy.as_deref();
    if !proves_holder_gone(&record, lock, legacy) {
        return Ok(false);
    }
    if let Some(legacy) = legacy.filter(|path| fs::symlink_metadata(path).is_ok()) {
        remove_dir(legacy)?;
    }
    // Checked again: a lock made anew meanwhile has another birth time.
    if birthtime_ms(lock) != Some(record.lock_birthtime_ms) {
        return Ok(false);
    }
    remove_dir(lock)?;
    remove_if(&owned.config_dir, &record);
    Ok(true)
}

fn remove_dir(path: &Path) -> io::Result<()> {
    match fs::remove_dir(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// The directory's birth time in milliseconds, as the CLI's runtime gives it (`birthtimeMs`:
/// seconds × 1000 + nanoseconds / 10⁶, in floating point); `None` when the file system keeps
/// none.
pub(crate) fn birthtime_ms(path: &Path) -> Option<f64> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        use rustix::fs::{AtFlags, CWD, StatxFlags, statx};
        let stat = statx(CWD, path, AtFlags::SYMLINK_NOFOLLOW, StatxFlags::BTIME).ok()?;
        if stat.stx_mask & StatxFlags::BTIME.bits() == 0 {
            return None;
        }
        let ms = stat.stx_btime.tv_sec as f64 * 1000.0 + f64::from(stat.stx_btime.tv_nsec) / 1e6;
        (ms > 0.0).then_some(ms)
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let created = fs::symlink_metadata(path).ok()?.created().ok()?;
        let since = created.duration_since(std::time::UNIX_EPOCH).ok()?;
        let ms = since.as_secs() as f64 * 1000.0 + f64::from(since.subsec_nanos()) / 1e6;
        (ms > 0.0).then_some(ms)
    }
}

/// Field 22 of `/proc/<pid>/stat` (the start time in clock ticks), as a string; on Linux only
/// (a Windows program under Wine sees the Linux `/proc`, where its pid names another process).
fn proc_start(pid: u32) -> Option<String> {
    if !cfg!(any(target_os = "linux", target_os = "android")) {
        return None;
    }
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.trim_start()
        .split(' ')
        .nth(19)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// Where pids mean the same process, as the CLI names it: on Linux `linux:` + the machine id +
/// `:` + this process's pid namespace (`pid:[…]`); on Windows `linux:` + the host name in lower
/// case; elsewhere just `linux` (the CLI's words, macOS included).
fn pid_domain() -> String {
    if cfg!(any(target_os = "linux", target_os = "android")) {
        let machine = fs::read_to_string("/etc/machine-id").unwrap_or_default();
        format!("linux:{}:{}", machine.trim(), pid_namespace())
    } else if cfg!(windows) {
        format!("linux:{}", hostname().to_lowercase())
    } else {
        "linux".to_owned()
    }
}

/// The host name + `#` + this process's pid namespace.
fn pid_space() -> String {
    let namespace = pid_namespace();
    let host = hostname();
    match namespace.is_empty() {
        true => host,
        false => format!("{host}#{namespace}"),
    }
}

fn pid_namespace() -> String {
    fs::read_link("/proc/self/ns/pid")
        .map(|link| link.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn hostname() -> String {
    #[cfg(unix)]
    {
        rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .into_owned()
    }
    #[cfg(not(unix))]
    {
        std::env::var("COMPUTERNAME").unwrap_or_default()
    }
}

/// On Linux, `/proc` shows this process as itself and at least 16 processes: not a view that
/// hides pids (elsewhere there is no `/proc` to doubt, as for the CLI).
fn proc_is_trustworthy() -> bool {
    if !cfg!(any(target_os = "linux", target_os = "android")) {
        return true;
    }
    let me = fs::read_link("/proc/self").ok();
    if me.as_deref() != Some(Path::new(&std::process::id().to_string())) {
        return false;
    }
    fs::read_dir("/proc").is_ok_and(|entries| {
        entries
            .filter_map(Result::ok)
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .bytes()
                    .all(|b| b.is_ascii_digit())
            })
            .count()
            >= 16
    })
}

/// `kill(pid, 0)` says there is no such process (`EPERM` proves nothing).
fn no_such_process(pid: u32) -> bool {
    #[cfg(unix)]
    {
        let Some(pid) = rustix::process::Pid::from_raw(pid as i32) else {
            return false;
        };
        rustix::process::test_kill_process(pid) == Err(rustix::io::Errno::SRCH)
    }
    // What Node's `process.kill(pid, 0)` asks Windows: no such process, or one that exited.
    #[cfg(windows)]
    {
        super::liveness::proven_gone(pid)
    }
    #[cfg(not(any(unix, windows)))]
    {
        let _ = pid;
        false
    }
}

/// `/proc/<pid>/stat` says the process is a zombie (or dead); on Linux only, as
/// [`proc_start`].
fn zombie(pid: u32) -> bool {
    if !cfg!(any(target_os = "linux", target_os = "android")) {
        return false;
    }
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        matches!(
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.trim_start().chars().next()),
            Some('Z' | 'X')
        )
    })
}

/// Bytes for a unique temporary name (uniqueness, not secrecy: the time and the pid).
fn unique_bytes(bytes: &mut [u8]) {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
        ^ u128::from(std::process::id());
    for (i, byte) in bytes.iter_mut().enumerate() {
        *byte = (seed >> (i * 8)) as u8;
    }
}

/// What the CLI's takeover proves on every platform that runs it: the record of a holder that
/// exited proves it gone, the record of a live one does not (on Windows through `OpenProcess`).
#[cfg(test)]
mod liveness_tests {
    use super::*;

    /// A child waiting for input, and one that ran and was waited for.
    fn live_and_exited() -> (std::process::Child, u32) {
        let program = if cfg!(windows) { "cmd" } else { "cat" };
        let live = std::process::Command::new(program)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut done = std::process::Command::new(program)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let exited = done.id();
        done.wait().unwrap();
        (live, exited)
    }

    #[test]
    fn a_record_proves_an_exited_holder_gone_and_a_live_one_not() {
        let dir = tempfile::tempdir().unwrap();
        let lock = dir.path().join(".oauth_refresh.lock");
        fs::create_dir(&lock).unwrap();
        let record = ours(&lock, None);
        if record.is_none() && cfg!(any(target_os = "linux", windows)) {
            panic!(
                "no birth time for {}: the CLI writes no record then",
                lock.display()
            );
        }
        let Some(record) = record else { return };
        let (mut live, exited) = live_and_exited();
        let of = |pid: u32| OwnerRecord {
            pid: i64::from(pid),
            // A start time is known on Linux only; without one, liveness alone decides.
            proc_start: None,
            ..record.clone()
        };
        let live_proves = proves_holder_gone(&of(live.id()), &lock, None);
        let exited_proves = proves_holder_gone(&of(exited), &lock, None);
        live.kill().unwrap();
        live.wait().unwrap();
        assert!(!live_proves, "a live holder");
        assert!(exited_proves, "a holder that exited");
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn our_record_is_the_clis_shape_and_proves_nothing_while_we_live() {
        let dir = tempfile::tempdir().unwrap();
        let lock = dir.path().join(".oauth_refresh.lock");
        fs::create_dir(&lock).unwrap();
        let Some(record) = ours(&lock, None) else {
            // No birth times here: no record, as with the CLI.
            return;
        };
        write(dir.path(), &record).unwrap();
        let text = fs::read_to_string(record_path(dir.path())).unwrap();
        let keys: Vec<String> =
            serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&text)
                .unwrap()
                .keys()
                .cloned()
                .collect();
        assert_eq!(
            keys,
            [
                "pid",
                "procStart",
                "pidDomain",
                "pidSpace",
                "lockBirthtimeMs"
            ]
        );
        assert_eq!(read(dir.path()), Some(record.clone()));
        assert!(!proves_holder_gone(&record, &lock, None), "we are alive");
        // A dead pid with our start time's shape proves it; another namespace never does.
        let dead = OwnerRecord {
            pid: i64::from(u32::MAX >> 2),
            ..record.clone()
        };
        assert!(proves_holder_gone(&dead, &lock, None));
        let foreign = OwnerRecord {
            pid_space: "elsewhere#pid:[1]".into(),
            ..dead.clone()
        };
        assert!(!proves_holder_gone(&foreign, &lock, None));
        // A lock made again (another birth time) is not the recorded one.
        fs::remove_dir(&lock).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(5));
        fs::create_dir(&lock).unwrap();
        assert!(!proves_holder_gone(&dead, &lock, None));
        // Removed only while ours.
        remove_if(dir.path(), &dead);
        assert!(record_path(dir.path()).exists());
        remove_if(dir.path(), &record);
        assert!(!record_path(dir.path()).exists());
    }
}
