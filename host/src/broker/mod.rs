//! A broker's clients: a process inside a sandbox or container that should hold access tokens
//! only asks a broker on the host (`claude-code-auth serve --socket PATH`), which keeps the login
//! and refreshes it. [`BrokerClient`] speaks the [`protocol`]; [`BrokerProvider`] is the entelix
//! credential provider built on it.

mod client;
pub mod protocol;
mod provider;

pub use client::{BrokerClient, BrokerToken, DEFAULT_BROKER_TIMEOUT};
pub use provider::BrokerProvider;
