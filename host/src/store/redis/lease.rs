//! The refresh lease: `SET lease owner NX PX`, an owner id per holder, renewed while held,
//! released with a compare-and-delete. It fences writes: a document is written only by the
//! lease's owner and only over the generation that owner read.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{Inner, scripts};
use crate::error::{ClaudeCodeAuthError, ClaudeCodeAuthResult};
use crate::store::{HeldLock, SendCheck};
use crate::time::millis;

/// The first pause while another holder has the lease; it doubles up to [`MAX_PAUSE`]. Short:
/// a refresh takes milliseconds, and each waiter's poll is one small command.
const FIRST_PAUSE: Duration = Duration::from_millis(5);
const MAX_PAUSE: Duration = Duration::from_millis(50);

/// A held lease. Dropping it stops the renewal and releases the lease.
pub(super) struct Lease {
    state: Arc<LeaseState>,
    renewer: JoinHandle<()>,
}

/// What the holder, its renewal and the send check share.
pub(super) struct LeaseState {
    inner: Arc<Inner>,
    owner: String,
    /// The generation this holder read when it took the lease (and wrote since).
    generation: AtomicU64,
    /// Set when a renewal found the lease gone or someone else's.
    lost: AtomicBool,
    /// Set once released: a drop has nothing left to do.
    released: AtomicBool,
    /// Set once this holder noted a refresh token it presents: what it writes then is a
    /// refresh of the stored login, not a login put in.
    spending: AtomicBool,
}

/// Take the lease for `owner`, polling (5 ms, doubling to 50 ms) for at most `wait` while
/// another holder has it: whether it had to wait. A provider that stops ends the wait at once
/// (nothing is held while waiting); another holder's write ends it with a `StoreConflict`.
async fn take(
    inner: &Arc<Inner>,
    owner: &str,
    seen: u64,
    wait: Duration,
) -> ClaudeCodeAuthResult<bool> {
    let started = Instant::now();
    let mut pause = FIRST_PAUSE;
    let mut waited = false;
    let stop = crate::stop::current();
    loop {
        if stop.as_ref().is_some_and(|stop| stop.is_requested()) {
            return Err(ClaudeCodeAuthError::Draining);
        }
        if set_if_free(inner, owner).await? {
            return Ok(waited);
        }
        // Another holder wrote meanwhile: its login is there to load, no lease needed.
        if inner.generation().await? != seen {
            return Err(moved(inner));
        }
        waited = true;
        let elapsed = started.elapsed();
        if elapsed >= wait {
            return Err(ClaudeCodeAuthError::LockTimeout {
                lock: format!("the refresh lease of {}", inner.shown),
                waited: elapsed,
            });
        }
        let sleep = tokio::time::sleep(pause.min(wait - elapsed));
        match &stop {
            Some(stop) => tokio::select! {
                () = sleep => {}
                () = stop.requested() => return Err(ClaudeCodeAuthError::Draining),
            },
            None => sleep.await,
        }
        pause = (pause * 2).min(MAX_PAUSE);
    }
}

/// `SET lease owner NX PX <lease>`: whether `owner` has the lease now.
async fn set_if_free(inner: &Inner, owner: &str) -> ClaudeCodeAuthResult<bool> {
    let set: Option<String> = inner
        .connection
        .query(
            redis::cmd("SET")
                .arg(&inner.keys.lease)
                .arg(owner)
                .arg("NX")
                .arg("PX")
                .arg(millis(inner.lease)),
        )
        .await
        .map_err(|e| inner.failed(&e))?;
    Ok(set.is_some())
}

impl Lease {
    /// Take the lease, waiting at most `wait` while another holder has it. A `StoreConflict`
    /// when the stored generation moved while this one waited: another holder refreshed, and
    /// loading again shows its token.
    pub(super) async fn acquire(inner: &Arc<Inner>, wait: Duration) -> ClaudeCodeAuthResult<Self> {
        inner.checked().await?;
        let owner = super::random_hex(16)?;
        let seen = inner.generation().await?;
        let waited = take(inner, &owner, seen, wait).await?;
        Self::held(inner, owner, seen, waited).await
    }

    /// The lease `owner` took, renewed from now on, with the generation it read; given back
    /// when the generation moved while it waited.
    async fn held(
        inner: &Arc<Inner>,
        owner: String,
        seen: u64,
        waited: bool,
    ) -> ClaudeCodeAuthResult<Self> {
        let state = Arc::new(LeaseState {
            inner: inner.clone(),
            owner,
            generation: AtomicU64::new(0),
            lost: AtomicBool::new(false),
            released: AtomicBool::new(false),
            spending: AtomicBool::new(false),
        });
        let lease = Self {
            renewer: tokio::spawn(renew(Arc::downgrade(&state))),
            state,
        };
        let generation = inner.generation().await?;
        lease.state.generation.store(generation, Ordering::SeqCst);
        if waited && generation != seen {
            lease.state.release().await;
            return Err(moved(inner));
        }
        Ok(lease)
    }

    /// What the send check holds.
    pub(super) fn state(&self) -> Arc<LeaseState> {
        self.state.clone()
    }
}

/// The lease is the store's refresh lock and its write lock too: only its holder writes, and
/// only over the generation it read.
#[async_trait::async_trait]
impl HeldLock for Lease {
    /// Nothing to create; the lease must still be held, or nothing may be sent.
    async fn prepare_save(&mut self, size: u64) -> ClaudeCodeAuthResult<()> {
        let _ = size;
        self.state.confirm().await
    }

    async fn save_refreshed(&mut self, document: &str) -> ClaudeCodeAuthResult<()> {
        self.state.inner().write(&self.state, document).await
    }

    /// Whether the lease still holds, asked of Redis right before the request leaves.
    fn send_check(&self) -> Option<SendCheck> {
        let state = self.state.clone();
        Some(Arc::new(move || {
            let state = state.clone();
            Box::pin(async move { state.confirm().await })
        }))
    }

    async fn release(&mut self) {
        self.state.release().await;
    }
}

/// The conflict of a waiter that saw another holder's write.
fn moved(inner: &Inner) -> ClaudeCodeAuthError {
    ClaudeCodeAuthError::StoreConflict {
        store: inner.shown.clone(),
        message: "another holder wrote a login while this one waited for the lease".into(),
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.renewer.abort();
        if self.state.released.load(Ordering::SeqCst) {
            return;
        }
        let state = self.state.clone();
        // Started only: without a runtime, or in a process that exits first, the lease runs
        // out by itself. The provider awaits `release` instead (see `HeldLock::release`).
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { state.release().await });
        }
    }
}

impl LeaseState {
    /// Give the lease back (compare-and-delete: only if still ours). Once.
    pub(super) async fn release(&self) {
        if self.released.swap(true, Ordering::SeqCst) {
            return;
        }
        let mut release = scripts::RELEASE.key(&self.inner.keys.lease);
        release.arg(&self.owner);
        let _: Result<i64, _> = self.inner.connection.script(&release).await;
    }

    /// The generation this holder read or last wrote.
    pub(super) fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Note that this holder presents a refresh token (see [`Self::save`]).
    pub(super) fn spends(&self) {
        self.spending.store(true, Ordering::SeqCst);
    }

    /// The store this lease is of.
    pub(super) fn inner(&self) -> &Arc<Inner> {
        &self.inner
    }

    /// The holder's owner id, which the lease key holds while it is this holder's.
    pub(super) fn owner(&self) -> &str {
        &self.owner
    }

    /// Confirm the lease is still this holder's and renew it now, so it outlasts the refresh
    /// budget: called before a refresh token is spent. An error means: do not send.
    pub(super) async fn confirm(&self) -> ClaudeCodeAuthResult<()> {
        let inner = &self.inner;
        let lost = || ClaudeCodeAuthError::LockLost {
            lock: format!("the refresh lease of {}", inner.shown),
            why: "it ran out and may be another holder's now".into(),
        };
        if self.lost.load(Ordering::SeqCst) {
            return Err(lost());
        }
        let sent = Instant::now();
        if !self.renew_once().await.map_err(|e| inner.failed(&e))? {
            self.lost.store(true, Ordering::SeqCst);
            return Err(lost());
        }
        // Renewed as of `sent`: the lease outlasts the budget unless this process pauses for
        // longer than `lease - budget` from here, the window no lock can close.
        if sent.elapsed() + inner.refresh_budget >= inner.lease {
            return Err(lost());
        }
        Ok(())
    }

    /// Renew once: `Ok(true)` renewed, `Ok(false)` the lease is gone or someone else's.
    async fn renew_once(&self) -> Result<bool, redis::RedisError> {
        let mut renew = scripts::RENEW.key(&self.inner.keys.lease);
        renew.arg(&self.owner).arg(millis(self.inner.lease));
        let renewed: i64 = self.inner.connection.script(&renew).await?;
        Ok(renewed == 1)
    }

    /// Write `value` as the next generation; the login's epoch. A write that is no refresh of
    /// the stored login (an import, a rescued login put back) starts a new epoch: every
    /// machine's mark then takes it as the login now, whatever generations they saw before.
    /// `StoreConflict` when the lease or the generation moved (a newer login is never
    /// overwritten).
    pub(super) async fn save(
        &self,
        value: &[u8],
        epoch: &str,
    ) -> ClaudeCodeAuthResult<Option<String>> {
        let inner = &self.inner;
        let expected = self.generation();
        let mut save = scripts::SAVE.key(&inner.keys.login);
        save.key(&inner.keys.lease)
            .key(&inner.keys.answer)
            .arg(&self.owner)
            .arg(expected.to_string())
            .arg(value)
            .arg(epoch)
            .arg(match self.spending.load(Ordering::SeqCst) {
                true => "keep",
                false => "new",
            });
        let answer: Vec<String> = inner
            .connection
            .script(&save)
            .await
            .map_err(|e| inner.failed(&e))?;
        let conflict = |message: String| ClaudeCodeAuthError::StoreConflict {
            store: inner.shown.clone(),
            message,
        };
        let field = |i: usize| answer.get(i).map_or("", String::as_str);
        match (field(0), field(1)) {
            ("1", next) => {
                let next = next
                    .parse()
                    .map_err(|_| conflict(format!("the store answered generation `{next}`")))?;
                self.generation.store(next, Ordering::SeqCst);
                Ok(answer.get(2).cloned())
            }
            (_, "lease") => Err(conflict(
                "the refresh lease ran out before the write; the login is kept aside".into(),
            )),
            (_, stored) => Err(conflict(format!(
                "the stored login moved from generation {expected} to {stored} meanwhile; the newer one is kept"
            ))),
        }
    }
}

/// Renew the lease every third of its length while its holder lives; mark it lost when a
/// renewal finds it gone. A failed renewal (Redis unreachable) is tried again.
async fn renew(state: std::sync::Weak<LeaseState>) {
    loop {
        let Some(every) = state.upgrade().map(|s| s.inner.lease / 3) else {
            return;
        };
        tokio::time::sleep(every).await;
        let Some(state) = state.upgrade() else {
            return;
        };
        if let Ok(false) = state.renew_once().await {
            state.lost.store(true, Ordering::SeqCst);
            return;
        }
    }
}
