//! The wasmtime embedding. One engine per process (with a thread ticking its epoch); each
//! component is compiled once; every call gets a fresh store and instance with its own CPU,
//! memory, time and network limits, so nothing a call does — a trap, a loop, a leak — reaches the
//! next one.

mod compiled_cache;
mod credentials;
mod deadline;
mod failure;
mod header;
mod http_client;
mod http_policy;
mod output;
mod proxy;
mod refusal;
mod replay;
mod state;
mod v0_3;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, UNIX_EPOCH};

use tokio::sync::OnceCell;
use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store, StoreLimitsBuilder};
use wasmtime_wasi::{HostWallClock, WasiCtx};
use wasmtime_wasi_http::WasiHttpCtx;

use crate::config::{ClaudeCodeOAuthConfig, WallClock};
use crate::drain::Drain;
use crate::error::{ClaudeCodeAuthError, ClaudeCodeAuthResult};
use crate::store::CredentialStore;
use crate::store::rescue::RescueFile;

pub use compiled_cache::CACHE_DIR_ENV;
use deadline::CallDeadline;
use failure::trap_error;
use http_policy::HttpPolicy;
use output::DiscardedOutput;
use state::HostState;
pub(crate) use state::LocalLock;
// The contract version this host speaks; the only line that names one.
use latest::{ProviderHost, ProviderHostPre};
use v0_3 as latest;

/// The WIT package this host speaks, for messages.
const CONTRACT: &str = latest::PACKAGE;

/// The refresh component this crate ships and runs: built from `guest/` reproducibly (pinned
/// toolchain, remapped paths) by `componentize/`, and checked in CI to be what `guest/` builds.
pub const COMPONENT_WASM: &[u8] = include_bytes!("../../component/claude_code_auth.wasm");

/// How often the engine's epoch advances: a running guest yields to the async runtime at least
/// this often, so the call's deadline can always fire.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// What one call needs besides the component.
pub(crate) struct CallContext {
    pub(crate) credentials: Arc<dyn CredentialStore>,
    pub(crate) local_lock: Arc<LocalLock>,
    pub(crate) config: ClaudeCodeOAuthConfig,
    pub(crate) drain: Arc<Drain>,
}

/// A call of one export, borrowed for the duration of the call.
pub(crate) type ExportCall<'a, T> =
    Pin<Box<dyn Future<Output = wasmtime::Result<Result<T, latest::AuthError>>> + Send + 'a>>;

/// A compiled provider component, type-checked against this host's world
/// (`entelix:claude-code-auth/provider-host@0.3.0`) and ready to instantiate.
///
/// The provider uses [`ProviderComponent::embedded`] unless given another one with
/// [`crate::ClaudeCodeOAuthProvider::with_component`] (a newer build of the component, or a
/// test double).
#[derive(Clone)]
pub struct ProviderComponent {
    pre: Arc<ProviderHostPre<HostState>>,
}

impl std::fmt::Debug for ProviderComponent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProviderComponent")
    }
}

static EMBEDDED: OnceCell<ProviderComponent> = OnceCell::const_new();

impl ProviderComponent {
    /// The component embedded in this crate, compiled (or loaded from the on-disk cache) once
    /// per process on a blocking thread.
    pub async fn embedded() -> ClaudeCodeAuthResult<Self> {
        EMBEDDED
            .get_or_try_init(|| async {
                tokio::task::spawn_blocking(|| Self::build(COMPONENT_WASM, true))
                    .await
                    .map_err(|e| sandbox_error("compiling", &e))?
            })
            .await
            .cloned()
    }

    /// Identifies this compiled component within the process.
    pub(crate) fn id(&self) -> usize {
        Arc::as_ptr(&self.pre) as usize
    }

    /// Compile `wasm` (a component's bytes) and check it against this host's world. A component
    /// built for another version of the contract fails here, naming what does not match, not at
    /// its first call. Compiling takes a few hundred milliseconds: call it off the async runtime.
    pub fn compile(wasm: &[u8]) -> ClaudeCodeAuthResult<Self> {
        Self::build(wasm, false)
    }

    fn build(wasm: &[u8], cached: bool) -> ClaudeCodeAuthResult<Self> {
        let engine = engine()?;
        let component = if cached {
            compiled_cache::load_or_compile(engine, wasm)
        } else {
            wasmtime::component::Component::new(engine, wasm)
        }
        .map_err(|e| sandbox_error("compiling", &e))?;
        check_contract_version(&component, engine)?;
        let mut linker = Linker::new(engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .and_then(|()| wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker))
            .and_then(|()| ProviderHost::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s))
            .map_err(|e| sandbox_error("linking", &e))?;
        let pre = linker
            .instantiate_pre(&component)
            .and_then(ProviderHostPre::new)
            .map_err(|e| sandbox_error("loading", &e))?;
        Ok(Self { pre: Arc::new(pre) })
    }

    /// Run one export in a fresh instance, within the limits of `ctx.config`, and turn its
    /// answer into this crate's error type.
    ///
    /// The call is bounded by the lock and refresh bounds plus some slack; once the component
    /// has sent a request, the bound also covers the refresh budget from that moment on, so an
    /// answer that arrives within the budget is never cut off after the endpoint rotated the
    /// refresh token.
    async fn call<T>(
        &self,
        ctx: &CallContext,
        export: impl for<'a> FnOnce(
            &'a ProviderHost,
            &'a mut Store<HostState>,
            &'a latest::Config,
        ) -> ExportCall<'a, T>,
    ) -> ClaudeCodeAuthResult<T> {
        let config = &ctx.config;
        let policy = HttpPolicy::for_config(config, ctx.drain.clone())?;
        let (last_sent, answered) = (policy.last_sent(), policy.kept_flights());
        let lock_wait = ctx.credentials.lock_wait(config.lock_timeout);
        let mut store = sandboxed_store(ctx, policy, lock_wait)?;
        let deadline = CallDeadline::new(config, lock_wait, last_sent);
        let contract_config = latest::config(config);
        let outcome = deadline
            .run(async {
                let bindings = self.pre.instantiate_async(&mut store).await?;
                export(&bindings, &mut store, &contract_config).await
            })
            .await;
        if let Ok(left) = store.get_fuel() {
            tracing::debug!(fuel_used = config.fuel - left, "component call finished");
        }
        let result = match outcome {
            Err(after) => Err(ClaudeCodeAuthError::TimedOut { after }),
            Ok(Err(trap)) => Err(trap_error(&trap, config)),
            Ok(Ok(Ok(value))) => Ok(value),
            Ok(Ok(Err(failure))) => Err(store.data_mut().component_error(failure.into(), config)),
        };
        // The locks go with the store; a refresh that got its answer is in flight until then.
        drop(store);
        drop(std::mem::take(
            &mut *answered
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        ));
        result
    }
}

/// A wasmtime store for one call: a fresh host state over `ctx`'s store and lock, the memory
/// and table limits, the fuel, and a yield at every epoch tick (a guest that never returns
/// cannot hold a worker thread, and the call's deadline always gets to fire).
fn sandboxed_store(
    ctx: &CallContext,
    policy: HttpPolicy,
    lock_wait: Duration,
) -> ClaudeCodeAuthResult<Store<HostState>> {
    let config = &ctx.config;
    let limits = StoreLimitsBuilder::new()
        .memory_size(config.memory_limit)
        .table_elements(100_000)
        .instances(32)
        .tables(32)
        .memories(8)
        .trap_on_grow_failure(true)
        .build();
    let state = HostState {
        wasi: wasi_context(config.clock.clone()),
        http: WasiHttpCtx::new(),
        table: ResourceTable::new(),
        policy,
        limits,
        credentials: ctx.credentials.clone(),
        local_lock: ctx.local_lock.clone(),
        finished_seen: ctx.local_lock.finished(),
        locks_held: 0,
        handover_tried: false,
        lock_timeout: lock_wait,
        drain: ctx.drain.clone(),
        rescue: RescueFile::for_store(
            &ctx.credentials.identity(),
            ctx.credentials.credential_file(),
            config.rescue_dir.as_deref(),
        ),
        stored_when_sent: None,
        store_error: None,
    };
    let mut store = Store::new(engine()?, state);
    store.limiter(|state| &mut state.limits);
    store
        .set_fuel(config.fuel)
        .map_err(|e| sandbox_error("configuring", &e))?;
    store.epoch_deadline_async_yield_and_update(1);
    Ok(store)
}

/// Refuse, by name, a component built for another version of this contract: a clear error at
/// load time instead of a missing import or export at the first call.
fn check_contract_version(
    component: &wasmtime::component::Component,
    engine: &Engine,
) -> ClaudeCodeAuthResult<()> {
    let ty = component.component_type();
    let names = ty
        .imports(engine)
        .map(|(name, _)| name)
        .chain(ty.exports(engine).map(|(name, _)| name));
    for name in names {
        if let Some(theirs) = foreign_contract(name) {
            return Err(ClaudeCodeAuthError::Sandbox {
                message: format!(
                    "the component was built for {theirs} (it uses `{name}`); this host speaks {CONTRACT}"
                ),
            });
        }
    }
    Ok(())
}

/// `Some("entelix:claude-code-auth@X")` when `name` belongs to this contract at a version that
/// is not semver-compatible with [`CONTRACT`].
fn foreign_contract(name: &str) -> Option<String> {
    let (_, ours) = CONTRACT.split_once('@')?;
    let rest = name.strip_prefix("entelix:claude-code-auth/")?;
    let (_, theirs) = rest.split_once('@')?;
    let major_minor = |v: &str| {
        let mut parts = v.split('.');
        (
            parts.next().map(str::to_owned),
            parts.next().map(str::to_owned),
        )
    };
    let ((our_major, our_minor), (their_major, their_minor)) =
        (major_minor(ours), major_minor(theirs));
    // Semver: same major; below 1.0 the minor must match too.
    let compatible =
        our_major == their_major && (our_major.as_deref() != Some("0") || our_minor == their_minor);
    (!compatible).then(|| format!("entelix:claude-code-auth@{theirs}"))
}

/// The process's engine: fuel metering and epoch interruption on, its epoch ticked by a
/// background thread.
fn engine() -> ClaudeCodeAuthResult<&'static Engine> {
    static ENGINE: OnceLock<Result<Engine, String>> = OnceLock::new();
    ENGINE
        .get_or_init(|| {
            let mut config = Config::new();
            config.consume_fuel(true).epoch_interruption(true);
            let engine = Engine::new(&config).map_err(|e| e.to_string())?;
            let ticking = engine.weak();
            std::thread::Builder::new()
                .name("claude-code-auth-epoch".into())
                .spawn(move || {
                    while let Some(engine) = ticking.upgrade() {
                        engine.increment_epoch();
                        drop(engine);
                        std::thread::sleep(EPOCH_TICK);
                    }
                })
                .map_err(|e| e.to_string())?;
            Ok(engine)
        })
        .as_ref()
        .map_err(|e| sandbox_error("configuring", e))
}

/// No arguments, no environment, no preopened directory, no sockets, no stdin; output counted
/// and discarded.
fn wasi_context(clock: Option<WallClock>) -> WasiCtx {
    let mut builder = WasiCtx::builder();
    builder
        .stdout(DiscardedOutput::named("stdout"))
        .stderr(DiscardedOutput::named("stderr"));
    if let Some(clock) = clock {
        builder.wall_clock(InjectedClock(clock));
    }
    builder.build()
}

/// A [`WallClock`] as the component's `wasi:clocks/wall-clock`.
struct InjectedClock(WallClock);

impl HostWallClock for InjectedClock {
    fn resolution(&self) -> Duration {
        Duration::from_millis(1)
    }

    fn now(&self) -> Duration {
        (self.0)().duration_since(UNIX_EPOCH).unwrap_or_default()
    }
}

fn sandbox_error(doing: &str, error: &dyn std::fmt::Display) -> ClaudeCodeAuthError {
    ClaudeCodeAuthError::Sandbox {
        message: format!("{doing} the {CONTRACT} component: {error}"),
    }
}

#[cfg(test)]
mod tests {
    use super::foreign_contract;

    #[test]
    fn contract_versions() {
        let cases = [
            ("entelix:claude-code-auth/provider@0.3.0", None),
            ("entelix:claude-code-auth/credential-store@0.3.7", None),
            (
                "entelix:claude-code-auth/provider@0.2.0",
                Some("entelix:claude-code-auth@0.2.0"),
            ),
            (
                "entelix:claude-code-auth/provider@0.4.0",
                Some("entelix:claude-code-auth@0.4.0"),
            ),
            (
                "entelix:claude-code-auth/credential-store@1.0.0",
                Some("entelix:claude-code-auth@1.0.0"),
            ),
            ("wasi:http/types@0.2.12", None),
            ("entelix:other/provider@9.0.0", None),
        ];
        for (name, want) in cases {
            assert_eq!(foreign_contract(name).as_deref(), want, "{name}");
        }
    }
}
