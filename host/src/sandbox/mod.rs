//! The wasmtime embedding: the component is compiled once per process; every call gets a fresh
//! store and instance, so nothing a call does (or a trap) can leak into the next.

mod cache;
mod http_policy;
mod state;
mod v0_1;

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use tokio::sync::OnceCell;
use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store, StoreLimitsBuilder};
use wasmtime_wasi::{HostWallClock, WasiCtx};
use wasmtime_wasi_http::WasiHttpCtx;

use crate::config::{ClaudeCodeOAuthConfig, WallClock};
use crate::error::{ClaudeCodeAuthError, ClaudeCodeAuthResult};
use crate::store::CredentialStore;

pub use cache::CACHE_DIR_ENV;
use http_policy::{HttpPolicy, Origin};
use state::HostState;
pub(crate) use state::LocalLock;
pub(crate) use v0_1::exports::entelix::claude_code_auth::provider as wit;
use v0_1::{PACKAGE, ProviderHost, ProviderHostPre};

/// The component, built from `guest/` by `build.rs`.
pub const COMPONENT_WASM: &[u8] = include_bytes!(env!("CLAUDE_CODE_AUTH_COMPONENT"));

/// Linear memory a call may use. The component needs about 1.1 MiB to start.
const MEMORY_LIMIT: usize = 16 << 20;

/// Added to the lock and refresh bounds for the rest of a call (instantiation, store I/O).
const CALL_SLACK: Duration = Duration::from_secs(5);

/// What one call needs besides the component.
pub(crate) struct CallContext {
    pub(crate) store: Arc<dyn CredentialStore>,
    pub(crate) local_lock: Arc<LocalLock>,
    pub(crate) config: ClaudeCodeOAuthConfig,
}

/// A call of one export, borrowed for the duration of the call.
pub(crate) type ExportCall<'a, T> =
    Pin<Box<dyn Future<Output = wasmtime::Result<Result<T, wit::AuthError>>> + Send + 'a>>;

/// The compiled component, shared by every provider in the process.
pub(crate) struct Sandbox {
    engine: Engine,
    pre: ProviderHostPre<HostState>,
}

static SHARED: OnceCell<Arc<Sandbox>> = OnceCell::const_new();

impl Sandbox {
    /// The process-wide sandbox, compiled on first use on a blocking thread.
    pub(crate) async fn shared() -> ClaudeCodeAuthResult<Arc<Self>> {
        SHARED
            .get_or_try_init(|| async {
                tokio::task::spawn_blocking(Self::compile)
                    .await
                    .map_err(|e| sandbox_error("compiling", &e))?
                    .map(Arc::new)
            })
            .await
            .cloned()
    }

    fn compile() -> ClaudeCodeAuthResult<Self> {
        let engine = Engine::new(&Config::new()).map_err(|e| sandbox_error("configuring", &e))?;
        let component = cache::load_or_compile(&engine, COMPONENT_WASM)
            .map_err(|e| sandbox_error("compiling", &e))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .and_then(|()| wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker))
            .and_then(|()| ProviderHost::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s))
            .map_err(|e| sandbox_error("linking", &e))?;
        let pre = linker
            .instantiate_pre(&component)
            .and_then(ProviderHostPre::new)
            .map_err(|e| sandbox_error("linking", &e))?;
        Ok(Self { engine, pre })
    }

    /// Run one export in a fresh instance, bounded in time, and turn its answer into this
    /// crate's error type.
    pub(crate) async fn call<T>(
        &self,
        ctx: &CallContext,
        export: impl for<'a> FnOnce(
            &'a ProviderHost,
            &'a mut Store<HostState>,
            &'a wit::Config,
        ) -> ExportCall<'a, T>,
    ) -> ClaudeCodeAuthResult<T> {
        let config = &ctx.config;
        let origin = Origin::of(&config.token_url).map_err(|reason| {
            ClaudeCodeAuthError::EndpointNotAllowed {
                url: config.token_url.clone(),
                reason,
            }
        })?;
        let limits = StoreLimitsBuilder::new()
            .memory_size(MEMORY_LIMIT)
            .trap_on_grow_failure(true)
            .build();
        let state = HostState {
            wasi: wasi_context(config.clock.clone()),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            policy: HttpPolicy::new(origin, config.refresh_timeout),
            limits,
            store: ctx.store.clone(),
            local_lock: ctx.local_lock.clone(),
            finished_seen: ctx.local_lock.finished(),
            lock_timeout: config.lock_timeout,
            store_error: None,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limits);
        let wit_config = wit::Config {
            token_url: config.token_url.clone(),
            client_id: config.client_id.clone(),
            expiry_skew_ms: millis(config.expiry_skew),
            timeout_ms: millis(config.refresh_timeout),
        };
        let bound = config.lock_timeout + config.refresh_timeout + CALL_SLACK;
        let run = async {
            let bindings = self.pre.instantiate_async(&mut store).await?;
            export(&bindings, &mut store, &wit_config).await
        };
        match tokio::time::timeout(bound, run).await {
            Err(_) => Err(ClaudeCodeAuthError::TimedOut { after: bound }),
            Ok(Err(trap)) => Err(sandbox_error("running", &trap)),
            Ok(Ok(Ok(value))) => Ok(value),
            Ok(Ok(Err(failure))) => Err(host_error(failure, store.data_mut(), config)),
        }
    }
}

/// No arguments, no environment, no preopened directory, no sockets, output discarded.
fn wasi_context(clock: Option<WallClock>) -> WasiCtx {
    let mut builder = WasiCtx::builder();
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

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn sandbox_error(doing: &str, error: &dyn std::fmt::Display) -> ClaudeCodeAuthError {
    ClaudeCodeAuthError::Sandbox {
        message: format!("{doing} the {PACKAGE} component: {error}"),
    }
}

/// The component's failure as this crate's error, preferring the typed store error or policy
/// refusal the host recorded over the component's one-line summary.
fn host_error(
    failure: wit::AuthError,
    state: &mut HostState,
    config: &ClaudeCodeOAuthConfig,
) -> ClaudeCodeAuthError {
    use wit::Cause;
    let (wit::AuthError::Missing(detail)
    | wit::AuthError::Expired(detail)
    | wit::AuthError::Refused(detail)
    | wit::AuthError::SourceUnreachable(detail)) = failure;
    let location = state.store.location();
    let recorded = state.store_error.take();
    let denied = state.policy.denied.take();
    let message = detail.message;
    match detail.cause {
        Cause::CredentialsMissing => ClaudeCodeAuthError::CredentialsMissing { path: location },
        Cause::OauthSectionMissing => ClaudeCodeAuthError::OAuthSectionMissing { path: location },
        Cause::RefreshTokenMissing => ClaudeCodeAuthError::RefreshTokenMissing,
        Cause::GrantRejected => ClaudeCodeAuthError::RefreshRejected { message },
        Cause::EndpointRefused => ClaudeCodeAuthError::RefreshRefused { message },
        Cause::EndpointUnavailable | Cause::AnswerInvalid => match denied {
            Some(reason) => ClaudeCodeAuthError::EndpointNotAllowed {
                url: config.token_url.clone(),
                reason,
            },
            None => ClaudeCodeAuthError::RefreshHttp { message },
        },
        Cause::DocumentInvalid => recorded.unwrap_or(ClaudeCodeAuthError::InvalidDocument {
            path: location,
            problem: message,
        }),
        Cause::LockTimeout => recorded.unwrap_or(ClaudeCodeAuthError::LockTimeout {
            lock: location,
            waited: config.lock_timeout,
        }),
        Cause::StoreFailed => recorded.unwrap_or_else(|| ClaudeCodeAuthError::Io {
            path: location,
            source: io::Error::other(message),
        }),
    }
}
