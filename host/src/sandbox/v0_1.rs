//! Bindings for `entelix:claude-code-auth@0.1.0`. One module per WIT version: a host that speaks
//! a future 0.2 adds `v0_2.rs` beside this one.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "entelix:claude-code-auth/provider-host@0.1.0",
    imports: { default: async },
    exports: { default: async },
    with: {
        "entelix:claude-code-auth/credential-store.refresh-lock": super::state::HeldLock,
    },
});

/// The WIT package this module binds, for messages.
pub(crate) const PACKAGE: &str = "entelix:claude-code-auth@0.1.0";
