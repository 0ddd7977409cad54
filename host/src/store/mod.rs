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
/// [`lock_refresh`](Self::lock_refresh), whose [`RefreshLock`] carries the store's own
/// [`HeldLock`]: what a refresh does under that lock (prepare the write before the refresh token
/// is spent, take the write lock, save the rotated tokens, check the lock still holds before the
/// request leaves, give it back). A store that takes no lock gets its refreshed document saved
/// through [`save_document`](Self::save_document). If that save fails, the provider keeps the
/// rotated tokens in a rescue file of its own and writes them back under the next refresh lock.
/// A store that wraps another forwards [`lock_refresh`](Self::lock_refresh), so the inner
/// store's guarantees hold.
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
    /// `wait`. The default takes none ([`RefreshLock::none`]): the provider still lets only one
    /// refresh run at a time within the process.
    async fn lock_refresh(&self, wait: Duration) -> ClaudeCodeAuthResult<RefreshLock> {
        let _ = wait;
        Ok(RefreshLock::none())
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
/// stops the request, so nothing is spent. See [`HeldLock::send_check`].
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

/// What a store does while its refresh lock is held; dropping it releases the lock. The provider
/// calls, in order: [`prepare_save`](Self::prepare_save) before the refresh token is spent (so a
/// write that cannot work fails while nothing is lost), [`send_check`](Self::send_check)'s check
/// right before the request leaves, then [`lock_write`](Self::lock_write) and
/// [`save_refreshed`](Self::save_refreshed) once the endpoint has answered, as a
/// read-modify-write under the lock every writer of the document takes, and
/// [`release`](Self::release) when it is done.
#[async_trait]
pub trait HeldLock: Send + Sync + 'static {
    /// Get ready to save a document of up to `size` bytes after the refresh: create and reserve
    /// whatever the write needs. An error stops the refresh with nothing lost. The default
    /// prepares nothing.
    async fn prepare_save(&mut self, size: u64) -> ClaudeCodeAuthResult<()> {
        let _ = size;
        Ok(())
    }

    /// Take the lock every writer of the document takes for a read-modify-write (the `claude`
    /// CLI's `.storage-write.lock`), waiting at most `wait`; held until
    /// [`save_refreshed`](Self::save_refreshed) or until this is dropped. The default takes none.
    async fn lock_write(&mut self, wait: Duration) -> ClaudeCodeAuthResult<()> {
        let _ = wait;
        Ok(())
    }

    /// Save `document`, which holds freshly rotated tokens, through what
    /// [`prepare_save`](Self::prepare_save) set up, and release the write lock.
    async fn save_refreshed(&mut self, document: &str) -> ClaudeCodeAuthResult<()>;

    /// The check to run right before the refresh request leaves: a lock that can be lost while
    /// held (a lease that runs out) says there whether it still holds, and an error keeps the
    /// request from leaving. The default is none.
    fn send_check(&self) -> Option<SendCheck> {
        None
    }

    /// Give the lock back now, for a lock that lives on a server (a lease): a drop can only
    /// start that, and a process that exits right after would leave it to run out. Dropping does
    /// the rest. The default does nothing.
    async fn release(&mut self) {}
}

/// A refresh lock as [`CredentialStore::lock_refresh`] hands it out: the store's [`HeldLock`],
/// or none for a store without cross-process locking. Dropping it releases the lock.
pub struct RefreshLock {
    held: Option<Box<dyn HeldLock>>,
    exchange_log: Option<Arc<dyn exchange::ExchangeLog>>,
}

impl RefreshLock {
    /// A lock that holds nothing (for stores without cross-process locking): a refresh under it
    /// saves through the store's [`save_document`](CredentialStore::save_document).
    pub fn none() -> Self {
        Self {
            held: None,
            exchange_log: None,
        }
    }

    /// The lock `held`.
    pub fn new(held: impl HeldLock) -> Self {
        Self {
            held: Some(Box::new(held)),
            exchange_log: None,
        }
    }

    /// This lock with its steps taken by `wrap` of it: how a store that wraps another adds to
    /// the inner store's steps. The wrapper's [`HeldLock`] calls this lock's own for every step
    /// it keeps, each of them (the trait's defaults do nothing: a step not forwarded is not
    /// taken). What the inner store records of the exchange while it happens stays with it.
    pub fn wrapped<H: HeldLock>(self, wrap: impl FnOnce(RefreshLock) -> H) -> RefreshLock {
        let exchange_log = self.exchange_log.clone();
        RefreshLock {
            held: Some(Box::new(wrap(self))),
            exchange_log,
        }
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

    /// See [`HeldLock::prepare_save`].
    pub async fn prepare_save(&mut self, size: u64) -> ClaudeCodeAuthResult<()> {
        match &mut self.held {
            Some(held) => held.prepare_save(size).await,
            None => Ok(()),
        }
    }

    /// See [`HeldLock::lock_write`].
    pub async fn lock_write(&mut self, wait: Duration) -> ClaudeCodeAuthResult<()> {
        match &mut self.held {
            Some(held) => held.lock_write(wait).await,
            None => Ok(()),
        }
    }

    /// Save `document` under this lock (see [`HeldLock::save_refreshed`]); a lock that holds
    /// nothing saves it through `store`, the store that handed it out.
    pub async fn save_refreshed(
        &mut self,
        store: &(impl CredentialStore + ?Sized),
        document: &str,
    ) -> ClaudeCodeAuthResult<()> {
        match &mut self.held {
            Some(held) => held.save_refreshed(document).await,
            None => store.save_document(document).await,
        }
    }

    /// See [`HeldLock::send_check`].
    pub fn send_check(&self) -> Option<SendCheck> {
        self.held.as_ref()?.send_check()
    }

    /// Give the lock back now (see [`HeldLock::release`]). Call it before a process exits.
    pub async fn release(&mut self) {
        if let Some(held) = &mut self.held {
            held.release().await;
        }
    }
}

impl fmt::Debug for RefreshLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.held.is_some() {
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
    use std::io;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use async_trait::async_trait;

    use super::exchange::{Answer, ExchangeLog};
    use super::{CredentialStore, Fingerprint, HeldLock, MemoryCredentialStore, RefreshLock};
    use crate::error::ClaudeCodeAuthResult;

    /// A lock that records the steps taken under it.
    struct Steps(Arc<Mutex<Vec<String>>>);

    #[async_trait]
    impl HeldLock for Steps {
        async fn prepare_save(&mut self, size: u64) -> ClaudeCodeAuthResult<()> {
            self.0.lock().unwrap().push(format!("prepare {size}"));
            Ok(())
        }

        async fn lock_write(&mut self, _: Duration) -> ClaudeCodeAuthResult<()> {
            self.0.lock().unwrap().push("lock write".into());
            Ok(())
        }

        async fn save_refreshed(&mut self, document: &str) -> ClaudeCodeAuthResult<()> {
            self.0.lock().unwrap().push(format!("save {document}"));
            Ok(())
        }

        async fn release(&mut self) {
            self.0.lock().unwrap().push("release".into());
        }
    }

    /// A wrapper that adds a step of its own before the inner lock's prepare.
    struct Wrapper(RefreshLock, Arc<Mutex<Vec<String>>>);

    #[async_trait]
    impl HeldLock for Wrapper {
        async fn prepare_save(&mut self, size: u64) -> ClaudeCodeAuthResult<()> {
            self.1.lock().unwrap().push("wrapper".into());
            self.0.prepare_save(size).await
        }

        async fn save_refreshed(&mut self, document: &str) -> ClaudeCodeAuthResult<()> {
            self.0
                .save_refreshed(&MemoryCredentialStore::new(), document)
                .await
        }
    }

    struct NoLog;

    #[async_trait]
    impl ExchangeLog for NoLog {
        async fn sending(&self, _: &str) -> ClaudeCodeAuthResult<()> {
            Ok(())
        }
        async fn answered(&self, _: &Answer) -> io::Result<()> {
            Ok(())
        }
        async fn replay(&self, _: &str) -> Option<Answer> {
            None
        }
    }

    #[tokio::test]
    async fn a_lock_that_holds_nothing_saves_through_the_store() {
        let store = MemoryCredentialStore::new();
        let mut lock = store.lock_refresh(Duration::ZERO).await.unwrap();
        lock.prepare_save(10).await.unwrap();
        lock.lock_write(Duration::ZERO).await.unwrap();
        lock.save_refreshed(&store, r#"{"a":1}"#).await.unwrap();
        assert_eq!(store.document().as_deref(), Some(r#"{"a":1}"#));
        assert!(lock.send_check().is_none());
    }

    #[tokio::test]
    async fn a_held_lock_takes_every_step_and_a_wrapper_keeps_the_exchange_log() {
        let steps = Arc::new(Mutex::new(Vec::new()));
        let store = MemoryCredentialStore::new();
        let lock = RefreshLock::new(Steps(steps.clone())).with_exchange_log(Arc::new(NoLog));
        let mut lock = lock.wrapped(|inner| Wrapper(inner, steps.clone()));
        assert!(
            lock.exchange_log().is_some(),
            "the inner store's record stays"
        );
        lock.prepare_save(7).await.unwrap();
        lock.lock_write(Duration::ZERO).await.unwrap();
        lock.save_refreshed(&store, "doc").await.unwrap();
        lock.release().await;
        assert_eq!(
            *steps.lock().unwrap(),
            ["wrapper", "prepare 7", "save doc"],
            "the wrapper's defaults (no write lock, no release) are its own"
        );
        assert_eq!(store.document(), None, "a held lock saves through itself");
    }

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
