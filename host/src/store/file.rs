//! [`FileCredentialStore`]: the JSON file the `claude` CLI keeps.

use std::ffi::OsString;
use std::fs::OpenOptions;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use zeroize::Zeroizing;

use crate::credential::CredentialFile;
use crate::error::{ClaudeCodeAuthError, ClaudeCodeAuthResult};

use super::{
    CredentialStore, Fingerprint, RefreshLock, atomic, blocking, config_dir_lock, parse_document,
    render_document,
};

/// Largest credential file read. The CLI's is under 4 KiB; anything this large is not one.
pub const MAX_DOCUMENT_BYTES: u64 = 1 << 20;

/// The credential file of the `claude` CLI (or any file of the same shape).
///
/// Reads and writes run on tokio's blocking pool. Writes are atomic and leave the file `0600`.
/// Refreshes are serialised across our processes with an OS lock on `<file>.flock` (released by
/// the kernel when a holder dies), and with the `claude` CLI through the lock directories it takes
/// itself (`<dir>/.oauth_refresh.lock`, `<realpath(dir)>.lock`).
#[derive(Debug, Clone)]
pub struct FileCredentialStore {
    path: PathBuf,
}

impl FileCredentialStore {
    /// A store for the file at `path`.
    #[must_use]
    pub fn with_path(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// The file's path.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file the OS refresh lock is taken on.
    #[must_use]
    pub fn lock_path(&self) -> PathBuf {
        let mut name = self.path.file_name().unwrap_or_default().to_os_string();
        name.push(".flock");
        self.path.with_file_name(name)
    }

    /// Where the `claude` CLI keeps its credentials: `$CLAUDE_CONFIG_DIR/.credentials.json` when
    /// that variable is set, else `~/.claude/.credentials.json` (home from `HOME`, then
    /// `USERPROFILE`).
    pub fn default_claude_path() -> ClaudeCodeAuthResult<PathBuf> {
        claude_path_from(|name| std::env::var_os(name))
    }

    fn io_error(&self, source: io::Error) -> ClaudeCodeAuthError {
        ClaudeCodeAuthError::Io {
            path: self.location(),
            source,
        }
    }
}

/// [`FileCredentialStore::default_claude_path`] over any environment, so it is testable.
fn claude_path_from(env: impl Fn(&str) -> Option<OsString>) -> ClaudeCodeAuthResult<PathBuf> {
    let non_empty = |name| env(name).filter(|v| !v.is_empty());
    let dir = match non_empty("CLAUDE_CONFIG_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => non_empty("HOME")
            .or_else(|| non_empty("USERPROFILE"))
            .map(|home| PathBuf::from(home).join(".claude"))
            .ok_or(ClaudeCodeAuthError::HomeUnresolved)?,
    };
    Ok(dir.join(".credentials.json"))
}

#[async_trait]
impl CredentialStore for FileCredentialStore {
    async fn load(&self) -> ClaudeCodeAuthResult<Option<CredentialFile>> {
        match self.load_document().await? {
            Some(text) => parse_document(&text, || self.location()).map(Some),
            None => Ok(None),
        }
    }

    async fn save(&self, file: &CredentialFile) -> ClaudeCodeAuthResult<()> {
        let text = render_document(file, || self.location())?;
        self.save_document(&text).await
    }

    async fn load_document(&self) -> ClaudeCodeAuthResult<Option<String>> {
        let store = self.clone();
        blocking(move || store.read()).await
    }

    async fn save_document(&self, document: &str) -> ClaudeCodeAuthResult<()> {
        let store = self.clone();
        let bytes = Zeroizing::new(document.as_bytes().to_vec());
        blocking(move || {
            atomic::write_atomically(&store.path, &bytes).map_err(|e| store.io_error(e))
        })
        .await
    }

    async fn lock_refresh(&self, wait: Duration) -> ClaudeCodeAuthResult<RefreshLock> {
        config_dir_lock::lock(
            self.lock_path(),
            self.config_dir(),
            Some(self.path.clone()),
            wait,
        )
        .await
    }

    fn location(&self) -> String {
        self.path.display().to_string()
    }

    /// One `stat`: a local file's metadata comes from the inode cache, fast enough to take
    /// inline on every resolve (which is how a refresh by another process is noticed).
    #[cfg(unix)]
    fn fingerprint(&self) -> Option<Fingerprint> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(&self.path).ok()?;
        let nanos = |secs: i64, nsec: i64| {
            (secs as u64)
                .wrapping_mul(1_000_000_000)
                .wrapping_add(nsec as u64)
        };
        Some(Fingerprint::new([
            meta.dev(),
            meta.ino(),
            meta.size(),
            nanos(meta.mtime(), meta.mtime_nsec()),
            nanos(meta.ctime(), meta.ctime_nsec()),
        ]))
    }
}

impl FileCredentialStore {
    /// The directory holding the file: the `claude` config dir whose locks are honoured.
    fn config_dir(&self) -> PathBuf {
        match self.path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        }
    }

    /// Read the file as text, refusing anything that cannot be a credential file.
    fn read(&self) -> ClaudeCodeAuthResult<Option<String>> {
        let mut options = OpenOptions::new();
        options.read(true);
        // Opening a FIFO for reading waits for a writer; non-blocking, it opens at once and the
        // type check below refuses it. A regular file reads the same either way.
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.custom_flags(libc::O_NONBLOCK);
        }
        let file = match options.open(&self.path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.io_error(e)),
        };
        let meta = file.metadata().map_err(|e| self.io_error(e))?;
        if meta.is_dir() {
            return Err(self.io_error(io::Error::new(
                io::ErrorKind::IsADirectory,
                "a directory is where the credential file should be",
            )));
        }
        if !meta.is_file() {
            return Err(self.io_error(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a regular file (a FIFO, device or socket cannot hold credentials)",
            )));
        }
        // Wiped if dropped here (an error below); handed on without a copy otherwise.
        let mut bytes = Zeroizing::new(Vec::new());
        file.take(MAX_DOCUMENT_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| self.io_error(e))?;
        if bytes.len() as u64 > MAX_DOCUMENT_BYTES {
            return Err(ClaudeCodeAuthError::InvalidDocument {
                path: self.location(),
                problem: format!(
                    "the file is larger than {} KiB, the most a credential file can be",
                    MAX_DOCUMENT_BYTES / 1024
                ),
            });
        }
        String::from_utf8(std::mem::take(&mut *bytes))
            .map(Some)
            .map_err(|e| {
                let problem = format!(
                    "the file is not UTF-8 text (invalid byte at offset {})",
                    e.utf8_error().valid_up_to()
                );
                drop(Zeroizing::new(e.into_bytes()));
                ClaudeCodeAuthError::InvalidDocument {
                    path: self.location(),
                    problem,
                }
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn absent_file_is_none_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileCredentialStore::with_path(dir.path().join(".credentials.json"));
        assert!(store.load().await.unwrap().is_none());
        assert!(store.load_document().await.unwrap().is_none());
        let doc = r#"{"claudeAiOauth":{"accessToken":"a","expiresAt":1},"other":[1,2]}"#;
        store.save_document(doc).await.unwrap();
        assert_eq!(store.load_document().await.unwrap().as_deref(), Some(doc));
        let typed = store.load().await.unwrap().unwrap();
        assert_eq!(typed.claude_ai_oauth.unwrap().access_token, "a");
    }

    #[tokio::test]
    async fn unusable_files_are_typed_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".credentials.json");
        let store = FileCredentialStore::with_path(&path);

        std::fs::write(&path, [b'{', 0xff, b'}']).unwrap();
        let err = store.load_document().await.unwrap_err();
        assert!(
            matches!(&err, ClaudeCodeAuthError::InvalidDocument { problem, .. } if problem.contains("offset 1")),
            "{err}"
        );

        std::fs::write(&path, vec![b' '; (MAX_DOCUMENT_BYTES + 1) as usize]).unwrap();
        let err = store.load_document().await.unwrap_err();
        assert!(
            matches!(&err, ClaudeCodeAuthError::InvalidDocument { problem, .. } if problem.contains("larger than 1024 KiB")),
            "{err}"
        );

        std::fs::write(&path, "{not json").unwrap();
        let err = store.load().await.unwrap_err();
        assert!(
            matches!(err, ClaudeCodeAuthError::InvalidStorage { .. }),
            "{err}"
        );

        std::fs::remove_file(&path).unwrap();
        std::fs::create_dir(&path).unwrap();
        let err = store.load_document().await.unwrap_err();
        assert!(err.to_string().contains("directory"), "{err}");
    }

    #[test]
    fn default_path_prefers_claude_config_dir() {
        type Env<'a> = &'a [(&'a str, &'a str)];
        let cases: &[(Env, Option<&str>)] = &[
            (
                &[("CLAUDE_CONFIG_DIR", "/cfg"), ("HOME", "/home/u")],
                Some("/cfg/.credentials.json"),
            ),
            (
                &[("CLAUDE_CONFIG_DIR", ""), ("HOME", "/home/u")],
                Some("/home/u/.claude/.credentials.json"),
            ),
            (
                &[("USERPROFILE", "/win")],
                Some("/win/.claude/.credentials.json"),
            ),
            (
                &[("HOME", ""), ("USERPROFILE", "/win")],
                Some("/win/.claude/.credentials.json"),
            ),
            (&[], None),
        ];
        for (vars, want) in cases {
            let got = claude_path_from(|name| {
                vars.iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| OsString::from(v))
            });
            match want {
                Some(want) => assert_eq!(got.unwrap(), PathBuf::from(want), "{vars:?}"),
                None => assert!(
                    matches!(got, Err(ClaudeCodeAuthError::HomeUnresolved)),
                    "{vars:?}"
                ),
            }
        }
    }
}
