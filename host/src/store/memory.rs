//! [`MemoryCredentialStore`]: a document held in memory, for tests and ephemeral use.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use zeroize::Zeroizing;

use crate::credential::CredentialFile;
use crate::error::ClaudeCodeAuthResult;

use super::{CredentialStore, Fingerprint, parse_document, render_document};

/// A credential document kept in memory as JSON text, so unknown fields survive as they would in
/// a file. Share it between a provider and the code that inspects it with an `Arc`.
#[derive(Default)]
pub struct MemoryCredentialStore {
    /// Wiped when replaced or dropped.
    document: Mutex<Option<Zeroizing<String>>>,
    /// Bumped by every write, for [`CredentialStore::fingerprint`].
    writes: AtomicU64,
}

impl std::fmt::Debug for MemoryCredentialStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The document is a secret: say only whether there is one.
        f.debug_struct("MemoryCredentialStore")
            .field("holds_document", &self.slot().is_some())
            .finish()
    }
}

impl MemoryCredentialStore {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// A store holding `document` (JSON text, not validated until used).
    #[must_use]
    pub fn with_document(document: impl Into<String>) -> Self {
        Self {
            document: Mutex::new(Some(Zeroizing::new(document.into()))),
            writes: AtomicU64::new(0),
        }
    }

    /// The document held now.
    pub fn document(&self) -> Option<String> {
        self.slot().as_ref().map(|d| d.to_string())
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Option<Zeroizing<String>>> {
        // A panic while holding this lock cannot leave a half-written String behind.
        self.document
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[async_trait]
impl CredentialStore for MemoryCredentialStore {
    async fn load(&self) -> ClaudeCodeAuthResult<Option<CredentialFile>> {
        match self.document() {
            Some(text) => parse_document(&text, || self.location()).map(Some),
            None => Ok(None),
        }
    }

    async fn save(&self, file: &CredentialFile) -> ClaudeCodeAuthResult<()> {
        let text = render_document(file, || self.location())?;
        *self.slot() = Some(Zeroizing::new(text));
        self.writes.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    async fn load_document(&self) -> ClaudeCodeAuthResult<Option<String>> {
        Ok(self.document())
    }

    async fn save_document(&self, document: &str) -> ClaudeCodeAuthResult<()> {
        *self.slot() = Some(Zeroizing::new(document.to_owned()));
        self.writes.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    fn location(&self) -> String {
        "memory".to_owned()
    }

    fn fingerprint(&self) -> Option<Fingerprint> {
        Some(Fingerprint::of(&self.writes.load(Ordering::SeqCst)))
    }
}
