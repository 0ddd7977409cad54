//! # entelix-auth-claude-code
//!
//! Drive the entelix agent SDK with the Claude.ai subscription credential the `claude` CLI
//! already keeps (`~/.claude/.credentials.json`, or under `$CLAUDE_CONFIG_DIR`, or the macOS
//! keychain; [`ClaudeCliLogin`] finds it as the CLI does), instead of an
//! API key. The access token is refreshed with the OAuth2 `refresh_token` grant before it expires
//! and written back, so the CLI and this crate share one state.
//!
//! The refresh logic runs in a sandboxed WebAssembly component (`wasm32-wasip2`, built from
//! `guest/` and embedded in this crate): it can reach the credential store and the token endpoint
//! through its imports and nothing else. This crate embeds it with wasmtime and implements
//! `entelix_core::auth::CredentialProvider` by calling it.
//!
//! ```no_run
//! use entelix_auth_claude_code::{
//!     CLAUDE_CODE_BETA, ClaudeCliLogin, ClaudeCodeOAuthProvider, OAUTH_BETA,
//! };
//! use entelix_core::ir::{AnthropicExt, ProviderExtensions};
//!
//! # fn main() -> Result<(), entelix_auth_claude_code::ClaudeCodeAuthError> {
//! // The login the `claude` CLI would use: its token variable, the macOS keychain, or the file.
//! let provider = ClaudeCodeOAuthProvider::new(ClaudeCliLogin::find()?.into_store());
//! // The provider supplies `Authorization`; requests also need both betas:
//! let extensions = ProviderExtensions::default()
//!     .with_anthropic(AnthropicExt::default().with_betas([CLAUDE_CODE_BETA, OAUTH_BETA]));
//! # let _ = (provider, extensions);
//! # Ok(())
//! # }
//! ```
//!
//! Layout: [`ClaudeCodeOAuthProvider`] over a [`CredentialStore`] ([`ClaudeCliLogin`]'s,
//! [`FileCredentialStore`], [`KeychainCredentialStore`], [`MemoryCredentialStore`], or your own), configured by [`ClaudeCodeOAuthConfig`].
//! The `claude-code-auth` command line (crate `claude-code-auth`) is built on the same pieces.

// Unit tests panic to report failure.
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod broker;
mod config;
mod credential;
mod drain;
mod error;
mod files;
mod header_cache;
mod provider;
mod sandbox;
mod secret;
mod status;
mod stop;
mod store;
mod time;
mod tls;
mod transport;

pub use broker::{BrokerClient, BrokerProvider, BrokerToken};
// The original crate's constants stay here; every default is in [`defaults`].
pub use config::{
    CLAUDE_CODE_BETA, ClaudeCodeOAuthConfig, DEFAULT_REFRESH_TIMEOUT, DEFAULT_TOKEN_URL,
    OAUTH_BETA, ProxySetting, WallClock,
};
pub use credential::{CredentialFile, OAuthCredential};
pub use error::{ClaudeCodeAuthError, ClaudeCodeAuthResult, JsonError, Reaction};
pub use provider::ClaudeCodeOAuthProvider;
pub use sandbox::{COMPONENT_WASM, ProviderComponent};
pub use secret::SecretToken;
pub use status::{RefreshMode, RefreshOutcome, RefreshReport, TokenStatus};
pub use store::{
    ClaudeCliLogin, ClaudeCliSource, CredentialStore, EnvTokenStore, FileCredentialStore,
    Fingerprint, HeldLock, KeychainCredentialStore, MemoryCredentialStore, RefreshLock, SendCheck,
};
#[cfg(feature = "redis")]
pub use store::{RedisCredentialStore, RedisStoreBuilder};
pub use transport::{AuthorizationSource, RefreshOnUnauthorized};

#[cfg(test)]
mod test_support;

/// The values [`ClaudeCodeOAuthConfig`] and the stores start from, and the `claude` CLI's own
/// names and numbers this crate uses.
pub mod defaults {
    pub use crate::config::{
        CLAUDE_CODE_CLIENT_ID, DEFAULT_BETWEEN_BYTES_TIMEOUT, DEFAULT_CONNECT_TIMEOUT,
        DEFAULT_EXPIRY_SKEW, DEFAULT_FIRST_BYTE_TIMEOUT, DEFAULT_FUEL, DEFAULT_LOCK_TIMEOUT,
        DEFAULT_MAX_ANSWER_BYTES, DEFAULT_MEMORY_LIMIT, DEFAULT_REFRESH_TIMEOUT, DEFAULT_TOKEN_URL,
        DEFAULT_USER_AGENT,
    };
    pub use crate::status::LOGIN_WARNING;
    pub use crate::store::KEYCHAIN_SERVICE;
    #[cfg(feature = "redis")]
    pub use crate::store::{DEFAULT_STORE_KEY, STORE_SECRET_LEN};
}

/// The environment variables this crate reads (the `claude` CLI's and its own).
pub mod env {
    pub use crate::sandbox::CACHE_DIR_ENV;
    pub use crate::store::{
        CONFIG_DIR_ENV, OAUTH_TOKEN_ENV, SECURE_STORAGE_DIR_ENV, STATE_DIR_ENV,
    };
}
