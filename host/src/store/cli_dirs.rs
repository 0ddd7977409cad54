//! Where the `claude` CLI (2.1.332) keeps its state, worked out from its environment as it works
//! it out: its config dir (the credential file's and the locks' directory), and the service name
//! of its macOS keychain item.

use std::ffi::OsString;
use std::path::PathBuf;

use icu_normalizer::ComposingNormalizerBorrowed;
use sha2::{Digest, Sha256};

use crate::error::{ClaudeCodeAuthError, ClaudeCodeAuthResult};

/// The service name the `claude` CLI gives its keychain item.
pub const KEYCHAIN_SERVICE: &str = "Claude Code-credentials";
/// The variable the CLI (2.1.332) reads its secure storage's directory from before
/// `CLAUDE_CONFIG_DIR`.
pub const SECURE_STORAGE_DIR_ENV: &str = "CLAUDE_SECURESTORAGE_CONFIG_DIR";
/// The variable naming the CLI's config dir.
pub const CONFIG_DIR_ENV: &str = "CLAUDE_CONFIG_DIR";

/// The CLI's config dir in an environment read through `env`: `CLAUDE_SECURESTORAGE_CONFIG_DIR`
/// when set (empty: `~/.claude`), else a non-empty `CLAUDE_CONFIG_DIR`, else `~/.claude` (home
/// from `HOME`, then `USERPROFILE`); NFC-normalised, not resolved. An empty `CLAUDE_CONFIG_DIR`
/// counts as unset (the CLI would take the current directory: surely not what was meant).
pub(crate) fn config_dir_from(
    env: &impl Fn(&str) -> Option<OsString>,
) -> ClaudeCodeAuthResult<PathBuf> {
    let non_empty = |name: &str| env(name).filter(|v| !v.is_empty());
    let home_claude = || {
        non_empty("HOME")
            .or_else(|| non_empty("USERPROFILE"))
            .map(|home| PathBuf::from(home).join(".claude"))
            .ok_or(ClaudeCodeAuthError::HomeUnresolved)
    };
    let dir = match env(SECURE_STORAGE_DIR_ENV) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        Some(_) => home_claude()?,
        None => match non_empty(CONFIG_DIR_ENV) {
            Some(dir) => PathBuf::from(dir),
            None => home_claude()?,
        },
    };
    Ok(nfc_path(dir))
}

/// The keychain service name of the CLI's credential in an environment read through `env`:
/// `Claude Code-credentials`, then `-<first 8 hex digits of sha256(dir)>` where `dir` is a
/// non-empty `CLAUDE_SECURESTORAGE_CONFIG_DIR`, or, when that is unset, a non-empty
/// `CLAUDE_CONFIG_DIR` — the raw value, NFC-normalised, not resolved.
pub(crate) fn keychain_service_for(env: &impl Fn(&str) -> Option<OsString>) -> String {
    let dir = match env(SECURE_STORAGE_DIR_ENV) {
        Some(dir) => Some(dir).filter(|d| !d.is_empty()),
        None => env(CONFIG_DIR_ENV).filter(|d| !d.is_empty()),
    };
    match dir {
        None => KEYCHAIN_SERVICE.to_owned(),
        Some(dir) => {
            let dir = nfc(&dir.to_string_lossy());
            let digest = Sha256::digest(dir.as_bytes());
            format!("{KEYCHAIN_SERVICE}-{}", hex::encode(&digest[..4]))
        }
    }
}

/// `text` in Unicode normalisation form C, as JavaScript's `normalize("NFC")`.
pub(crate) fn nfc(text: &str) -> String {
    ComposingNormalizerBorrowed::new_nfc()
        .normalize(text)
        .into_owned()
}

/// A path in NFC where it is Unicode; bytes that are not are left as they are.
fn nfc_path(path: PathBuf) -> PathBuf {
    match path.to_str() {
        Some(text) => PathBuf::from(nfc(text)),
        None => path,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::env;

    /// The CLI's `I6()`: its secure storage's directory (the credential file's, and the locks').
    #[test]
    fn the_config_dir_is_chosen_as_the_cli_chooses_it() {
        let cases: [(&[(&str, &str)], &str); 6] = [
            (&[("HOME", "/h")], "/h/.claude"),
            (&[("HOME", "/h"), ("CLAUDE_CONFIG_DIR", "/c")], "/c"),
            (&[("HOME", "/h"), ("CLAUDE_CONFIG_DIR", "")], "/h/.claude"),
            (
                &[
                    ("HOME", "/h"),
                    ("CLAUDE_CONFIG_DIR", "/c"),
                    ("CLAUDE_SECURESTORAGE_CONFIG_DIR", "/s"),
                ],
                "/s",
            ),
            (
                &[
                    ("HOME", "/h"),
                    ("CLAUDE_CONFIG_DIR", "/c"),
                    ("CLAUDE_SECURESTORAGE_CONFIG_DIR", ""),
                ],
                "/h/.claude",
            ),
            // "é" written decomposed (e + U+0301) becomes the composed U+00E9.
            (
                &[("HOME", "/h"), ("CLAUDE_CONFIG_DIR", "/cafe\u{301}")],
                "/caf\u{e9}",
            ),
        ];
        for (vars, want) in cases {
            assert_eq!(
                config_dir_from(&env(vars)).unwrap(),
                PathBuf::from(want),
                "{vars:?}"
            );
        }
        assert!(matches!(
            config_dir_from(&env(&[])),
            Err(ClaudeCodeAuthError::HomeUnresolved)
        ));
    }

    /// The CLI's `wje()`; the digests were worked out apart from this code
    /// (`printf %s DIR | sha256sum | cut -c1-8`).
    #[test]
    fn the_keychain_service_is_named_as_the_cli_names_it() {
        let plain = "Claude Code-credentials";
        let cases: [(&[(&str, &str)], &str); 6] = [
            (&[("HOME", "/h")], plain),
            (&[("CLAUDE_CONFIG_DIR", "")], plain),
            (
                &[("CLAUDE_CONFIG_DIR", "/Users/ada/.claude-work")],
                "Claude Code-credentials-6a5b8464",
            ),
            (
                &[
                    ("CLAUDE_CONFIG_DIR", "/c"),
                    ("CLAUDE_SECURESTORAGE_CONFIG_DIR", "/s"),
                ],
                "Claude Code-credentials-8e295f31",
            ),
            // Set but empty: the default name, whatever CLAUDE_CONFIG_DIR says.
            (
                &[
                    ("CLAUDE_CONFIG_DIR", "/c"),
                    ("CLAUDE_SECURESTORAGE_CONFIG_DIR", ""),
                ],
                plain,
            ),
            // Decomposed "é": hashed as the composed form, /caf\u{e9}.
            (
                &[("CLAUDE_CONFIG_DIR", "/cafe\u{301}")],
                "Claude Code-credentials-a434c8fb",
            ),
        ];
        for (vars, want) in cases {
            assert_eq!(keychain_service_for(&env(vars)), want, "{vars:?}");
        }
    }
}
