//! Whether a process recorded earlier is still running, to clean up after crashed processes of
//! ours (their refresh locks and half-written temporary files).

use std::path::Path;

/// Whether `pid` names a live process. Where this cannot be told (no `/proc`), assume it is
/// alive: the caller then waits for a lock to go stale or leaves a file in place.
pub(crate) fn process_alive(pid: u32) -> bool {
    if !Path::new("/proc/self/stat").exists() {
        return true;
    }
    match std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("stat")) {
        // The state follows the parenthesised command name; a zombie is dead for our purpose.
        Ok(text) => !matches!(
            text.rsplit_once(')')
                .and_then(|(_, rest)| rest.trim_start().chars().next()),
            Some('Z' | 'X')
        ),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::process_alive;

    #[test]
    fn live_dead_and_zombie() {
        assert!(process_alive(std::process::id()));
        assert!(!process_alive(u32::MAX - 7));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        // Exited but not reaped: a zombie.
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert!(!process_alive(pid));
        child.wait().unwrap();
        assert!(!process_alive(pid));
    }
}
