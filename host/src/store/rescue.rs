//! The last resort for a rotated login the store refused to take (a read-only or failing
//! file system, a keychain that says no, a store that is down): a rescue file of the user's own,
//! `0600` in a `0700` directory only they own, holding the document and a digest of the refresh
//! token it replaced. Until the document is back in the store, the provider answers it instead of
//! the stored one (whose refresh token is spent), and the next refresh lock writes it back.
//!
//! The rescue file holds a credential in clear, as the credential file itself does; it lives in
//! the user's state directory (`$XDG_STATE_HOME`, else `~/.local/state`, under
//! `entelix-auth-claude-code/rescue/`), and is removed once its content is back in the store.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::handover::digest_hex;
use crate::files;

/// Environment variable naming the directory rescue files go to; an empty value disables them.
pub const STATE_DIR_ENV: &str = "CLAUDE_CODE_AUTH_STATE_DIR";

/// Largest rescue file read.
const MAX_BYTES: u64 = 1 << 20;

/// The rescue file of one store.
#[derive(Debug, Clone)]
pub(crate) struct RescueFile {
    dir: PathBuf,
    name: String,
    location: String,
}

/// What a rescue file holds.
#[derive(Serialize, Deserialize)]
struct Content {
    /// The store it belongs to, for people reading the file.
    location: String,
    /// SHA-256 (hex) of the refresh token the document replaced.
    replaced_sha256: Option<String>,
    /// The document, with its rotated tokens.
    document: String,
}

impl RescueFile {
    /// The rescue file for the store at `location`, under `dir` (or the user's state directory);
    /// `None` when there is no such directory.
    pub(crate) fn for_location(location: &str, dir: Option<&Path>) -> Option<Self> {
        let dir = match dir {
            Some(dir) => dir.to_path_buf(),
            None => default_dir()?,
        };
        Some(Self {
            dir,
            name: format!("{}.json", &digest_hex(location.as_bytes())[..32]),
            location: location.to_owned(),
        })
    }

    /// Where the file is.
    pub(crate) fn path(&self) -> PathBuf {
        self.dir.join(&self.name)
    }

    /// The kept document and the digest of the refresh token it replaced; `None` when there is
    /// none, or none to trust (not a regular file of ours, not private, unreadable).
    pub(crate) fn read(&self) -> Option<(Zeroizing<String>, Option<String>)> {
        let file = open_private(&self.path()).ok()?;
        let mut text = Zeroizing::new(String::new());
        file.take(MAX_BYTES).read_to_string(&mut text).ok()?;
        let content: Content = serde_json::from_str(&text).ok()?;
        Some((Zeroizing::new(content.document), content.replaced_sha256))
    }

    /// Keep `document`, which replaced the refresh token whose digest is `replaced`: written
    /// atomically, `0600`, in a `0700` directory.
    pub(crate) fn write(&self, document: &str, replaced: Option<String>) -> io::Result<()> {
        files::create_private_dir(&self.dir)?;
        check_private_dir(&self.dir)?;
        let content = Content {
            location: self.location.clone(),
            replaced_sha256: replaced,
            document: document.to_owned(),
        };
        let text = Zeroizing::new(serde_json::to_vec(&content).map_err(io::Error::other)?);
        drop(Zeroizing::new(content.document));
        files::write_atomically(&self.path(), &text)
    }

    /// Remove it (its content is back in the store, or obsolete).
    pub(crate) fn remove(&self) {
        let _ = fs::remove_file(self.path());
    }
}

/// `$CLAUDE_CODE_AUTH_STATE_DIR`, else `$XDG_STATE_HOME/entelix-auth-claude-code`, else
/// `~/.local/state/entelix-auth-claude-code`; then `rescue/`.
fn default_dir() -> Option<PathBuf> {
    let var = |name| std::env::var_os(name);
    if let Some(dir) = var(STATE_DIR_ENV) {
        return (!dir.is_empty()).then(|| PathBuf::from(dir).join("rescue"));
    }
    let base = var("XDG_STATE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            var("HOME")
                .filter(|v| !v.is_empty())
                .map(|home| PathBuf::from(home).join(".local").join("state"))
        })?;
    Some(base.join("entelix-auth-claude-code").join("rescue"))
}

/// Open `path` for reading, never through a symlink, and only if it is a regular file that
/// only its owner — this user — can read or write.
fn open_private(path: &Path) -> io::Result<File> {
    let mut options = fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    }
    let file = options.open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() || !owned_privately(&meta) {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "not a private regular file of this user",
        ));
    }
    Ok(file)
}

/// The directory is this user's and nobody else can write it.
fn check_private_dir(dir: &Path) -> io::Result<()> {
    let meta = fs::symlink_metadata(dir)?;
    if meta.is_dir() && owned_privately(&meta) {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("{} is not a private directory of this user", dir.display()),
        ))
    }
}

#[cfg(unix)]
fn owned_privately(meta: &fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    meta.uid() == effective_uid() && meta.mode() & 0o077 == 0
}

#[cfg(not(unix))]
fn owned_privately(_meta: &fs::Metadata) -> bool {
    true
}

#[cfg(unix)]
fn effective_uid() -> u32 {
    rustix::process::geteuid().as_raw()
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn kept_read_back_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let rescue =
            RescueFile::for_location("/x/.credentials.json", Some(&dir.path().join("rescue")))
                .unwrap();
        assert!(rescue.read().is_none());
        rescue
            .write(r#"{"claudeAiOauth":{}}"#, Some("ab".into()))
            .unwrap();
        let (document, replaced) = rescue.read().unwrap();
        assert_eq!(
            (document.as_str(), replaced.as_deref()),
            (r#"{"claudeAiOauth":{}}"#, Some("ab"))
        );
        let mode = fs::metadata(rescue.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        rescue.remove();
        assert!(rescue.read().is_none());
    }

    #[test]
    fn a_file_others_can_read_or_a_symlink_is_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let rescue = RescueFile::for_location("loc", Some(&dir.path().join("rescue"))).unwrap();
        rescue.write("{}", None).unwrap();
        fs::set_permissions(rescue.path(), fs::Permissions::from_mode(0o644)).unwrap();
        assert!(rescue.read().is_none());
        fs::remove_file(rescue.path()).unwrap();
        let elsewhere = dir.path().join("elsewhere");
        fs::write(
            &elsewhere,
            r#"{"location":"l","replaced_sha256":null,"document":"{}"}"#,
        )
        .unwrap();
        fs::set_permissions(&elsewhere, fs::Permissions::from_mode(0o600)).unwrap();
        std::os::unix::fs::symlink(&elsewhere, rescue.path()).unwrap();
        assert!(rescue.read().is_none());
    }
}
