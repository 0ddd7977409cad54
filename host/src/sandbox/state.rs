//! The host side of one call: the WASI context, the HTTP policy, the store, and the refresh lock
//! handed to the component. The contract's own types stay in its version's module.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{Mutex, OwnedMutexGuard};
use wasmtime::StoreLimits;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::drain::Drain;
use crate::error::ClaudeCodeAuthError;
use crate::store::rescue::RescueFile;
use crate::store::{CredentialStore, RefreshLock};

use super::http_policy::HttpPolicy;

/// The in-process half of the refresh lock, shared by every call of one provider.
#[derive(Debug, Default)]
pub(crate) struct LocalLock {
    mutex: Arc<Mutex<()>>,
    /// Locked sections finished so far: a waiter that sees it move knows a refresh just ended
    /// and can look at its result before queueing on the cross-process lock.
    finished: AtomicU64,
}

/// A refresh lock handed to the component: the in-process lock, then the store's
/// cross-process lock. Dropping it (when the component drops the handle, or the call ends in any
/// way) releases both.
pub struct ComponentLock {
    pub(crate) lock: RefreshLock,
    local: Arc<LocalLock>,
    _guard: OwnedMutexGuard<()>,
}

impl LocalLock {
    /// Locked sections finished so far.
    pub(crate) fn finished(&self) -> u64 {
        self.finished.load(Ordering::SeqCst)
    }
}

impl ComponentLock {
    /// Give the store's lock back now, awaiting it (see [`crate::store::HeldLock::release`]).
    pub(crate) async fn release(&mut self) {
        self.lock.release().await;
    }
}

impl Drop for ComponentLock {
    fn drop(&mut self) {
        // Counted before the guard (a later field) is released, so the next holder sees it.
        self.local.finished.fetch_add(1, Ordering::SeqCst);
    }
}

/// Everything a call's `Store` holds.
pub(crate) struct HostState {
    pub(crate) wasi: WasiCtx,
    pub(crate) http: WasiHttpCtx,
    pub(crate) table: ResourceTable,
    pub(crate) policy: HttpPolicy,
    pub(crate) limits: StoreLimits,
    pub(crate) credentials: Arc<dyn CredentialStore>,
    /// One refresh at a time within this process.
    pub(crate) local_lock: Arc<LocalLock>,
    /// `local_lock.finished` when this call last looked.
    pub(crate) finished_seen: u64,
    /// Refresh locks this call holds (handed to the component, not dropped yet).
    pub(crate) locks_held: usize,
    /// This call already tried to put a rescued login back into the store.
    pub(crate) handover_tried: bool,
    /// How long a refresh waits for the lock (the store's reading of the configured bound).
    pub(crate) lock_timeout: Duration,
    /// The provider's drain: once it is draining, no refresh lock is taken.
    pub(crate) drain: Arc<Drain>,
    /// Where a rotated login the store refused is kept.
    pub(crate) rescue: RescueFile,
    /// The refresh-token digest of the document the store held when the component last read
    /// it under the lock before its request left (`Some(None)`: none, or one without a refresh
    /// token): what a rescue of this refresh supersedes.
    pub(crate) stored_when_sent: Option<Option<String>>,
    /// The typed error behind the last store operation, when it failed. The component only
    /// sees a summary; the host returns this.
    pub(crate) store_error: Option<ClaudeCodeAuthError>,
}

impl HostState {
    /// `Ok(None)`: a refresh in this process finished while we waited; the component should
    /// load again before deciding (answered as `conflict`, no lock held). While the provider is
    /// draining none is taken, and a wait for one ends at once.
    pub(crate) async fn take_lock(&mut self) -> Result<Option<ComponentLock>, ClaudeCodeAuthError> {
        if self.drain.draining() {
            return Err(ClaudeCodeAuthError::Draining);
        }
        let stop = self.drain.stop();
        let started = tokio::time::Instant::now();
        let local = self.local_lock.clone();
        let waiting = tokio::time::timeout(self.lock_timeout, local.mutex.clone().lock_owned());
        let guard = tokio::select! {
            guard = waiting => guard.map_err(|_| ClaudeCodeAuthError::LockTimeout {
                lock: "in-process refresh lock".into(),
                waited: self.lock_timeout,
            })?,
            () = stop.requested() => return Err(ClaudeCodeAuthError::Draining),
        };
        let finished = local.finished.load(Ordering::SeqCst);
        if finished != self.finished_seen {
            self.finished_seen = finished;
            return Ok(None);
        }
        let remaining = self.lock_timeout.saturating_sub(started.elapsed());
        // The store's waits see the stop and give back what they took before returning; a
        // store whose wait does not is given a moment to, then dropped.
        let taking = crate::stop::scope(stop.clone(), self.credentials.lock_refresh(remaining));
        let stopped = async {
            stop.requested().await;
            tokio::time::sleep(STOP_GRACE).await;
        };
        let mut lock = tokio::select! {
            lock = taking => lock?,
            () = stopped => return Err(ClaudeCodeAuthError::Draining),
        };
        if self.drain.draining() {
            lock.release().await;
            return Err(ClaudeCodeAuthError::Draining);
        }
        // Whatever the store checks before a refresh request leaves (a lease still held), and
        // its record of the exchange.
        self.policy.set_send_check(lock.send_check());
        self.policy.set_exchange_log(lock.exchange_log());
        Ok(Some(ComponentLock {
            lock,
            local,
            _guard: guard,
        }))
    }

    /// The lock was given back: nothing to check before sending, nothing to record.
    pub(crate) fn forget_lock(&mut self) {
        self.policy.set_send_check(None);
        self.policy.set_exchange_log(None);
    }
}

/// How long a store's wait for the refresh lock may take to end after the provider stops.
const STOP_GRACE: Duration = Duration::from_millis(500);

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.policy,
        }
    }
}
