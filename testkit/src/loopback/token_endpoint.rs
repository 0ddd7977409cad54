//! A loopback OAuth token endpoint at least as strict as the real one: JSON only, in a body of
//! fixed length (`Content-Length`; a chunked body is refused, as fronts that read only
//! `Content-Length` do), the client id and `scope` required, the `claude-cli/…` user agent
//! blocked, the refresh token rotated on every grant, and a whole token family revoked when an
//! already-spent refresh token comes back.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::io;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use serde_json::{Map, Value, json};

use super::server::{Handler, LoopbackServer, Reply, Request, Response};

/// Path the endpoint answers on, as the real service does.
pub const TOKEN_PATH: &str = "/v1/oauth/token";

/// The `claude` CLI's OAuth client id, the one the real endpoint knows. Written out here, not
/// taken from the crate under test (see [`super::OAUTH_BETA`]).
pub const CLAUDE_CODE_CLIENT_ID: &str = "9d1c250a-e61b-44d9-88ed-5944d1962f5e";

/// Lifetime of issued access tokens unless configured otherwise (the service's is 8 hours).
pub const DEFAULT_ACCESS_TTL: Duration = Duration::from_secs(8 * 60 * 60);

/// Scopes granted to every token.
pub const GRANTED_SCOPE: &str = "user:inference user:profile user:sessions:claude_code";

/// A pair of tokens the endpoint issued.
#[derive(Clone, PartialEq, Eq)]
pub struct Issued {
    /// The access token.
    pub access_token: String,
    /// The refresh token.
    pub refresh_token: String,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Issued([redacted])")
    }
}

/// The endpoint's running state.
pub struct TokenEndpoint {
    server: LoopbackServer,
    state: Arc<Mutex<State>>,
    handler: Handler,
}

/// An edit of a successful answer's JSON object.
pub type Reshape = Box<dyn FnOnce(&mut Map<String, Value>) + Send>;

#[derive(Default)]
struct State {
    client_id: String,
    access_ttl: Duration,
    /// Refresh token -> family index, for current and spent tokens alike.
    refresh_tokens: HashMap<String, usize>,
    families: Vec<Family>,
    /// Access token -> (family, expiry).
    access_tokens: HashMap<String, (usize, SystemTime)>,
    grants_served: u64,
    requests: Vec<Request>,
    faults: VecDeque<Reply>,
    /// Edits applied to the next successful answers, in order (an odd but 2xx answer, after
    /// the refresh token was rotated).
    reshapes: VecDeque<Reshape>,
    /// Whether the original crate's form-encoded request is accepted too.
    accept_forms: bool,
    /// Range of the random delay before each normal answer.
    latency: Range<Duration>,
    /// Scopes this client may not ask for: a request naming one is refused with
    /// `invalid_scope`, before anything is rotated.
    refused_scopes: Vec<String>,
}

#[derive(Debug, Default)]
struct Family {
    current_refresh: String,
    spent: HashSet<String>,
    revoked: bool,
}

impl TokenEndpoint {
    /// Start an endpoint on a loopback port that expects the CLI's client id.
    pub async fn start() -> io::Result<Self> {
        Self::start_with(CLAUDE_CODE_CLIENT_ID, DEFAULT_ACCESS_TTL).await
    }

    /// Start an endpoint expecting `client_id` and issuing tokens that live `access_ttl`.
    pub async fn start_with(client_id: &str, access_ttl: Duration) -> io::Result<Self> {
        let state = Arc::new(Mutex::new(State {
            client_id: client_id.to_owned(),
            access_ttl,
            ..State::default()
        }));
        let handler_state = state.clone();
        let handler: Handler = Arc::new(move |request| lock(&handler_state).answer(request));
        let server = LoopbackServer::start(handler.clone()).await?;
        Ok(Self {
            server,
            state,
            handler,
        })
    }

    /// The endpoint URL (`http://127.0.0.1:<port>/v1/oauth/token`).
    pub fn url(&self) -> String {
        format!("{}{TOKEN_PATH}", self.server.base_url())
    }

    /// What answers requests, for serving the same endpoint elsewhere too (behind a
    /// TLS-terminating proxy, as `platform.claude.com`).
    pub fn handler(&self) -> Handler {
        self.handler.clone()
    }

    /// Open a new token family, as a login would, and return its first tokens.
    pub fn login(&self) -> Issued {
        lock(&self.state).open_family(None)
    }

    /// Open a new token family whose current refresh token is `refresh_token` (to serve a
    /// credential file written beforehand).
    pub fn accept_refresh_token(&self, refresh_token: &str) {
        lock(&self.state).open_family(Some(refresh_token));
    }

    /// Answer the next request with `reply` instead of the normal behaviour (queued in order).
    pub fn inject(&self, reply: Reply) {
        lock(&self.state).faults.push_back(reply);
    }

    /// Serve the next grant normally — rotating the refresh token — but pass its answer through
    /// `edit` first (drop `expires_in`, change `token_type`...): an odd 2xx the client must not
    /// throw away.
    pub fn reshape_next_grant(&self, edit: impl FnOnce(&mut Map<String, Value>) + Send + 'static) {
        lock(&self.state).reshapes.push_back(Box::new(edit));
    }

    /// Also accept what the original native crate (0.6.1) sends — a form-encoded body without a
    /// client id — which the real service no longer takes. For side-by-side benchmarks only.
    pub fn accept_forms(&self) {
        lock(&self.state).accept_forms = true;
    }

    /// Refuse, with `400 invalid_scope` and nothing rotated, every request that asks for
    /// `scope` (a scope the service does not grant this client, as for a login made before the
    /// scope existed).
    pub fn refuse_scope(&self, scope: &str) {
        lock(&self.state).refused_scopes.push(scope.to_owned());
    }

    /// Delay every normal answer by a random time in `range` (a slow network or service).
    pub fn set_latency(&self, range: Range<Duration>) {
        lock(&self.state).latency = range;
    }

    /// Refresh grants served successfully so far.
    pub fn grants_served(&self) -> u64 {
        lock(&self.state).grants_served
    }

    /// Token families revoked because a spent refresh token was reused.
    pub fn revoked_families(&self) -> usize {
        lock(&self.state)
            .families
            .iter()
            .filter(|f| f.revoked)
            .count()
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Request> {
        lock(&self.state).requests.clone()
    }

    /// Whether `token` is the refresh token the endpoint would honour now: the latest of a family
    /// that is not revoked.
    pub fn refresh_token_is_live(&self, token: &str) -> bool {
        let state = lock(&self.state);
        state.refresh_tokens.get(token).is_some_and(|&family| {
            let family = &state.families[family];
            !family.revoked && family.current_refresh == token
        })
    }

    /// Revoke the access token `token` before its expiry (a logout elsewhere, a key rotation):
    /// APIs that trust this endpoint refuse it from now on.
    pub fn revoke_access_token(&self, token: &str) {
        lock(&self.state).access_tokens.remove(token);
    }

    /// Whether `token` is an access token this endpoint issued, unexpired and not revoked.
    pub fn accepts_access_token(&self, token: &str) -> bool {
        lock(&self.state).accepts(token)
    }

    /// A shared check of access tokens, for an API server that trusts this endpoint.
    pub fn access_token_checker(&self) -> Arc<dyn Fn(&str) -> bool + Send + Sync> {
        let state = self.state.clone();
        Arc::new(move |token| lock(&state).accepts(token))
    }
}

impl std::fmt::Debug for TokenEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenEndpoint")
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A random-looking token with the service's prefixes.
fn mint(kind: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let hasher = RandomState::new();
    let (a, b) = (hasher.hash_one((n, 1)), hasher.hash_one((n, 2)));
    format!("sk-ant-{kind}01-{a:016x}{b:016x}")
}

/// The fields of an `application/x-www-form-urlencoded` body.
fn form_fields(body: &[u8]) -> Map<String, Value> {
    form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
        .collect()
}

fn oauth_error(status: u16, code: &str, description: &str) -> Reply {
    Reply::Respond(Response::json(
        status,
        &json!({"error": code, "error_description": description}),
    ))
}

fn api_error(status: u16, kind: &str, message: &str) -> Reply {
    Reply::Respond(Response::json(
        status,
        &json!({"type": "error", "error": {"type": kind, "message": message}}),
    ))
}

impl State {
    fn open_family(&mut self, refresh_token: Option<&str>) -> Issued {
        let index = self.families.len();
        let refresh = refresh_token.map_or_else(|| mint("ort"), str::to_owned);
        self.families.push(Family {
            current_refresh: refresh.clone(),
            ..Family::default()
        });
        self.refresh_tokens.insert(refresh.clone(), index);
        let access = self.issue_access(index);
        Issued {
            access_token: access,
            refresh_token: refresh,
        }
    }

    fn issue_access(&mut self, family: usize) -> String {
        let access = mint("oat");
        let expires = SystemTime::now() + self.access_ttl;
        self.access_tokens.insert(access.clone(), (family, expires));
        access
    }

    fn accepts(&self, token: &str) -> bool {
        self.access_tokens
            .get(token)
            .is_some_and(|(family, expires)| {
                !self.families[*family].revoked && SystemTime::now() < *expires
            })
    }

    fn answer(&mut self, request: &Request) -> Reply {
        self.requests.push(request.clone());
        if let Some(fault) = self.faults.pop_front() {
            return fault;
        }
        match self.decide(request) {
            Reply::Respond(response) if !self.latency.is_empty() => {
                let spread = self.latency.end - self.latency.start;
                let nanos = RandomState::new().hash_one(self.requests.len())
                    % u64::try_from(spread.as_nanos()).unwrap_or(u64::MAX);
                Reply::Delay(self.latency.start + Duration::from_nanos(nanos), response)
            }
            other => other,
        }
    }

    /// The answer to `request`, as strict as the real service: each check in its own step, the
    /// first that fails answers.
    fn decide(&mut self, request: &Request) -> Reply {
        let checked = Self::framing(request)
            .and_then(|()| self.body(request))
            .and_then(|body| self.presented_token(&body));
        match checked {
            Ok(presented) => self.rotate(&presented),
            Err(refusal) => refusal,
        }
    }

    /// The path, method, user agent and body framing the service takes.
    fn framing(request: &Request) -> Result<(), Reply> {
        if request.path.split('?').next() != Some(TOKEN_PATH) {
            return Err(api_error(404, "not_found_error", "Not found"));
        }
        if request.method != "POST" {
            return Err(api_error(
                405,
                "invalid_request_error",
                "Method not allowed",
            ));
        }
        if request
            .header("user-agent")
            .is_some_and(|ua| ua.starts_with("claude-cli/"))
        {
            return Err(api_error(403, "permission_error", "Request blocked"));
        }
        // Fronts that read only `Content-Length` see a chunked body as empty.
        let chunked = request
            .header("transfer-encoding")
            .is_some_and(|te| te.to_ascii_lowercase().contains("chunked"));
        let length = request
            .header("content-length")
            .and_then(|v| v.parse::<usize>().ok());
        if chunked || length != Some(request.body.len()) {
            return Err(api_error(
                400,
                "invalid_request_error",
                "Invalid request format: a body of fixed length (Content-Length) is required",
            ));
        }
        Ok(())
    }

    /// The request's fields: a JSON object (or a form, where forms are accepted).
    fn body(&self, request: &Request) -> Result<Map<String, Value>, Reply> {
        let content_type = request.header("content-type").unwrap_or_default();
        if content_type.starts_with("application/json") {
            let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(&request.body) else {
                return Err(api_error(
                    400,
                    "invalid_request_error",
                    "The request body is not valid JSON",
                ));
            };
            Ok(body)
        } else if self.accept_forms && content_type.starts_with("application/x-www-form-urlencoded")
        {
            Ok(form_fields(&request.body))
        } else {
            Err(api_error(
                400,
                "invalid_request_error",
                "Content-Type must be application/json",
            ))
        }
    }

    /// The refresh token a well-formed grant presents.
    fn presented_token(&self, body: &Map<String, Value>) -> Result<String, Reply> {
        let text = |key: &str| body.get(key).and_then(Value::as_str);
        if text("grant_type") != Some("refresh_token") {
            return Err(oauth_error(
                400,
                "unsupported_grant_type",
                "Only refresh_token is supported",
            ));
        }
        let client_ok = match text("client_id") {
            Some(id) => id == self.client_id,
            None => self.accept_forms,
        };
        if !client_ok {
            return Err(oauth_error(
                401,
                "invalid_client",
                "Client authentication failed",
            ));
        }
        let Some(presented) = text("refresh_token") else {
            return Err(oauth_error(400, "invalid_request", "Missing refresh_token"));
        };
        // Public reports say the service answers this to a refresh without `scope`.
        if text("scope").is_none_or(str::is_empty) && !self.accept_forms {
            return Err(api_error(
                400,
                "invalid_request_error",
                "Invalid request format",
            ));
        }
        let asked = text("scope").unwrap_or_default();
        if asked
            .split(' ')
            .any(|scope| self.refused_scopes.iter().any(|refused| refused == scope))
        {
            return Err(oauth_error(
                400,
                "invalid_scope",
                "The requested scope is invalid, unknown, or malformed",
            ));
        }
        Ok(presented.to_owned())
    }

    /// A grant for `presented`: rotated if it is its family's current token; a replayed one
    /// revokes the family.
    fn rotate(&mut self, presented: &str) -> Reply {
        let Some(&index) = self.refresh_tokens.get(presented) else {
            return oauth_error(400, "invalid_grant", "Refresh token not found or invalid");
        };
        let family = &mut self.families[index];
        if family.revoked {
            return oauth_error(400, "invalid_grant", "Refresh token has been revoked");
        }
        if family.current_refresh != presented {
            // Reuse of a rotated token: somebody replayed it. Revoke everything issued from it.
            family.revoked = true;
            return oauth_error(
                400,
                "invalid_grant",
                "Refresh token reuse detected; the token family is revoked",
            );
        }
        let rotated = mint("ort");
        family.spent.insert(presented.to_owned());
        family.current_refresh = rotated.clone();
        self.refresh_tokens.insert(rotated.clone(), index);
        let access = self.issue_access(index);
        self.grants_served += 1;
        let mut answer = json!({
            "token_type": "Bearer",
            "access_token": access,
            "expires_in": self.access_ttl.as_secs(),
            "refresh_token": rotated,
            "scope": GRANTED_SCOPE,
            "account": {"uuid": "00000000-0000-4000-8000-000000000001", "email_address": "demo@example.com"},
            "organization": {"uuid": "00000000-0000-4000-8000-000000000002", "name": "Demo"},
        });
        if let (Some(edit), Value::Object(fields)) = (self.reshapes.pop_front(), &mut answer) {
            edit(fields);
        }
        Reply::Respond(Response::json(200, &answer))
    }
}

#[cfg(test)]
mod tests {
    use super::form_fields;

    #[test]
    fn form_bodies_are_decoded() {
        let fields = form_fields(b"grant_type=refresh_token&refresh_token=a%2Bb+c%3D&empty=");
        assert_eq!(fields["grant_type"], "refresh_token");
        assert_eq!(fields["refresh_token"], "a+b c=");
        assert_eq!(fields["empty"], "");
    }
}
