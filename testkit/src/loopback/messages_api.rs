//! A loopback stand-in for the Anthropic Messages API that accepts only what the real one
//! accepts from an OAuth client: a bearer token issued by the token endpoint, the
//! `oauth-2025-04-20` beta, an `anthropic-version`, and a well-formed body. It answers a
//! `"stream": true` request with server-sent events, as the real one does.

use std::io;
use std::sync::{Arc, Mutex, PoisonError};

use serde_json::{Value, json};

use super::server::{Handler, LoopbackServer, Reply, Request, Response};

/// Path of the Messages API.
pub const MESSAGES_PATH: &str = "/v1/messages";

/// The beta the service requires of requests made with a subscription's OAuth token. Written out
/// here, not taken from the crate under test: a stand-in that shared the client's constant
/// would agree with it even when both are wrong.
pub const OAUTH_BETA: &str = "oauth-2025-04-20";

/// Decides whether a bearer token is valid.
pub type TokenCheck = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// The running API.
pub struct MessagesApi {
    server: LoopbackServer,
    seen: Arc<Mutex<Vec<Request>>>,
    handler: Handler,
}

impl std::fmt::Debug for MessagesApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessagesApi")
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

impl MessagesApi {
    /// Start the API; `accepts` validates bearer tokens (see
    /// [`super::TokenEndpoint::access_token_checker`]).
    pub async fn start(accepts: TokenCheck) -> io::Result<Self> {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        let handler: Handler = Arc::new(move |request: &Request| {
            record
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(request.clone());
            answer(request, &*accepts)
        });
        Ok(Self {
            server: LoopbackServer::start(handler.clone()).await?,
            seen,
            handler,
        })
    }

    /// What answers requests, for serving the same API elsewhere too (behind a
    /// TLS-terminating proxy, as `api.anthropic.com`).
    pub fn handler(&self) -> Handler {
        self.handler.clone()
    }

    /// `http://127.0.0.1:<port>`: the base URL a transport appends `/v1/messages` to.
    pub fn base_url(&self) -> String {
        self.server.base_url()
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Request> {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

fn error(status: u16, kind: &str, message: &str) -> Reply {
    Reply::Respond(Response::json(
        status,
        &json!({"type": "error", "error": {"type": kind, "message": message}}),
    ))
}

fn answer(request: &Request, accepts: &dyn Fn(&str) -> bool) -> Reply {
    if request.method != "POST" || request.path.split('?').next() != Some(MESSAGES_PATH) {
        return error(404, "not_found_error", "Not found");
    }
    let Some(token) = request
        .header("authorization")
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return error(401, "authentication_error", "x-api-key header is required");
    };
    if !accepts(token) {
        return error(401, "authentication_error", "Invalid bearer token");
    }
    let betas = request.header("anthropic-beta").unwrap_or_default();
    if !betas.split(',').any(|b| b.trim() == OAUTH_BETA) {
        return error(
            401,
            "authentication_error",
            "OAuth authentication is currently not supported.",
        );
    }
    if request.header("anthropic-version").is_none() {
        return error(
            400,
            "invalid_request_error",
            "anthropic-version: header is required",
        );
    }
    let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(&request.body) else {
        return error(
            400,
            "invalid_request_error",
            "The request body is not valid JSON",
        );
    };
    let (Some(model), Some(Value::Array(_))) = (
        body.get("model").and_then(Value::as_str),
        body.get("messages"),
    ) else {
        return error(
            400,
            "invalid_request_error",
            "model and messages are required",
        );
    };
    if body.get("stream").and_then(Value::as_bool) == Some(true) {
        return Reply::Respond(Response::raw(200, "text/event-stream", events(model)));
    }
    Reply::Respond(Response::json(
        200,
        &json!({
            "id": "msg_loopback_01",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": REPLY}],
            "stop_reason": "end_turn",
            "stop_sequence": null,
            "usage": {"input_tokens": 12, "output_tokens": 9},
        }),
    ))
}

/// What the stand-in says.
const REPLY: &str = "Hello from the loopback Messages API.";

/// The streamed form of the same answer.
fn events(model: &str) -> String {
    let events = [
        (
            "message_start",
            json!({"type": "message_start", "message": {"id": "msg_loopback_01", "type": "message", "role": "assistant", "model": model, "content": [], "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 12, "output_tokens": 1}}}),
        ),
        (
            "content_block_start",
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ),
        (
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": REPLY}}),
        ),
        (
            "content_block_stop",
            json!({"type": "content_block_stop", "index": 0}),
        ),
        (
            "message_delta",
            json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": 9}}),
        ),
        ("message_stop", json!({"type": "message_stop"})),
    ];
    events
        .iter()
        .map(|(name, data)| format!("event: {name}\ndata: {data}\n\n"))
        .collect()
}
