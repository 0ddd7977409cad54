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
use crate::files;

use super::cli_lock::session::{self, Session, Site};
use super::{
    CredentialStore, Fingerprint, HeldLock, RefreshLock, blocking, parse_document, render_document,
};

/// Largest credential file read. The CLI's is under 4 KiB; anything this large is not one.
pub const MAX_DOCUMENT_BYTES: u64 = 1 << 20;

/// The credential file of the `claude` CLI (or any file of the same shape).
///
/// Reads and writes run on tokio's blocking pool. Writes are atomic and leave the file `0600`.
/// Refreshes are serialised across our processes with an OS lock on `<file>.flock` (released by
/// the kernel when a holder dies), and with the `claude` CLI through the lock directories it takes
/// itself (`<dir>/.oauth_refresh.lock`, `<realpath(dir)>.lock`) — for the path as given and, when
/// it is a symlink, for the file it resolves to, so both names exclude each other. Every write is
/// a read-modify-write under the CLI's `<dir>/.storage-write.lock`.
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

    /// The file the OS refresh lock is taken on (for the path as given).
    #[must_use]
    pub fn lock_path(&self) -> PathBuf {
        lock_path_for(&self.path)
    }

    /// Where the `claude` CLI keeps its credential file: `.credentials.json` in its config dir —
    /// `CLAUDE_SECURESTORAGE_CONFIG_DIR` when set (empty: `~/.claude`), else
    /// `CLAUDE_CONFIG_DIR`, else `~/.claude` (home from `HOME`, then `USERPROFILE`),
    /// NFC-normalised, as the CLI (2.1.332) works it out. On macOS the CLI keeps the login in
    /// the keychain first: [`crate::ClaudeCliLogin`] chooses as the CLI does.
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

/// `<file>.flock`; for a name too long to take the suffix, `.<digest of the name>.flock`.
fn lock_path_for(path: &Path) -> PathBuf {
    const NAME_MAX: usize = 255;
    let name = path.file_name().unwrap_or_default();
    let mut lock = name.to_os_string();
    lock.push(".flock");
    if lock.len() > NAME_MAX {
        let digest = super::handover::digest_hex(name.as_encoded_bytes());
        lock = format!(".{}.flock", &digest[..32]).into();
    }
    path.with_file_name(lock)
}

/// [`FileCredentialStore::default_claude_path`] over any environment, so it is testable.
fn claude_path_from(env: impl Fn(&str) -> Option<OsString>) -> ClaudeCodeAuthResult<PathBuf> {
    Ok(super::cli_dirs::config_dir_from(&env)?.join(".credentials.json"))
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

    /// A write outside a refresh: atomic, under the CLI's write lock, as the CLI's own writes
    /// outside a refresh are.
    async fn save_document(&self, document: &str) -> ClaudeCodeAuthResult<()> {
        let bytes = Zeroizing::new(document.as_bytes().to_vec());
        session::write_alone(self.sites(), self.target()?, bytes, SAVE_LOCK_WAIT).await
    }

    async fn lock_refresh(&self, wait: Duration) -> ClaudeCodeAuthResult<RefreshLock> {
        let session = session::lock(self.sites(), vec![self.target()?], wait).await?;
        Ok(session.refresh_lock(FileLock {
            store: self.clone(),
            session: session.clone(),
        }))
    }

    fn location(&self) -> String {
        self.path.display().to_string()
    }

    /// `file:` and the canonical path of the file written: the same through a symlinked config
    /// dir, a relative `CLAUDE_CONFIG_DIR` or a link to the file.
    fn identity(&self) -> String {
        format!("file:{}", self.canonical_target().display())
    }

    fn credential_file(&self) -> Option<PathBuf> {
        Some(self.canonical_target())
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
        Some(Fingerprint::of(&(
            meta.dev(),
            meta.ino(),
            meta.size(),
            nanos(meta.mtime(), meta.mtime_nsec()),
            nanos(meta.ctime(), meta.ctime_nsec()),
        )))
    }

    /// Size and modification and creation times: without an inode number, a file replaced by
    /// a rename still differs in one of them.
    #[cfg(not(unix))]
    fn fingerprint(&self) -> Option<Fingerprint> {
        let meta = std::fs::metadata(&self.path).ok()?;
        let nanos = |time: std::io::Result<std::time::SystemTime>| {
            time.ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos() as u64)
        };
        Some(Fingerprint::of(&(
            meta.len(),
            nanos(meta.modified()),
            nanos(meta.created()),
        )))
    }
}

/// How long a save outside a refresh waits for the CLI's write lock.
const SAVE_LOCK_WAIT: Duration = crate::config::DEFAULT_LOCK_TIMEOUT;

/// The file store's refresh lock: the CLI's locks of its sites, the write prepared under them.
struct FileLock {
    store: FileCredentialStore,
    session: Session,
}

#[async_trait]
impl HeldLock for FileLock {
    async fn prepare_save(&mut self, size: u64) -> ClaudeCodeAuthResult<()> {
        let target = self.store.target()?;
        self.session
            .with(move |held| held.prepare(&target, size))
            .await
    }

    async fn lock_write(&mut self, wait: Duration) -> ClaudeCodeAuthResult<()> {
        self.session.with(move |held| held.lock_write(wait)).await
    }

    async fn save_refreshed(&mut self, document: &str) -> ClaudeCodeAuthResult<()> {
        let target = self.store.target()?;
        let bytes = Zeroizing::new(document.as_bytes().to_vec());
        self.session
            .with(move |held| held.commit(&target, &bytes))
            .await
    }
}

impl FileCredentialStore {
    /// Where the locks are taken: for the path as given, and for the file it resolves to when a
    /// symlink is on the way (a link in `~/.claude` to a dotfiles folder), so a process using
    /// either name excludes the other. One site when both are the same.
    fn sites(&self) -> Vec<Site> {
        let site = |path: &Path| {
            let name = lock_path_for(path);
            Site::new(
                &files::parent_of(path),
                name.file_name().unwrap_or_default(),
            )
        };
        let given = site(&self.path);
        let resolved = std::fs::canonicalize(&self.path)
            .or_else(|_| files::write_target(&self.path))
            .map(|target| site(&target));
        match resolved {
            Ok(target) if target.flock != given.flock => vec![given, target],
            _ => vec![given],
        }
    }

    /// The file written, its path resolved (see [`target`](Self::target)); the path as given
    /// when it cannot be (a symlink loop).
    fn canonical_target(&self) -> PathBuf {
        self.target().unwrap_or_else(|_| self.path.clone())
    }

    /// The file a write replaces — the path, or the file its symlink points to — as one name
    /// every process gives it: canonical when it exists, else its directory's canonical path
    /// and its name (absolute when even that does not exist), whatever the working directory.
    fn target(&self) -> ClaudeCodeAuthResult<PathBuf> {
        let target = files::write_target(&self.path).map_err(|e| self.io_error(e))?;
        if let Ok(canonical) = std::fs::canonicalize(&target) {
            return Ok(canonical);
        }
        let dir = files::parent_of(&target);
        Ok(match (std::fs::canonicalize(&dir), target.file_name()) {
            (Ok(dir), Some(name)) => dir.join(name),
            _ => std::path::absolute(&target).unwrap_or(target),
        })
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
        // Windows opens a directory only with backup semantics (else: access denied); opened,
        // it is refused below for what it is. A regular file reads the same either way.
        #[cfg(windows)]
        {
            use std::os::windows::fs::OpenOptionsExt;
            const FILE_FLAG_BACKUP_SEMANTICS: u32 = 0x0200_0000;
            options.custom_flags(FILE_FLAG_BACKUP_SEMANTICS);
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
        // Wiped if dropped here (an error below); handed on without a copy otherwise. Sized
        // from the descriptor: one read for the whole file, one to see its end.
        let expected = usize::try_from(meta.len().min(MAX_DOCUMENT_BYTES)).unwrap_or(0);
        let mut bytes = Zeroizing::new(Vec::with_capacity(expected + 1));
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
    fn default_path_is_the_clis() {
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
            (
                &[
                    ("CLAUDE_SECURESTORAGE_CONFIG_DIR", "/secure"),
                    ("CLAUDE_CONFIG_DIR", "/cfg"),
                ],
                Some("/secure/.credentials.json"),
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
