//! The real `claude` CLI, each pinned version installed from npm into a cache directory under
//! `target/` (about 240 MB each, a few seconds from the registry; kept between runs).
//!
//! To test against another release, add its version to [`VERSIONS`] (and, where its protocol
//! moved, say since when in the scenarios' [`super::Scenario`] list).

use std::path::{Path, PathBuf};
use std::process::Command;

/// The versions every real-CLI scenario runs against: our first pin (the protocol notes' first
/// part) and the release users have today (the notes' "What changed by 2.1.332").
pub const VERSIONS: [&str; 2] = ["2.1.197", "2.1.332"];

/// The `claude` executable of `version`, installed if needed; `Err` says why it cannot be (no
/// npm, another platform), for the skip message.
pub fn claude(version: &str) -> Result<PathBuf, String> {
    if !(cfg!(target_os = "linux") && cfg!(target_arch = "x86_64")) {
        return Err("the pinned claude CLI is installed here for linux-x64 only".into());
    }
    let npm_works = Command::new("npm")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !npm_works {
        return Err("npm is not installed".into());
    }
    let prefix = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("claude-cli-{version}"));
    let binary = prefix.join("node_modules/@anthropic-ai/claude-code-linux-x64/claude");
    if !binary.exists() {
        std::fs::create_dir_all(&prefix).map_err(|e| e.to_string())?;
        let installed = Command::new("npm")
            .args([
                "install",
                "--no-audit",
                "--no-fund",
                "--ignore-scripts",
                "--prefix",
            ])
            .arg(&prefix)
            .arg(format!("@anthropic-ai/claude-code@{version}"))
            .output()
            .map_err(|e| format!("npm install: {e}"))?;
        if !installed.status.success() {
            return Err(format!(
                "npm install @anthropic-ai/claude-code@{version} failed: {}",
                String::from_utf8_lossy(&installed.stderr)
            ));
        }
    }
    let said = Command::new(&binary)
        .arg("--version")
        .output()
        .map_err(|e| format!("{}: {e}", binary.display()))?;
    let printed = String::from_utf8_lossy(&said.stdout);
    if !printed.contains(version) {
        return Err(format!("{} says {printed:?}", binary.display()));
    }
    Ok(binary)
}
