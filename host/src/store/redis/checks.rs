//! What the store checks of the Redis it is given, once per process, before it trusts it with
//! the login (`INFO`, and `CONFIG GET save` where the ACL allows it):
//!
//! - **eviction**: with a memory limit and an `allkeys-*` policy Redis may evict the login
//!   itself — the only copy of a rotated login — so the store refuses; any other policy but
//!   `noeviction` is said (a `volatile-*` one may evict the lease, which the store survives);
//! - **persistence**: no append-only file and no snapshots means a restart empties Redis: said;
//! - **replication**: with replicas connected, every write waits (`WAIT`) until one has it, so a
//!   failover does not bring back the login before the write; with an append-only file, until
//!   it is on disk (`WAITAOF`, Redis 7.2 and later).

use std::time::Duration;

use super::Inner;
use crate::error::{ClaudeCodeAuthError, ClaudeCodeAuthResult};

/// How long a write waits for a replica, or the append-only file, to have it.
const DURABLE_WAIT: Duration = Duration::from_secs(2);

/// What the checks found that later writes depend on.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Checked {
    /// Replicas connected to the server.
    replicas: u64,
    /// The append-only file is on.
    aof: bool,
}

impl Inner {
    /// The checks, made on first use.
    pub(super) async fn checked(&self) -> ClaudeCodeAuthResult<Checked> {
        self.checked
            .get_or_try_init(|| async { self.check().await })
            .await
            .copied()
    }

    async fn check(&self) -> ClaudeCodeAuthResult<Checked> {
        let info: String = match self.connection.query(&redis::cmd("INFO")).await {
            Ok(info) => info,
            Err(error) => {
                let failed = self.failed(&error);
                if matches!(failed, ClaudeCodeAuthError::StoreUnreachable { .. }) {
                    return Err(failed);
                }
                tracing::warn!(
                    store = %self.shown,
                    "Redis does not allow INFO to this client: its eviction, persistence and replication settings are not checked"
                );
                return Ok(Checked::default());
            }
        };
        let field = |name: &str| {
            info.lines()
                .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
                .map(str::trim)
        };
        let maxmemory: u64 = field("maxmemory").and_then(|v| v.parse().ok()).unwrap_or(0);
        let policy = field("maxmemory_policy").unwrap_or("noeviction");
        if maxmemory > 0 && policy.starts_with("allkeys-") {
            return Err(ClaudeCodeAuthError::StoreRefused {
                store: self.shown.clone(),
                message: format!(
                    "when full it evicts any key (maxmemory-policy {policy}): the login itself, the only copy of a rotated login, could go; set `maxmemory-policy noeviction` on this Redis"
                ),
            });
        }
        if maxmemory > 0 && policy != "noeviction" {
            tracing::warn!(
                store = %self.shown,
                policy,
                "when Redis is full it evicts keys with an expiry (maxmemory-policy); the refresh lease has one, and the store survives losing it, but `noeviction` is the setting for a store of logins"
            );
        }
        let aof = field("aof_enabled") == Some("1");
        if !aof && self.snapshots_off().await {
            tracing::warn!(
                store = %self.shown,
                "Redis keeps no append-only file and takes no snapshots: a restart empties it, and the login is gone (the store then says so); turn on `appendonly yes`"
            );
        }
        let replicas = field("connected_slaves")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        Ok(Checked { replicas, aof })
    }

    /// Whether `CONFIG GET save` says no snapshots are taken (`false` when it cannot be asked).
    async fn snapshots_off(&self) -> bool {
        let answer: Result<Vec<String>, _> = self
            .connection
            .query(redis::cmd("CONFIG").arg("GET").arg("save"))
            .await;
        matches!(answer.as_deref(), Ok([_, save]) if save.trim().is_empty())
    }

    /// After a write: wait until a replica has it, and the append-only file, where there are
    /// any. A write that is not on them in time stands; what is in doubt is said.
    pub(super) async fn make_durable(&self, checked: Checked) {
        let wait_ms = crate::time::millis(DURABLE_WAIT);
        if checked.replicas > 0 {
            let acked: Result<i64, _> = self
                .connection
                .query(redis::cmd("WAIT").arg(1).arg(wait_ms))
                .await;
            if !matches!(acked, Ok(n) if n >= 1) {
                tracing::warn!(
                    store = %self.shown,
                    "the refreshed login reached no replica within 2 s: a failover now could bring back the previous one"
                );
            }
        }
        if checked.aof {
            // Redis 7.2 and later; an older one answers an error, and its `appendfsync` decides.
            let _: Result<Vec<i64>, _> = self
                .connection
                .query(redis::cmd("WAITAOF").arg(1).arg(0).arg(wait_ms))
                .await;
        }
    }
}
