//! A plugin host for `claude_code_auth.wasm` built on nothing but wasmtime, wasmtime-wasi,
//! wasmtime-wasi-http and the WIT files in `wit/`: the shortest complete embedding, meant to be
//! copied. It supplies the `credential-store` import from memory (or leaves it to a component
//! that carries its own store), lets the component reach only the token endpoint, and calls
//! `resolve`.

use std::path::Path;
use std::sync::{Arc, Mutex};

use tokio::sync::OwnedMutexGuard;
use wasmtime::component::{Component, HasSelf, Linker, Resource, ResourceTable};
use wasmtime::{Engine, Store};
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{
    Error as HttpError, RequestOptions, Result as HttpResult, WasiBody, WasiHttpCtx,
    WasiHttpCtxView, WasiHttpHooks, WasiHttpView,
};

/// Bindings generated from `wit/` (the world a host binds: the store import, the provider
/// export); `wasi:*` is added to the linker by wasmtime-wasi and wasmtime-wasi-http.
#[allow(missing_docs)]
pub mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "entelix:claude-code-auth/provider-host@0.3.0",
        imports: { default: async },
        exports: { default: async },
        with: { "entelix:claude-code-auth/credential-store.refresh-lock": super::Held },
    });
}

use bindings::ProviderHostPre;
use bindings::entelix::claude_code_auth::credential_store::{self, Kept, StoreError};
pub use bindings::exports::entelix::claude_code_auth::provider::{AuthError, Config, Header};

/// The credential document, kept by this host in memory.
#[derive(Clone, Default)]
pub struct MemoryStore {
    document: Arc<Mutex<Option<String>>>,
    lock: Arc<tokio::sync::Mutex<()>>,
}

impl MemoryStore {
    /// A store holding `document`.
    pub fn holding(document: &str) -> Self {
        let store = Self::default();
        *store.document.lock().unwrap_or_else(|e| e.into_inner()) = Some(document.to_owned());
        store
    }

    /// The document now.
    pub fn document(&self) -> Option<String> {
        self.document
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// A held refresh lock; the component drops it to release it.
pub struct Held(#[allow(dead_code)] OwnedMutexGuard<()>);

/// Lets the component reach one authority (`host:port`) and nothing else.
pub struct OnlyAuthority(pub String);

impl WasiHttpHooks for OnlyAuthority {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _: Box<dyn Future<Output = HttpResult<()>> + Send>,
    ) -> Box<
        dyn Future<
                Output = HttpResult<(
                    http::Response<WasiBody>,
                    Box<dyn Future<Output = HttpResult<()>> + Send>,
                )>,
            > + Send,
    > {
        let allowed = request.uri().authority().map(|a| a.as_str()) == Some(self.0.as_str());
        Box::new(async move {
            if !allowed {
                return Err(HttpError::HttpRequestDenied);
            }
            use http_body_util::BodyExt;
            let (response, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            Ok((
                response.map(BodyExt::boxed_unsync),
                Box::new(io) as Box<dyn Future<Output = HttpResult<()>> + Send>,
            ))
        })
    }
}

/// What a call's `Store` holds.
pub struct State {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    hooks: OnlyAuthority,
    store: MemoryStore,
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for State {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

impl credential_store::Host for State {
    async fn load(&mut self) -> Result<String, StoreError> {
        self.store.document().ok_or(StoreError::NotFound)
    }

    async fn lock(&mut self) -> Result<Resource<Held>, StoreError> {
        let guard = self.store.lock.clone().lock_owned().await;
        self.table
            .push(Held(guard))
            .map_err(|e| StoreError::Unavailable(e.to_string()))
    }
}

/// A memory store needs nothing prepared and no write lock beyond the refresh lock.
impl credential_store::HostRefreshLock for State {
    async fn prepare(&mut self, _: Resource<Held>, _size: u64) -> Result<(), StoreError> {
        Ok(())
    }

    async fn load_for_write(&mut self, _: Resource<Held>) -> Result<String, StoreError> {
        self.store.document().ok_or(StoreError::NotFound)
    }

    async fn commit(&mut self, _: Resource<Held>, document: String) -> Result<Kept, StoreError> {
        *self
            .store
            .document
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(document);
        Ok(Kept::Stored)
    }

    async fn drop(&mut self, lock: Resource<Held>) -> wasmtime::Result<()> {
        self.table.delete(lock)?;
        Ok(())
    }
}

/// A loaded component, ready to call.
pub struct PluginHost {
    engine: Engine,
    pre: ProviderHostPre<State>,
}

impl PluginHost {
    /// Load a component that imports `credential-store`: this host supplies it.
    pub fn with_own_store(wasm: &[u8]) -> wasmtime::Result<Self> {
        Self::load(wasm, true)
    }

    /// Load a component that carries its own store (the refresh component composed with a store
    /// component): it imports only `wasi:*`.
    pub fn with_store_inside(wasm: &[u8]) -> wasmtime::Result<Self> {
        Self::load(wasm, false)
    }

    fn load(wasm: &[u8], supply_store: bool) -> wasmtime::Result<Self> {
        let engine = Engine::default();
        let component = Component::new(&engine, wasm)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
        if supply_store {
            credential_store::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state)?;
        }
        // Checks every import and the export now: a component for another version of the
        // contract fails here, not at its first call.
        let pre = ProviderHostPre::new(linker.instantiate_pre(&component)?)?;
        Ok(Self { engine, pre })
    }

    /// Call `resolve` in a fresh instance. `credentials_dir` is preopened at `/credentials` for
    /// a component that keeps its own file there; `endpoint` (`host:port`) is all it may reach.
    pub async fn resolve(
        &self,
        store: MemoryStore,
        credentials_dir: Option<&Path>,
        endpoint: &str,
        config: &Config,
    ) -> wasmtime::Result<Result<Header, AuthError>> {
        let mut wasi = WasiCtx::builder();
        if let Some(dir) = credentials_dir {
            wasi.preopened_dir(dir, "/credentials", FsPerms::ReadWrite)?;
        }
        let state = State {
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            hooks: OnlyAuthority(endpoint.to_owned()),
            store,
        };
        let mut store = Store::new(&self.engine, state);
        let bindings = self.pre.instantiate_async(&mut store).await?;
        bindings
            .entelix_claude_code_auth_provider()
            .call_resolve(&mut store, config)
            .await
    }
}
