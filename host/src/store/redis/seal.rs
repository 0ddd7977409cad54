//! The login sealed at rest: XChaCha20-Poly1305 under a 32-byte key from a file, with the store
//! key's name, the document's generation and the key's id bound as associated data, so a sealed
//! value cannot be moved to another key or replayed as another generation unnoticed.
//!
//! A sealed value is `CCA1`, the key id (8 bytes), a random nonce (24 bytes), the ciphertext.
//! The key id names the key it was sealed with, so a store reading with the current key and the
//! previous ones (during a key change) knows which to use.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::error::{ClaudeCodeAuthError, ClaudeCodeAuthResult};

/// What a sealed value starts with.
const MAGIC: &[u8; 4] = b"CCA1";
const KEY_ID_LEN: usize = 8;
const NONCE_LEN: usize = 24;
/// Length of a store secret, in bytes.
pub const SECRET_LEN: usize = 32;

/// A sealing key read from a file, and its id.
pub(crate) struct SealKey {
    id: [u8; KEY_ID_LEN],
    cipher: XChaCha20Poly1305,
    path: PathBuf,
}

impl fmt::Debug for SealKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealKey")
            .field("id", &hex(&self.id))
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SealKey {
    /// The key in the file at `path`: exactly 32 bytes, a regular file (not followed through a
    /// symlink) that no one but its owner can read or write.
    pub(crate) fn from_file(path: &Path) -> ClaudeCodeAuthResult<Self> {
        let problem = |problem: String| ClaudeCodeAuthError::StoreSecret {
            path: path.display().to_string(),
            problem,
        };
        let mut file = open_secret(path).map_err(|e| problem(e.to_string()))?;
        let meta = file.metadata().map_err(|e| problem(e.to_string()))?;
        if !meta.is_file() {
            return Err(problem("not a regular file".into()));
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::{MetadataExt, PermissionsExt};
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(problem(format!(
                    "its mode is {mode:04o}: others can read or change it; `chmod 600` it"
                )));
            }
            // Another user who owns it can read it, or replace it with a key they know.
            let me = rustix::process::geteuid().as_raw();
            if meta.uid() != me {
                return Err(problem(format!(
                    "it belongs to user {}, not to this user ({me}), who could read or change it",
                    meta.uid()
                )));
            }
        }
        let mut secret = Zeroizing::new(Vec::with_capacity(SECRET_LEN + 1));
        file.by_ref()
            .take(SECRET_LEN as u64 + 1)
            .read_to_end(&mut secret)
            .map_err(|e| problem(e.to_string()))?;
        if secret.len() != SECRET_LEN {
            return Err(problem(format!(
                "a store secret is exactly {SECRET_LEN} random bytes (`head -c {SECRET_LEN} /dev/urandom`)"
            )));
        }
        Ok(Self::from_secret(&secret, path))
    }

    fn from_secret(secret: &[u8], path: &Path) -> Self {
        let digest = Sha256::new()
            .chain_update(b"entelix-auth-claude-code store key id\0")
            .chain_update(secret)
            .finalize();
        let mut id = [0; KEY_ID_LEN];
        id.copy_from_slice(&digest[..KEY_ID_LEN]);
        Self {
            id,
            cipher: XChaCha20Poly1305::new_from_slice(secret)
                .unwrap_or_else(|_| unreachable!("the secret is {SECRET_LEN} bytes")),
            path: path.to_owned(),
        }
    }

    /// The key's id as hex, for messages.
    pub(crate) fn id(&self) -> String {
        hex(&self.id)
    }
}

/// How documents are kept: sealed under a key (and opened with it or a previous one), or, when
/// asked for explicitly, in plaintext.
#[derive(Debug)]
pub(crate) enum Sealing {
    /// Sealed under `current`; `previous` keys still open what they sealed.
    Sealed {
        /// The key new values are sealed with.
        current: SealKey,
        /// Keys of a key change still in progress.
        previous: Vec<SealKey>,
    },
    /// Kept as the JSON text itself.
    Plaintext,
}

/// What a sealed value is bound to besides its key.
pub(crate) struct Binding<'a> {
    /// The store key's name.
    pub(crate) name: &'a str,
    /// The document's generation.
    pub(crate) generation: u64,
}

impl Binding<'_> {
    fn aad(&self, key_id: &[u8]) -> Vec<u8> {
        let mut aad = b"entelix-auth-claude-code sealed login v1\0".to_vec();
        aad.extend_from_slice(self.name.as_bytes());
        aad.push(0);
        aad.extend_from_slice(self.generation.to_string().as_bytes());
        aad.push(0);
        aad.extend_from_slice(key_id);
        aad
    }
}

impl Sealing {
    /// `document` as it is stored.
    pub(crate) fn seal(
        &self,
        document: &str,
        binding: &Binding<'_>,
    ) -> ClaudeCodeAuthResult<Vec<u8>> {
        let Self::Sealed { current, .. } = self else {
            return Ok(document.as_bytes().to_vec());
        };
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|e| ClaudeCodeAuthError::StoreSecret {
            path: current.path.display().to_string(),
            problem: format!("no randomness for a nonce: {e}"),
        })?;
        let sealed = current
            .cipher
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: document.as_bytes(),
                    aad: &binding.aad(&current.id),
                },
            )
            .map_err(|_| ClaudeCodeAuthError::StoreSecret {
                path: current.path.display().to_string(),
                problem: "sealing failed".into(),
            })?;
        let mut value = Vec::with_capacity(MAGIC.len() + KEY_ID_LEN + NONCE_LEN + sealed.len());
        value.extend_from_slice(MAGIC);
        value.extend_from_slice(&current.id);
        value.extend_from_slice(&nonce);
        value.extend_from_slice(&sealed);
        Ok(value)
    }

    /// The document `value` holds. `Err` says what is wrong, without any of the value.
    pub(crate) fn open(
        &self,
        value: &[u8],
        binding: &Binding<'_>,
    ) -> Result<Zeroizing<String>, String> {
        let sealed = value.starts_with(MAGIC);
        let (current, previous) = match self {
            Self::Plaintext if sealed => {
                return Err("the stored login is sealed, and this store was given no key".into());
            }
            Self::Plaintext => {
                return String::from_utf8(value.to_vec())
                    .map(Zeroizing::new)
                    .map_err(|_| "the stored login is not UTF-8 text".into());
            }
            Self::Sealed { .. } if !sealed => {
                return Err(
                    "the stored login is not sealed; a store with a key reads only sealed logins"
                        .into(),
                );
            }
            Self::Sealed { current, previous } => (current, previous),
        };
        let rest = &value[MAGIC.len()..];
        if rest.len() < KEY_ID_LEN + NONCE_LEN {
            return Err("the sealed login is truncated".into());
        }
        let (id, rest) = rest.split_at(KEY_ID_LEN);
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        let key = std::iter::once(current)
            .chain(previous)
            .find(|k| k.id == id)
            .ok_or_else(|| {
                format!(
                    "the stored login was sealed with key {}, which is not this store's key ({}) or one of its previous keys",
                    hex(id),
                    current.id()
                )
            })?;
        let nonce = XNonce::try_from(nonce).map_err(|_| "the sealed login is truncated")?;
        let plain = Zeroizing::new(
            key.cipher
                .decrypt(
                    &nonce,
                    Payload {
                        msg: sealed,
                        aad: &binding.aad(id),
                    },
                )
                .map_err(|_| {
                    "the sealed login does not open: altered, or moved from another key or generation"
                        .to_owned()
                })?,
        );
        String::from_utf8(plain.to_vec())
            .map(Zeroizing::new)
            .map_err(|_| "the sealed login is not UTF-8 text".into())
    }
}

/// Open a secret file without following a symlink at its name.
fn open_secret(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    }
    options.open(path)
}

/// `bytes` as lower-case hex.
pub(super) fn hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

/// The bytes `text` (hex) stands for.
pub(super) fn unhex(text: &str) -> Option<Vec<u8>> {
    hex::decode(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> SealKey {
        SealKey::from_secret(&[byte; SECRET_LEN], Path::new("k"))
    }

    fn sealed(current: u8, previous: &[u8]) -> Sealing {
        Sealing::Sealed {
            current: key(current),
            previous: previous.iter().map(|b| key(*b)).collect(),
        }
    }

    const AT: Binding<'static> = Binding {
        name: "claude-code-auth",
        generation: 7,
    };

    #[test]
    fn a_sealed_login_opens_only_with_its_key_name_and_generation() {
        let document = r#"{"claudeAiOauth":{"accessToken":"sk-ant-oat01-SECRET"}}"#;
        let value = sealed(1, &[]).seal(document, &AT).unwrap();
        assert!(!value.windows(6).any(|w| w == b"SECRET"));
        assert_eq!(&*sealed(1, &[]).open(&value, &AT).unwrap(), document);

        let other_name = Binding {
            name: "other",
            generation: 7,
        };
        let other_generation = Binding {
            name: "claude-code-auth",
            generation: 8,
        };
        for binding in [other_name, other_generation] {
            let why = sealed(1, &[]).open(&value, &binding).unwrap_err();
            assert!(why.contains("does not open"), "{why}");
        }
        let why = sealed(2, &[]).open(&value, &AT).unwrap_err();
        assert!(why.contains("not this store's key"), "{why}");
        let mut altered = value.clone();
        *altered.last_mut().unwrap() ^= 1;
        assert!(sealed(1, &[]).open(&altered, &AT).is_err());
        assert!(sealed(1, &[]).open(&value[..20], &AT).is_err());
    }

    #[test]
    fn a_previous_key_opens_what_it_sealed_and_new_values_use_the_current_one() {
        let old = sealed(1, &[]).seal("{}", &AT).unwrap();
        let changing = sealed(2, &[1]);
        assert_eq!(&*changing.open(&old, &AT).unwrap(), "{}");
        let new = changing.seal("{}", &AT).unwrap();
        assert!(sealed(1, &[]).open(&new, &AT).is_err());
        assert_eq!(&*sealed(2, &[]).open(&new, &AT).unwrap(), "{}");
    }

    #[test]
    fn sealed_and_plaintext_stores_refuse_each_others_values() {
        let value = sealed(1, &[]).seal("{}", &AT).unwrap();
        assert!(
            Sealing::Plaintext
                .open(&value, &AT)
                .unwrap_err()
                .contains("no key")
        );
        let plain = Sealing::Plaintext.seal("{}", &AT).unwrap();
        assert_eq!(plain, b"{}");
        assert!(
            sealed(1, &[])
                .open(&plain, &AT)
                .unwrap_err()
                .contains("not sealed")
        );
    }

    #[test]
    fn two_seals_of_one_document_differ() {
        let sealing = sealed(1, &[]);
        assert_ne!(
            sealing.seal("{}", &AT).unwrap(),
            sealing.seal("{}", &AT).unwrap()
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_secret_file_must_be_private_exact_and_not_a_symlink() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.key");
        std::fs::write(&path, [7u8; SECRET_LEN]).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let why = SealKey::from_file(&path).unwrap_err().to_string();
        assert!(why.contains("chmod 600"), "{why}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(SealKey::from_file(&path).is_ok());
        std::fs::write(&path, [7u8; SECRET_LEN + 1]).unwrap();
        let why = SealKey::from_file(&path).unwrap_err().to_string();
        assert!(why.contains("exactly 32"), "{why}");
        std::fs::write(&path, [7u8; SECRET_LEN]).unwrap();
        let link = dir.path().join("link.key");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        assert!(SealKey::from_file(&link).is_err());
        // Private but another user's (root is the user who can be handed such a file).
        if rustix::process::geteuid().is_root() {
            let nobody = Some(rustix::fs::Uid::from_raw(65534));
            rustix::fs::chown(&path, nobody, None).unwrap();
            let why = SealKey::from_file(&path).unwrap_err().to_string();
            assert!(why.contains("belongs to user 65534"), "{why}");
        }
    }
}
