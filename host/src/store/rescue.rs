//! The last resort for a rotated login the store refused to take (a read-only or failing
//! file system, a keychain that says no, a store that is down): a rescue file of the user's own,
//! `0600` in a `0700` directory only they own, holding the document and the digest of the
//! refresh token the store held when its refresh was made (the token it spent, or, when the
//! refresh was of a rescued login, the one beneath that). Until the document is back in the
//! store, the provider answers it instead of the stored one (whose refresh token is spent), and
//! the next refresh lock writes it back.
//!
//! Every process that reaches the same login must find it, however it spells the path, whatever
//! its state directory, whoever it runs as:
//!
//! - it is keyed by the store's [identity](crate::CredentialStore::identity) (for a file, its
//!   canonical path), and a rescue names that identity inside: one of another login is never
//!   adopted nor removed;
//! - it goes to the user's state directory (`$CLAUDE_CODE_AUTH_STATE_DIR`, else
//!   `$XDG_STATE_HOME` or `~/.local/state`, under `entelix-auth-claude-code/rescue/`), else — no
//!   such directory, or one that cannot be written — to a private directory of this user in the
//!   system's temporary directory; it is never discarded for want of a place;
//! - for a credential file, a pointer beside it (`<name>.rescue`) names where the rescue went,
//!   for processes whose state directory is another;
//! - root writing for a user's credential (sudo, cron) leaves the rescue, its pointer and the
//!   directories it made the user's, and files owned by the credential's owner are trusted.
//!
//! The rescue file holds a credential in clear, as the credential file itself does, and is
//! removed once its content is back in the store.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::handover::digest_hex;
use super::state_dir;
use crate::files;

/// Largest rescue file read.
const MAX_BYTES: u64 = 1 << 20;

/// The rescue file of one store's login.
#[derive(Debug, Clone)]
pub(crate) struct RescueFile {
    /// Where it is written, in order of preference, and looked for.
    dirs: Vec<PathBuf>,
    name: String,
    identity: String,
    /// The credential file, for a file store: the pointer goes beside it, and its owner's
    /// files are trusted.
    beside: Option<PathBuf>,
}

/// What a rescued document supersedes in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Replaced {
    /// The SHA-256 (hex) of the refresh token the store held when the refresh was made;
    /// `None`: it held none.
    Known(Option<String>),
    /// Not known (nothing told the host): never adopted nor dropped on its own.
    Unknown,
}

/// A rescued document, as read.
pub(crate) struct Rescued {
    pub(crate) document: Zeroizing<String>,
    pub(crate) replaced: Replaced,
    /// Where it was found.
    pub(crate) path: PathBuf,
}

/// What a rescue file holds.
#[derive(Serialize, Deserialize)]
struct Content {
    /// The identity of the store it belongs to.
    location: String,
    /// SHA-256 (hex) of the refresh token the store held when the document's refresh was made.
    replaced_sha256: Option<String>,
    /// Whether `replaced_sha256` is known (files written before this field are).
    #[serde(default = "known")]
    replaced_known: bool,
    /// The document, with its rotated tokens.
    document: String,
}

fn known() -> bool {
    true
}

/// What a pointer beside a credential file holds.
#[derive(Serialize, Deserialize)]
struct Pointer {
    location: String,
    #[serde(with = "files::path_bytes")]
    rescue: PathBuf,
}

impl RescueFile {
    /// The rescue file of the login named `identity`, kept in `dir` if given (else the user's
    /// state directory), with the temporary directory's fallback; `beside`: the credential file
    /// of a file store.
    pub(crate) fn for_store(identity: &str, beside: Option<PathBuf>, dir: Option<&Path>) -> Self {
        let first = match dir {
            Some(dir) => Some(dir.to_path_buf()),
            None => state_dir::default().map(|base| base.join("rescue")),
        };
        let fallback = state_dir::fallback().map(|base| base.join("rescue"));
        let dirs = first.into_iter().chain(fallback).collect();
        Self {
            dirs,
            name: format!("{}.json", &digest_hex(identity.as_bytes())[..32]),
            identity: identity.to_owned(),
            beside,
        }
    }

    /// Where this process writes it first.
    #[cfg(all(test, unix))]
    pub(crate) fn path(&self) -> Option<PathBuf> {
        self.dirs.first().map(|dir| dir.join(&self.name))
    }

    /// The kept document and what it supersedes; `None` when there is none of this login,
    /// or none to trust (not a regular private file of this user or of the credential's owner).
    /// Looked for where this process writes, then where the pointer beside the credential says.
    pub(crate) fn read(&self) -> Option<Rescued> {
        let pointed = self
            .pointer_path()
            .and_then(|pointer| self.read_pointer(&pointer));
        self.dirs
            .iter()
            .map(|dir| dir.join(&self.name))
            .chain(pointed)
            .find_map(|path| self.read_at(&path))
    }

    fn read_at(&self, path: &Path) -> Option<Rescued> {
        let file = open_trusted(path, self.trusted_owner()).ok()?;
        let mut text = Zeroizing::new(String::new());
        file.take(MAX_BYTES).read_to_string(&mut text).ok()?;
        let content: Content = serde_json::from_str(&text).ok()?;
        // Another login's rescue (a name shared by chance, a copied file) is not this one's.
        if content.location != self.identity {
            drop(Zeroizing::new(content.document));
            return None;
        }
        let replaced = match content.replaced_known {
            true => Replaced::Known(content.replaced_sha256),
            false => Replaced::Unknown,
        };
        Some(Rescued {
            document: Zeroizing::new(content.document),
            replaced,
            path: path.to_path_buf(),
        })
    }

    /// Keep `document`, which supersedes `replaced`: written atomically, `0600`, in the first
    /// private directory that takes it (made `0700` if missing), a pointer beside the credential
    /// file naming it. Where it went.
    pub(crate) fn write(&self, document: &str, replaced: &Replaced) -> io::Result<PathBuf> {
        let (replaced_sha256, replaced_known) = match replaced {
            Replaced::Known(digest) => (digest.clone(), true),
            Replaced::Unknown => (None, false),
        };
        let content = Content {
            location: self.identity.clone(),
            replaced_sha256,
            replaced_known,
            document: document.to_owned(),
        };
        let text = Zeroizing::new(serde_json::to_vec(&content).map_err(io::Error::other)?);
        drop(Zeroizing::new(content.document));
        let mut failed = io::Error::other("no directory to keep a rescue file in");
        for dir in &self.dirs {
            let path = dir.join(&self.name);
            let written = files::create_private_dir(dir)
                .and_then(|()| check_private_dir(dir, self.trusted_owner()))
                .and_then(|()| self.write_owned(&path, &text));
            match written {
                Ok(()) => {
                    self.leave_pointer(&path);
                    return Ok(path);
                }
                Err(e) => failed = e,
            }
        }
        Err(failed)
    }

    /// Remove `rescued` (its content is back in the store, or obsolete), and the pointer to it.
    pub(crate) fn remove(&self, rescued: &Rescued) {
        let _ = fs::remove_file(&rescued.path);
        if let Some(pointer) = self.pointer_path()
            && self.read_pointer(&pointer).as_deref() == Some(rescued.path.as_path())
        {
            let _ = fs::remove_file(pointer);
        }
    }

    /// Remove this login's rescue wherever this process finds it (the store took a newer
    /// document).
    pub(crate) fn remove_all(&self) {
        while let Some(rescued) = self.read() {
            self.remove(&rescued);
            if self.read().is_some_and(|again| again.path == rescued.path) {
                return;
            }
        }
    }

    /// `<credential file>.rescue`, beside it (a digest-named one when the name is too long).
    fn pointer_path(&self) -> Option<PathBuf> {
        let beside = self.beside.as_ref()?;
        let name = beside.file_name()?;
        let mut pointer = name.to_os_string();
        pointer.push(".rescue");
        if pointer.len() > 255 {
            let digest = digest_hex(name.as_encoded_bytes());
            pointer = format!(".{}.rescue", &digest[..32]).into();
        }
        Some(beside.with_file_name(pointer))
    }

    fn read_pointer(&self, pointer: &Path) -> Option<PathBuf> {
        let file = open_trusted(pointer, self.trusted_owner()).ok()?;
        let mut text = String::new();
        file.take(64 * 1024).read_to_string(&mut text).ok()?;
        let pointer: Pointer = serde_json::from_str(&text).ok()?;
        (pointer.location == self.identity).then_some(pointer.rescue)
    }

    /// Best effort: a pointer to `rescue` beside the credential file (unless the rescue is
    /// where every process looks already). Without it, processes with another state directory
    /// do not find the rescue.
    fn leave_pointer(&self, rescue: &Path) {
        let Some(pointer) = self.pointer_path() else {
            return;
        };
        let text = serde_json::to_vec(&Pointer {
            location: self.identity.clone(),
            rescue: rescue.to_path_buf(),
        })
        .unwrap_or_default();
        if let Err(error) = self.write_owned(&pointer, &text) {
            tracing::warn!(
                error = %error,
                pointer = %pointer.display(),
                "no pointer to the rescue file could be left beside the credential file; processes with another state directory will not find it"
            );
        }
    }

    /// Write `bytes` at `path` atomically, `0600`, owned like the credential file (root writing
    /// for a user leaves it the user's).
    fn write_owned(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let mut prepared = files::prepare(files::temp_path(&files::parent_of(path)), 0)?;
        let like = self.beside.as_deref().unwrap_or(path);
        if let Err(e) = prepared
            .keep_owner_of(like)
            .and_then(|()| prepared.fill(bytes))
            .and_then(|synced| synced)
        {
            prepared.discard();
            return Err(e);
        }
        prepared.install(path).map_err(|(prepared, e)| {
            prepared.discard();
            e
        })
    }

    /// The owner whose files are trusted besides this user: the credential file's.
    fn trusted_owner(&self) -> Option<u32> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            self.beside
                .as_ref()
                .and_then(|file| fs::metadata(file).ok())
                .map(|meta| meta.uid())
        }
        #[cfg(not(unix))]
        None
    }
}

/// Open `path` for reading, never through a symlink, and only if it is a regular file that only
/// its owner can read or write, and its owner is this user or `also`.
fn open_trusted(path: &Path, also: Option<u32>) -> io::Result<File> {
    let mut options = fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    }
    let file = options.open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() || !owned_privately(&meta, also) {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "not a private regular file of this user",
        ));
    }
    Ok(file)
}

/// The directory is private: owned by this user (or `also`) and open to no one else.
fn check_private_dir(dir: &Path, also: Option<u32>) -> io::Result<()> {
    let meta = fs::symlink_metadata(dir)?;
    if meta.is_dir() && owned_privately(&meta, also) {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("{} is not a private directory of this user", dir.display()),
        ))
    }
}

#[cfg(unix)]
fn owned_privately(meta: &fs::Metadata, also: Option<u32>) -> bool {
    use std::os::unix::fs::MetadataExt;
    let me = rustix::process::geteuid().as_raw();
    (meta.uid() == me || Some(meta.uid()) == also) && meta.mode() & 0o077 == 0
}

#[cfg(not(unix))]
fn owned_privately(_meta: &fs::Metadata, _also: Option<u32>) -> bool {
    true
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn rescue(dir: &Path, identity: &str, beside: Option<PathBuf>) -> RescueFile {
        RescueFile::for_store(identity, beside, Some(&dir.join("rescue")))
    }

    #[test]
    fn kept_read_back_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let rescue = rescue(dir.path(), "file:/x/.credentials.json", None);
        assert!(rescue.read().is_none());
        let path = rescue
            .write(
                r#"{"claudeAiOauth":{}}"#,
                &Replaced::Known(Some("ab".into())),
            )
            .unwrap();
        assert_eq!(Some(path.clone()), rescue.path());
        let read = rescue.read().unwrap();
        assert_eq!(
            (read.document.as_str(), &read.replaced),
            (
                r#"{"claudeAiOauth":{}}"#,
                &Replaced::Known(Some("ab".into()))
            )
        );
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        rescue.remove(&read);
        assert!(rescue.read().is_none());
    }

    #[test]
    fn a_file_others_can_read_a_symlink_or_another_logins_rescue_is_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let rescue = rescue(dir.path(), "loc", None);
        let path = rescue.write("{}", &Replaced::Known(None)).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(rescue.read().is_none());
        fs::remove_file(&path).unwrap();
        let elsewhere = dir.path().join("elsewhere");
        fs::write(
            &elsewhere,
            r#"{"location":"loc","replaced_sha256":null,"document":"{}"}"#,
        )
        .unwrap();
        fs::set_permissions(&elsewhere, fs::Permissions::from_mode(0o600)).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &path).unwrap();
        assert!(rescue.read().is_none());
        fs::remove_file(&path).unwrap();
        // Same name, another login's content: neither read nor removed.
        fs::copy(&elsewhere, &path).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        let other = RescueFile {
            identity: "another".into(),
            ..rescue.clone()
        };
        assert!(other.read().is_none());
        other.remove_all();
        assert!(path.exists(), "another login's rescue was removed");
    }

    #[test]
    fn a_pointer_beside_the_credential_leads_a_process_with_another_state_directory_to_it() {
        let dir = tempfile::tempdir().unwrap();
        let credential = dir.path().join(".credentials.json");
        fs::write(&credential, "{}").unwrap();
        let writer = rescue(&dir.path().join("a"), "file:c", Some(credential.clone()));
        let path = writer.write("{}", &Replaced::Unknown).unwrap();
        assert!(dir.path().join(".credentials.json.rescue").exists());
        let reader = rescue(&dir.path().join("b"), "file:c", Some(credential));
        let found = reader.read().expect("found through the pointer");
        assert_eq!(found.path, path);
        assert_eq!(found.replaced, Replaced::Unknown);
        reader.remove(&found);
        assert!(!path.exists());
        assert!(!dir.path().join(".credentials.json.rescue").exists());
    }

    #[test]
    fn no_state_directory_falls_back_to_a_private_one() {
        let dir = tempfile::tempdir().unwrap();
        let blocked = dir.path().join("not-a-dir");
        fs::write(&blocked, "").unwrap();
        let rescue = RescueFile {
            dirs: vec![blocked.join("rescue"), dir.path().join("fallback")],
            ..RescueFile::for_store("x", None, Some(dir.path()))
        };
        let path = rescue.write("{}", &Replaced::Known(None)).unwrap();
        assert!(path.starts_with(dir.path().join("fallback")), "{path:?}");
        assert!(rescue.read().is_some());
    }
}
