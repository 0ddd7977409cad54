//! The demo's token endpoint: one login, served on a loopback port with the real service's rules
//! for a refresh — a JSON body of fixed length, the CLI's client id, a scope, the refresh token
//! rotated on every grant, and the whole login revoked when a spent refresh token comes back.
//! (The tests use a stricter stand-in with faults on demand, in the unpublished testkit crate.)

use std::collections::HashSet;
use std::hash::{BuildHasher, RandomState};
use std::io;
use std::sync::{Arc, Mutex, PoisonError};

use entelix_auth_claude_code::defaults::CLAUDE_CODE_CLIENT_ID;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

const PATH: &str = "/v1/oauth/token";
/// Largest request head or body read.
const LIMIT: usize = 64 * 1024;

/// A loopback token endpoint holding one login; stops when dropped.
pub(super) struct DemoEndpoint {
    url: String,
    login: Arc<Mutex<Login>>,
    task: tokio::task::JoinHandle<()>,
}

/// The login's tokens, as the service keeps them.
#[derive(Default)]
struct Login {
    access: String,
    refresh: String,
    spent: HashSet<String>,
    revoked: bool,
    grants: usize,
}

impl DemoEndpoint {
    /// Listen on `127.0.0.1` with a fresh login.
    pub(super) async fn start() -> io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}{PATH}", listener.local_addr()?);
        let login = Arc::new(Mutex::new(Login {
            access: token("oat"),
            refresh: token("ort"),
            ..Login::default()
        }));
        let served = login.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let login = served.clone();
                tokio::spawn(async move {
                    let _ = serve(stream, &login).await;
                });
            }
        });
        Ok(Self { url, login, task })
    }

    /// The endpoint's URL.
    pub(super) fn url(&self) -> &str {
        &self.url
    }

    /// The login's current access and refresh tokens.
    pub(super) fn tokens(&self) -> (String, String) {
        let login = lock(&self.login);
        (login.access.clone(), login.refresh.clone())
    }

    /// How many refresh grants were answered.
    pub(super) fn grants(&self) -> usize {
        lock(&self.login).grants
    }
}

impl Drop for DemoEndpoint {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock(login: &Mutex<Login>) -> std::sync::MutexGuard<'_, Login> {
    login.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A token of the service's shape, random enough for a demo.
fn token(kind: &str) -> String {
    let state = RandomState::new();
    let (a, b) = (state.hash_one(1u8), state.hash_one(2u8));
    format!("sk-ant-{kind}01-{a:016x}{b:016x}")
}

/// Read one request from `stream` and answer it.
async fn serve(stream: TcpStream, login: &Mutex<Login>) -> io::Result<()> {
    let mut reader = BufReader::new(stream);
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let read = (&mut reader)
            .take((LIMIT - head.len()) as u64)
            .read_until(b'\n', &mut head)
            .await?;
        if read == 0 {
            return Ok(());
        }
    }
    let head = String::from_utf8_lossy(&head).to_lowercase();
    let header = |name: &str| {
        head.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
            .map(str::trim)
    };
    let length = header("content-length").and_then(|v| v.parse::<usize>().ok());
    let (status, body) = match length {
        _ if !head.starts_with(&format!("post {PATH} ")) => (404, json!({"error": "not_found"})),
        _ if header("content-type") != Some("application/json") => {
            invalid("invalid_request", "a JSON body is required")
        }
        Some(length) if length <= LIMIT => {
            let mut body = vec![0; length];
            reader.read_exact(&mut body).await?;
            grant(&serde_json::from_slice(&body).unwrap_or(Value::Null), login)
        }
        _ => invalid("invalid_request", "a body of fixed length is required"),
    };
    let body = body.to_string();
    let answer = format!(
        "HTTP/1.1 {status} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        if status == 200 { "OK" } else { "Error" },
        body.len()
    );
    reader.get_mut().write_all(answer.as_bytes()).await
}

fn invalid(code: &str, description: &str) -> (u16, Value) {
    (
        400,
        json!({"error": code, "error_description": description}),
    )
}

/// The service's answer to the refresh grant `request`.
fn grant(request: &Value, login: &Mutex<Login>) -> (u16, Value) {
    let text = |key: &str| request[key].as_str().unwrap_or_default();
    if text("grant_type") != "refresh_token" {
        return invalid("unsupported_grant_type", "only refresh_token is served");
    }
    if text("client_id") != CLAUDE_CODE_CLIENT_ID {
        return invalid("invalid_client", "unknown client");
    }
    if text("scope").is_empty() {
        return invalid("invalid_scope", "a scope is required");
    }
    let mut login = lock(login);
    let presented = text("refresh_token");
    if login.spent.contains(presented) {
        // A spent refresh token came back: someone holds a copy. The login is revoked.
        login.revoked = true;
    }
    if login.revoked || presented != login.refresh {
        return invalid("invalid_grant", "refresh token is invalid or revoked");
    }
    let spent = std::mem::replace(&mut login.refresh, token("ort"));
    login.spent.insert(spent);
    login.access = token("oat");
    login.grants += 1;
    (
        200,
        json!({
            "token_type": "Bearer",
            "access_token": login.access,
            "refresh_token": login.refresh,
            "expires_in": 28_800,
            "scope": text("scope"),
        }),
    )
}
