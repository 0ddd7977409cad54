//! Local stand-ins for the services the provider talks to: a token endpoint at least as strict as
//! the real one and an Anthropic-shaped Messages API. Both listen on `127.0.0.1` only and stop
//! when dropped.

mod messages_api;
mod server;
mod token_endpoint;

pub use messages_api::{MESSAGES_PATH, MessagesApi, OAUTH_BETA, TokenCheck};
pub use server::{Handler, LoopbackServer, Reply, Request, Response, serve};
pub use token_endpoint::{
    CLAUDE_CODE_CLIENT_ID, DEFAULT_ACCESS_TTL, GRANTED_SCOPE, Issued, TOKEN_PATH, TokenEndpoint,
};
