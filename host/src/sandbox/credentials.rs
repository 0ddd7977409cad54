//! The host side of the component's credential store, whatever the contract's version: loads
//! that answer a rescued login when it supersedes the stored one (and put it back at the first
//! chance), the refresh lock handed out, the prepared write, the write under the store's write
//! lock, and the commit that falls back to a rescue file rather than lose a rotated login. A
//! contract's module (`v0_3.rs`) only converts its types to and from these calls.

use wasmtime::component::Resource;
use zeroize::Zeroizing;

use crate::error::ClaudeCodeAuthError;
use crate::store::handover::{self, Verdict};
use crate::store::rescue::{Replaced, Rescued};

use super::state::{ComponentLock, HostState};

/// Where a committed document was kept.
pub(crate) enum Kept {
    /// In the store.
    Stored,
    /// In a rescue file, the store having refused it.
    Rescued,
}

impl HostState {
    /// The document the component reads: the stored one, or a rescued one that supersedes it
    /// (the store still holds the token its refresh spent). A rescued login goes back into the
    /// store at the first chance, before anything — the `claude` CLI — presents that spent token.
    pub(crate) async fn load_document(
        &mut self,
    ) -> Result<Option<Zeroizing<String>>, ClaudeCodeAuthError> {
        let (mut stored, mut rescued) = self.documents().await?;
        if rescued.is_some() && self.locks_held == 0 && !self.handover_tried {
            self.handover_tried = true;
            if let Ok(Some(mut held)) = self.take_lock().await {
                self.hand_over_rescue(&mut held).await;
                held.release().await;
                drop(held);
                self.forget_lock();
                // Our own release is not "a refresh finished meanwhile".
                self.finished_seen = self.local_lock.finished();
                (stored, rescued) = self.documents().await?;
            }
        }
        // What the store holds under the lock, up to the moment a request leaves: what a rescue
        // of this refresh supersedes (the token it spent, or — when the component refreshed a
        // rescued login — the one the store held beneath that rescue).
        if self.locks_held > 0 && self.policy.spent().is_none() {
            self.stored_when_sent = Some(
                stored
                    .as_deref()
                    .and_then(|text| handover::refresh_token_digest(text)),
            );
        }
        Ok(rescued.or(stored))
    }

    /// The refresh lock, for the component; a rescued login is put back under it first.
    /// `Ok(None)`: a refresh in this process finished while waiting (no lock held).
    pub(crate) async fn lock_for_component(
        &mut self,
    ) -> Result<Option<Resource<ComponentLock>>, ClaudeCodeAuthError> {
        let Some(mut held) = self.take_lock().await? else {
            return Ok(None);
        };
        self.hand_over_rescue(&mut held).await;
        let handle = self
            .table
            .push(held)
            .map_err(|e| ClaudeCodeAuthError::Sandbox {
                message: format!("cannot hand out the refresh lock: {e}"),
            })?;
        self.locks_held += 1;
        Ok(Some(handle))
    }

    /// Get ready to save a document of up to `size` bytes: nothing is spent yet, so a store's
    /// refusal here says the write is impossible ([`ClaudeCodeAuthError::NotWritable`]).
    pub(crate) async fn prepare(
        &mut self,
        lock: &Resource<ComponentLock>,
        size: u64,
    ) -> Result<(), ClaudeCodeAuthError> {
        self.held(lock)?
            .lock
            .prepare_save(size)
            .await
            .map_err(|error| match error {
                ClaudeCodeAuthError::Io { path, source } => {
                    ClaudeCodeAuthError::NotWritable { path, source }
                }
                other => other,
            })
    }

    /// Take the store's write lock and load the document under it.
    pub(crate) async fn load_for_write(
        &mut self,
        lock: &Resource<ComponentLock>,
    ) -> Result<Option<Zeroizing<String>>, ClaudeCodeAuthError> {
        let wait = self.lock_timeout;
        self.held(lock)?.lock.lock_write(wait).await?;
        self.load_document().await
    }

    /// Keep `document`, which holds freshly rotated tokens: in the store, or — the store
    /// refusing it — in a rescue file that names the refresh token its refresh spent. An error
    /// means it could be kept nowhere.
    pub(crate) async fn commit(
        &mut self,
        lock: &Resource<ComponentLock>,
        document: Zeroizing<String>,
    ) -> Result<Kept, ClaudeCodeAuthError> {
        let credentials = self.credentials.clone();
        let held = self.held(lock)?;
        let error = match held.lock.save_refreshed(&*credentials, &document).await {
            Ok(()) => {
                // Whatever a rescue file held is older than what the store now holds.
                self.rescue.remove_all();
                return Ok(Kept::Stored);
            }
            Err(error) => error,
        };
        // What the store held under the lock when the request left (normally the token the
        // request spent); else that token, as the host saw it leave. Never worked out again from
        // the store now: it may be unreachable, or hold someone else's login by now.
        let replaced = match (&self.stored_when_sent, self.policy.spent()) {
            (Some(stored), _) => Replaced::Known(stored.clone()),
            (None, Some(spent)) => Replaced::Known(Some(spent)),
            (None, None) => Replaced::Unknown,
        };
        match self.rescue.write(&document, &replaced) {
            Ok(path) => {
                tracing::warn!(
                    error = %error,
                    rescue = %path.display(),
                    "the store refused the refreshed credential; it is kept in a rescue file and written back under the next refresh lock"
                );
                Ok(Kept::Rescued)
            }
            Err(e) => {
                tracing::error!(error = %error, rescue_error = %e, "the refreshed credential could not be kept anywhere");
                Err(error)
            }
        }
    }

    /// The component gave the lock back.
    pub(crate) async fn unlock(&mut self, lock: Resource<ComponentLock>) -> wasmtime::Result<()> {
        let mut held = self.table.delete(lock)?;
        held.release().await;
        drop(held);
        self.locks_held = self.locks_held.saturating_sub(1);
        if self.locks_held == 0 {
            self.forget_lock();
        }
        Ok(())
    }

    fn held(
        &mut self,
        lock: &Resource<ComponentLock>,
    ) -> Result<&mut ComponentLock, ClaudeCodeAuthError> {
        self.table
            .get_mut(lock)
            .map_err(|e| ClaudeCodeAuthError::Sandbox {
                message: format!("the component used an unknown refresh lock: {e}"),
            })
    }

    /// The stored document, and what a rescue file says of it: `Some(document)` when the
    /// rescued document supersedes the stored one.
    async fn documents(
        &mut self,
    ) -> Result<(Option<Zeroizing<String>>, Option<Zeroizing<String>>), ClaudeCodeAuthError> {
        let stored = self.credentials.load_document().await?.map(Zeroizing::new);
        let Some(rescued) = self.rescue.read() else {
            return Ok((stored, None));
        };
        match judge(&rescued, stored.as_deref().map(String::as_str)) {
            Some(Verdict::Adopt(document)) => Ok((stored, Some(document))),
            // The store holds it, or has moved on to another login: of no use any more, and a
            // copy of a credential in clear.
            Some(Verdict::AlreadyThere | Verdict::Obsolete) => {
                self.rescue.remove(&rescued);
                Ok((stored, None))
            }
            None => Ok((stored, None)),
        }
    }

    /// Under a fresh refresh lock: put a rescued login back into the store, or drop a rescue
    /// file that is obsolete. One that cannot go back yet stays, and is answered by `load`.
    async fn hand_over_rescue(&mut self, held: &mut ComponentLock) {
        let Some(rescued) = self.rescue.read() else {
            return;
        };
        let stored = self
            .credentials
            .load_document()
            .await
            .ok()
            .flatten()
            .map(Zeroizing::new);
        match judge(&rescued, stored.as_deref().map(String::as_str)) {
            Some(Verdict::Adopt(document)) => {
                let lock = &mut held.lock;
                let written = async {
                    lock.prepare_save(document.len() as u64).await?;
                    lock.lock_write(self.lock_timeout).await?;
                    lock.save_refreshed(&*self.credentials, &document).await
                }
                .await;
                match written {
                    Ok(()) => {
                        tracing::warn!(
                            rescue = %rescued.path.display(),
                            store = %self.credentials.location(),
                            "a refreshed credential the store had refused was written back from its rescue file"
                        );
                        self.rescue.remove(&rescued);
                    }
                    Err(error) => tracing::warn!(
                        error = %error,
                        rescue = %rescued.path.display(),
                        "the store still refuses the rescued credential; it stays in its rescue file"
                    ),
                }
            }
            Some(Verdict::AlreadyThere | Verdict::Obsolete) => self.rescue.remove(&rescued),
            None => tracing::warn!(
                rescue = %rescued.path.display(),
                "a rescue file does not say which refresh token its login replaced; it is kept for the operator, neither used nor removed"
            ),
        }
    }
}

/// What to do with `rescued` given what the store holds; `None` when it cannot be judged (its
/// refresh's spent token is not known).
fn judge(rescued: &Rescued, stored: Option<&str>) -> Option<Verdict> {
    match &rescued.replaced {
        Replaced::Known(spent) => {
            Some(handover::judge(&rescued.document, spent.as_deref(), stored))
        }
        Replaced::Unknown => None,
    }
}
