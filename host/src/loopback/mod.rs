//! Local stand-ins for the services the provider talks to, used by `claude-code-auth demo` and by
//! the tests: a token endpoint that behaves like the real one and an Anthropic-shaped Messages
//! API. Both listen on `127.0.0.1` only and stop when dropped.

mod messages_api;
mod server;
mod token_endpoint;

pub use messages_api::{MESSAGES_PATH, MessagesApi, TokenCheck};
pub use server::{Handler, LoopbackServer, Reply, Request, Response, serve};
pub use token_endpoint::{DEFAULT_ACCESS_TTL, GRANTED_SCOPE, Issued, TOKEN_PATH, TokenEndpoint};
