//! Where this crate keeps state of its own on a machine (rescue files, a Redis login's
//! high-water marks): the user's state directory, else a private directory of this user in the
//! system's temporary directory.

use std::path::PathBuf;

/// Environment variable naming the directory this crate keeps its state in (rescue files, a
/// Redis login's high-water marks); an empty value disables it (the fallback in the temporary
/// directory is still used).
pub const STATE_DIR_ENV: &str = "CLAUDE_CODE_AUTH_STATE_DIR";

/// `$CLAUDE_CODE_AUTH_STATE_DIR`, else `$XDG_STATE_HOME/entelix-auth-claude-code`, else
/// `~/.local/state/entelix-auth-claude-code`; `None` when none is set.
pub(crate) fn default() -> Option<PathBuf> {
    let var = |name| std::env::var_os(name);
    if let Some(dir) = var(STATE_DIR_ENV) {
        return (!dir.is_empty()).then(|| PathBuf::from(dir));
    }
    let base = var("XDG_STATE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            var("HOME")
                .filter(|v| !v.is_empty())
                .map(|home| PathBuf::from(home).join(".local").join("state"))
        })?;
    Some(base.join("entelix-auth-claude-code"))
}

/// A directory of this user's in the system's temporary directory: for state when the state
/// directory cannot take it (none is set, it is read-only, it is full).
pub(crate) fn fallback() -> Option<PathBuf> {
    #[cfg(unix)]
    let name = format!(
        "entelix-auth-claude-code-{}",
        rustix::process::geteuid().as_raw()
    );
    #[cfg(not(unix))]
    let name = "entelix-auth-claude-code".to_owned();
    Some(std::env::temp_dir().join(name))
}
