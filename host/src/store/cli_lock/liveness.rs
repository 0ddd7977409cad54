//! Whether a process recorded earlier is still running, to clean up after crashed processes of
//! ours (their refresh locks and half-written temporary files) and to prove a lock holder gone.

/// Whether `pid` names a live process. Where this cannot be told, assume it is alive: the
/// caller then waits for a lock to go stale or leaves a file in place.
pub(crate) fn process_alive(pid: u32) -> bool {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        linux::alive(pid).unwrap_or(true)
    }
    #[cfg(windows)]
    {
        !windows::gone(pid)
    }
    #[cfg(not(any(target_os = "linux", target_os = "android", windows)))]
    {
        let _ = pid;
        true
    }
}

/// Whether the system says `pid` names no running process: no such process, or — on Linux — a
/// zombie, or — on Windows — one that has exited. Anything else (a live process, a process of
/// another user, no way to tell) proves nothing.
// Linux proves it its own way, as the CLI does (`kill` and `/proc`, in `owner.rs`).
#[cfg_attr(not(windows), allow(dead_code))]
pub(crate) fn proven_gone(pid: u32) -> bool {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        linux::alive(pid) == Some(false)
    }
    #[cfg(windows)]
    {
        windows::gone(pid)
    }
    #[cfg(not(any(target_os = "linux", target_os = "android", windows)))]
    {
        let _ = pid;
        false
    }
}

/// `/proc/<pid>/stat`, read only on Linux: a Windows program under Wine sees the Linux `/proc`
/// too, where a Windows pid names some other process.
#[cfg(any(target_os = "linux", target_os = "android"))]
mod linux {
    use std::path::Path;

    /// `None` without a `/proc` to ask.
    pub(super) fn alive(pid: u32) -> Option<bool> {
        if !Path::new("/proc/self/stat").exists() {
            return None;
        }
        Some(
            match std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("stat")) {
                // The state follows the parenthesised command name; a zombie is dead for us.
                Ok(text) => !matches!(
                    text.rsplit_once(')')
                        .and_then(|(_, rest)| rest.trim_start().chars().next()),
                    Some('Z' | 'X')
                ),
                Err(_) => false,
            },
        )
    }
}

/// `OpenProcess` and `GetExitCodeProcess`, as Node's `process.kill(pid, 0)` (the `claude`
/// CLI's check) asks Windows.
#[cfg(windows)]
#[allow(unsafe_code)]
mod windows {
    use windows_sys::Win32::Foundation::{
        CloseHandle, ERROR_INVALID_PARAMETER, GetLastError, STILL_ACTIVE,
    };
    use windows_sys::Win32::System::Threading::{
        GetExitCodeProcess, OpenProcess, PROCESS_QUERY_LIMITED_INFORMATION,
    };

    /// No process has `pid` (Windows says the id is invalid), or the one that has it exited.
    pub(super) fn gone(pid: u32) -> bool {
        // SAFETY: plain calls with no pointers but `code`, a live local; the handle is closed.
        unsafe {
            let handle = OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, 0, pid);
            if handle.is_null() {
                return GetLastError() == ERROR_INVALID_PARAMETER;
            }
            let mut code = 0_u32;
            let asked = GetExitCodeProcess(handle, &mut code);
            CloseHandle(handle);
            asked != 0 && code != STILL_ACTIVE as u32
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{process_alive, proven_gone};

    /// A process that ran and was waited for.
    fn exited() -> u32 {
        let mut command = if cfg!(windows) {
            let mut command = std::process::Command::new("cmd");
            command.args(["/c", "exit"]);
            command
        } else {
            std::process::Command::new("true")
        };
        let mut child = command.spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        pid
    }

    #[test]
    fn this_process_lives_and_one_that_exited_does_not() {
        assert!(process_alive(std::process::id()));
        assert!(!proven_gone(std::process::id()));
        let pid = exited();
        assert!(!process_alive(pid));
        assert!(proven_gone(pid));
        assert!(!process_alive(u32::MAX - 7));
    }

    #[cfg(unix)]
    #[test]
    fn a_zombie_is_dead() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        // Exited but not reaped: a zombie.
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert!(!process_alive(pid));
        assert!(proven_gone(pid));
        child.wait().unwrap();
    }
}
