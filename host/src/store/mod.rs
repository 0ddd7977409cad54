//! Where the credential document lives. Any [`CredentialStore`] backs the component's
//! `credential-store` import.

mod claude_cli;
mod cli_dirs;
mod cli_lock;
mod env_token;
pub(crate) mod exchange;
mod file;
pub(crate) mod handover;
mod keychain;
mod memory;
#[cfg(feature = "redis")]
mod redis;
pub(crate) mod rescue;
pub(crate) mod state_dir;

use std::any::Any;
use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::credential::CredentialFile;
use crate::error::{ClaudeCodeAuthError, ClaudeCodeAuthResult};

pub use claude_cli::{ClaudeCliLogin, ClaudeCliSource};
pub use cli_dirs::{CONFIG_DIR_ENV, SECURE_STORAGE_DIR_ENV};
pub use env_token::{EnvTokenStore, OAUTH_TOKEN_ENV};
pub use file::FileCredentialStore;
pub(crate) use keychain::{CommandRunner, SystemRunner};
pub use keychain::{KEYCHAIN_SERVICE, KeychainCredentialStore};
pub use memory::MemoryCredentialStore;
#[cfg(feature = "redis")]
pub use redis::{DEFAULT_STORE_KEY, RedisCredentialStore, RedisStoreBuilder, STORE_SECRET_LEN};
pub use state_dir::STATE_DIR_ENV;

/// Async credential storage.
///
/// Implement [`load`](Self::load) and [`save`](Self::save); the document-level methods have
/// defaults built on them. Stores that hold the raw JSON text (files, keychains) override
/// [`load_document`](Self::load_document) and [`save_document`](Self::save_document) so unknown
/// content survives byte for byte, and cross-process stores override
/// [`lock_refresh`](Self::lock_refresh).
///
/// A refresh writes through three more methods, all called while the refresh lock is held:
/// [`prepare_save`](Self::prepare_save) before the refresh token is spent (so a write that cannot
/// work fails while nothing is lost), then [`lock_write`](Self::lock_write) and
/// [`save_refreshed`](Self::save_refreshed) once the endpoint has answered, as a
/// read-modify-write under the lock every writer of the document takes. Their defaults prepare
/// nothing, take no write lock and call [`save_document`](Self::save_document). If
/// `save_refreshed` fails, the provider keeps the rotated tokens in a rescue file of its own and
/// writes them back under the next refresh lock. A store that wraps another forwards all of
/// these methods, so the inner store's guarantees hold.
#[async_trait]
pub trait CredentialStore: Send + Sync + 'static {
    /// The stored credential, or `None` when nothing is stored.
    async fn load(&self) -> ClaudeCodeAuthResult<Option<CredentialFile>>;

    /// Replace the stored credential. Read-only stores answer
    /// [`ClaudeCodeAuthError::ReadOnly`].
    async fn save(&self, file: &CredentialFile) -> ClaudeCodeAuthResult<()>;

    /// The stored document as JSON text, or `None` when nothing is stored.
    async fn load_document(&self) -> ClaudeCodeAuthResult<Option<String>> {
        match self.load().await? {
            Some(file) => render_document(&file, || self.location()).map(Some),
            None => Ok(None),
        }
    }

    /// Replace the stored document with `document` (JSON text).
    async fn save_document(&self, document: &str) -> ClaudeCodeAuthResult<()> {
        let file = parse_document(document, || self.location())?;
        self.save(&file).await
    }

    /// Take the lock that every process refreshing this credential honours, waiting at most
    /// `wait`. The default takes none: the provider still lets only one refresh run at a time
    /// within the process.
    async fn lock_refresh(&self, wait: Duration) -> ClaudeCodeAuthResult<RefreshLock> {
        let _ = wait;
        Ok(RefreshLock::none())
    }

    /// Get ready, under `lock`, to save a document of up to `size` bytes after a refresh: create
    /// and reserve whatever the write needs. Called before the refresh token is spent; an error
    /// stops the refresh with nothing lost. The default prepares nothing.
    async fn prepare_save(&self, lock: &mut RefreshLock, size: u64) -> ClaudeCodeAuthResult<()> {
        let _ = (lock, size);
        Ok(())
    }

    /// Take, under `lock`, the lock every writer of the document takes for a read-modify-write
    /// (the `claude` CLI's `.storage-write.lock`), waiting at most `wait`; held until
    /// [`save_refreshed`](Self::save_refreshed) or until `lock` is dropped. The default takes
    /// none.
    async fn lock_write(&self, lock: &mut RefreshLock, wait: Duration) -> ClaudeCodeAuthResult<()> {
        let _ = (lock, wait);
        Ok(())
    }

    /// Save `document`, which holds freshly rotated tokens, under `lock`, through what
    /// [`prepare_save`](Self::prepare_save) set up, and release the write lock. The default calls
    /// [`save_document`](Self::save_document).
    async fn save_refreshed(
        &self,
        lock: &mut RefreshLock,
        document: &str,
    ) -> ClaudeCodeAuthResult<()> {
        let _ = lock;
        self.save_document(document).await
    }

    /// Where the credential lives, for messages (a path, a keychain item).
    fn location(&self) -> String {
        "custom credential store".to_owned()
    }

    /// A name for the login this store keeps that every process reaching it gives it, however
    /// it reaches it (for a file: its canonical path, through any symlink or relative
    /// spelling). Rescue files are keyed by it. The default is [`location`](Self::location).
    fn identity(&self) -> String {
        self.location()
    }

    /// The credential file this store keeps, if it keeps one: a rescue of its login leaves a
    /// pointer beside it, where every process looks, and files its owner owns are trusted. The
    /// default is `None`.
    fn credential_file(&self) -> Option<std::path::PathBuf> {
        None
    }

    /// How long a refresh waits for [`lock_refresh`](Self::lock_refresh) when the provider
    /// allows `configured` (its lock timeout). The default is `configured`. A store whose lock
    /// outlives a dead holder for a known time — a lease nobody can tell from a live one — waits
    /// at least that long, so that a call starting while a dead holder's lock runs succeeds once
    /// it lapses, in that call. The call's own bound grows with it.
    fn lock_wait(&self, configured: Duration) -> Duration {
        configured
    }

    /// The error for a store that holds nothing: by default
    /// [`ClaudeCodeAuthError::CredentialsMissing`], which says to run `claude login`; a store
    /// filled another way says how.
    fn nothing_stored(&self) -> ClaudeCodeAuthError {
        ClaudeCodeAuthError::CredentialsMissing {
            path: self.location(),
        }
    }

    /// A cheap fingerprint of the stored document, taken on every resolve: while it stays the
    /// same the provider reuses the header it last got, until that token nears expiry. `None`
    /// (the default) means the store cannot tell, and every resolve asks the component.
    fn fingerprint(&self) -> Option<Fingerprint> {
        None
    }

    /// The fingerprint as the provider takes it on every resolve. The default is
    /// [`fingerprint`](Self::fingerprint); a store that must ask over the network (Redis)
    /// overrides this one, with one round trip at most.
    async fn current_fingerprint(&self) -> Option<Fingerprint> {
        self.fingerprint()
    }
}

/// Checked right before the refresh request leaves, while the refresh lock is held: an error
/// stops the request, so nothing is spent. See [`RefreshLock::with_send_check`].
pub type SendCheck = Arc<
    dyn Fn()
            -> std::pin::Pin<Box<dyn std::future::Future<Output = ClaudeCodeAuthResult<()>> + Send>>
        + Send
        + Sync,
>;

/// Identifies one state of a stored document: any write changes it. Opaque: made with
/// [`Fingerprint::of`] from whatever identifies the state, and only compared within a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 16]);

impl Fingerprint {
    /// The fingerprint of `state`, anything that identifies one state of the document (for a
    /// file: device, inode, size, modification and change times; for a counter: its value).
    /// Two states are told apart unless their SHA-256 digests share 128 bits.
    pub fn of(state: &impl std::hash::Hash) -> Self {
        use sha2::{Digest, Sha256};
        /// Every byte `Hash` feeds, into SHA-256 (`finish` is never asked for).
        struct Fed(Sha256);
        impl std::hash::Hasher for Fed {
            fn write(&mut self, bytes: &[u8]) {
                self.0.update(bytes);
            }
            fn finish(&self) -> u64 {
                0
            }
        }
        let mut fed = Fed(Sha256::new());
        state.hash(&mut fed);
        let mut out = [0; 16];
        out.copy_from_slice(&fed.0.finalize()[..16]);
        Self(out)
    }
}

#[async_trait]
impl<T: CredentialStore + ?Sized> CredentialStore for Arc<T> {
    async fn load(&self) -> ClaudeCodeAuthResult<Option<CredentialFile>> {
        (**self).load().await
    }

    async fn save(&self, file: &CredentialFile) -> ClaudeCodeAuthResult<()> {
        (**self).save(file).await
    }

    async fn load_document(&self) -> ClaudeCodeAuthResult<Option<String>> {
        (**self).load_document().await
    }

    async fn save_document(&self, document: &str) -> ClaudeCodeAuthResult<()> {
        (**self).save_document(document).await
    }

    async fn lock_refresh(&self, wait: Duration) -> ClaudeCodeAuthResult<RefreshLock> {
        (**self).lock_refresh(wait).await
    }

    async fn prepare_save(&self, lock: &mut RefreshLock, size: u64) -> ClaudeCodeAuthResult<()> {
        (**self).prepare_save(lock, size).await
    }

    async fn lock_write(&self, lock: &mut RefreshLock, wait: Duration) -> ClaudeCodeAuthResult<()> {
        (**self).lock_write(lock, wait).await
    }

    async fn save_refreshed(
        &self,
        lock: &mut RefreshLock,
        document: &str,
    ) -> ClaudeCodeAuthResult<()> {
        (**self).save_refreshed(lock, document).await
    }

    fn location(&self) -> String {
        (**self).location()
    }

    fn nothing_stored(&self) -> ClaudeCodeAuthError {
        (**self).nothing_stored()
    }

    fn identity(&self) -> String {
        (**self).identity()
    }

    fn credential_file(&self) -> Option<std::path::PathBuf> {
        (**self).credential_file()
    }

    fn lock_wait(&self, configured: Duration) -> Duration {
        (**self).lock_wait(configured)
    }

    fn fingerprint(&self) -> Option<Fingerprint> {
        (**self).fingerprint()
    }

    async fn current_fingerprint(&self) -> Option<Fingerprint> {
        (**self).current_fingerprint().await
    }
}

/// A held refresh lock; dropping it releases the lock.
pub struct RefreshLock {
    _guard: Option<Box<dyn Any + Send + Sync>>,
    send_check: Option<SendCheck>,
    release: Option<Release>,
    exchange_log: Option<Arc<dyn exchange::ExchangeLog>>,
}

/// Releases a lock that lives on a server, awaited when the holder is done with it (a drop
/// could only start it, and a process that exits right after would leave the lock to expire).
pub type Release = Box<
    dyn FnOnce() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> + Send + Sync,
>;

impl RefreshLock {
    /// A lock that holds nothing (for stores without cross-process locking).
    pub fn none() -> Self {
        Self {
            _guard: None,
            send_check: None,
            release: None,
            exchange_log: None,
        }
    }

    /// A lock released when `guard` is dropped.
    pub fn new(guard: impl Any + Send + Sync) -> Self {
        Self {
            _guard: Some(Box::new(guard)),
            send_check: None,
            release: None,
            exchange_log: None,
        }
    }

    /// This lock, with `check` run right before the refresh request is sent: a lock that can be
    /// lost while held (a lease that runs out) says there whether it still holds, and an error
    /// keeps the request from leaving.
    pub fn with_send_check(mut self, check: SendCheck) -> Self {
        self.send_check = Some(check);
        self
    }

    /// This lock, with `release` awaited when its holder is done with it, before it is dropped.
    pub fn with_release(mut self, release: Release) -> Self {
        self.release = Some(release);
        self
    }

    /// This lock, with `log` told of the refresh exchange as it happens (see
    /// [`exchange`]).
    pub(crate) fn with_exchange_log(mut self, log: Arc<dyn exchange::ExchangeLog>) -> Self {
        self.exchange_log = Some(log);
        self
    }

    /// The store's record of the exchange, if it keeps one.
    pub(crate) fn exchange_log(&self) -> Option<Arc<dyn exchange::ExchangeLog>> {
        self.exchange_log.clone()
    }

    /// Give the lock back now, waiting for a store whose lock lives on a server (a lease) to
    /// take it back; dropping the lock does the rest. Call it before a process exits: a drop
    /// alone can only start that, and the lease would be left to run out.
    pub async fn release(&mut self) {
        if let Some(release) = self.release.take() {
            release().await;
        }
    }

    /// The check to run before sending, if the store gave one.
    pub(crate) fn send_check(&self) -> Option<SendCheck> {
        self.send_check.clone()
    }

    /// The guard this lock was made with, if it is a `T`: how a store reaches its own state
    /// (a prepared write, a held write lock) in the methods that take the lock.
    pub fn guard<T: Any>(&self) -> Option<&T> {
        self._guard.as_ref()?.downcast_ref()
    }
}

impl fmt::Debug for RefreshLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self._guard.is_some() {
            "RefreshLock(held)"
        } else {
            "RefreshLock(none)"
        })
    }
}

/// Parse a stored document; `location` names the store in the error.
pub(crate) fn parse_document(
    text: &str,
    location: impl FnOnce() -> String,
) -> ClaudeCodeAuthResult<CredentialFile> {
    serde_json::from_str(text).map_err(|source| ClaudeCodeAuthError::InvalidStorage {
        path: location(),
        source: source.into(),
    })
}

/// Render a credential as document text; `location` names the store in the error.
pub(crate) fn render_document(
    file: &CredentialFile,
    location: impl FnOnce() -> String,
) -> ClaudeCodeAuthResult<String> {
    serde_json::to_string(file).map_err(|e| ClaudeCodeAuthError::InvalidDocument {
        path: location(),
        problem: format!(
            "cannot be written as JSON (line {}, column {})",
            e.line(),
            e.column()
        ),
    })
}

/// Run blocking file work off the async runtime; a wait inside it sees the caller's stop (see
/// [`crate::stop`]).
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> ClaudeCodeAuthResult<T> + Send + 'static,
) -> ClaudeCodeAuthResult<T> {
    let stop = crate::stop::current();
    tokio::task::spawn_blocking(move || crate::stop::within(stop, work))
        .await
        .unwrap_or_else(|join| {
            Err(ClaudeCodeAuthError::Io {
                path: "<blocking task>".into(),
                source: io::Error::other(join.to_string()),
            })
        })
}

#[cfg(test)]
mod tests {
    use super::Fingerprint;

    #[test]
    fn a_fingerprint_tells_states_apart_and_only_them() {
        let file = |inode: u64, size: u64| Fingerprint::of(&(1_u64, inode, size, 7_u64, 7_u64));
        assert_eq!(file(2, 3), file(2, 3));
        assert_ne!(file(2, 3), file(2, 4));
        assert_ne!(file(2, 3), file(3, 3));
        // The epoch of a Redis login is text: where one ends is part of the state.
        let redis = |generation: u64, epoch: Option<&str>| Fingerprint::of(&(generation, epoch));
        assert_ne!(redis(1, Some("ab")), redis(1, Some("abc")));
        assert_ne!(redis(1, None), redis(1, Some("")));
        assert_eq!(redis(1, Some("ab")), redis(1, Some("ab")));
    }
}
