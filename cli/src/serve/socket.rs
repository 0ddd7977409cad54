//! The broker's socket: HTTP/1.1 over a Unix socket, one request per connection. The socket is
//! made in a private directory and renamed into place with its mode already set (0600, or 0660
//! for `--socket-group`), so no one connects before its permissions hold; every connection's
//! peer is checked (`SO_PEERCRED`) against the allowed uids before anything else. Heads, bodies
//! and time are bounded (a slow client is dropped, never waited on), connections are capped, and
//! no answer ever carries a refresh token — the broker never has one to give: it asks the
//! provider for access tokens only.

use std::convert::Infallible;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use entelix_auth_claude_code::ClaudeCodeAuthError;
use entelix_auth_claude_code::broker::protocol::{
    ErrorAnswer, HEADER_PATH, HeaderAnswer, MAX_BODY_BYTES, MAX_HEAD_BYTES, REFRESH_PATH,
    RefreshAsk, STATUS_PATH, TOKEN_PATH, TokenAnswer, reaction_word,
};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use secrecy::ExposeSecret;
use tokio::sync::{Notify, Semaphore};

use super::broker::Broker;

/// How long a client may take to send its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a client may take to send its body once the head is in.
const BODY_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest a connection lives: a request that waits for a refresh (its lock wait and
/// budget) and its answer.
const CONNECTION_LIMIT: Duration = Duration::from_secs(90);
/// Connections served at once; more are closed at once.
const MAX_CONNECTIONS: usize = 512;

/// The bound socket, removed at the end if it is still ours.
pub(super) struct Socket {
    listener: tokio::net::UnixListener,
    path: PathBuf,
    /// `(dev, ino)` of the socket file we made.
    identity: (u64, u64),
}

impl Socket {
    /// Listen at `path`: 0600, or 0660 owned by `group`. A stale socket there (nobody
    /// listening) is replaced; a live one, or anything that is not a socket, is refused.
    pub(super) fn bind(path: &Path, group: Option<u32>) -> Result<Self, String> {
        let shown = path.display();
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            if !meta.file_type().is_socket() {
                return Err(format!(
                    "{shown} exists and is not a socket; refusing to replace it"
                ));
            }
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(format!("{shown}: another broker is listening there"));
            }
            std::fs::remove_file(path).map_err(|e| format!("{shown}: {e}"))?;
        }
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let staging = parent.join(format!(".ccauth-broker-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&staging);
        std::fs::DirBuilder::new()
            .mode_private()
            .create(&staging)
            .map_err(|e| format!("{}: {e}", staging.display()))?;
        // Bound under a private name, given its mode, then renamed into place: a bound socket
        // keeps listening under its new name, and no one could connect before the mode held.
        let made = (|| -> io::Result<(std::os::unix::net::UnixListener, (u64, u64))> {
            let temp = staging.join("s");
            let listener = std::os::unix::net::UnixListener::bind(&temp)?;
            let mode = if group.is_some() { 0o660 } else { 0o600 };
            std::fs::set_permissions(&temp, std::fs::Permissions::from_mode(mode))?;
            if let Some(gid) = group {
                std::os::unix::fs::chown(&temp, None, Some(gid))?;
            }
            std::fs::rename(&temp, path)?;
            let meta = std::fs::symlink_metadata(path)?;
            Ok((listener, (meta.dev(), meta.ino())))
        })();
        let _ = std::fs::remove_dir_all(&staging);
        let (listener, identity) = made.map_err(|e| format!("cannot listen at {shown}: {e}"))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| format!("{shown}: {e}"))?;
        let listener =
            tokio::net::UnixListener::from_std(listener).map_err(|e| format!("{shown}: {e}"))?;
        Ok(Self {
            listener,
            path: path.to_path_buf(),
            identity,
        })
    }

    /// Remove the socket file, if it is still the one we made.
    pub(super) fn remove(&self) {
        if std::fs::symlink_metadata(&self.path)
            .is_ok_and(|meta| (meta.dev(), meta.ino()) == self.identity)
        {
            let _ = std::fs::remove_file(&self.path);
        }
    }

    /// Serve until `shutdown` is notified.
    pub(super) async fn serve(
        &self,
        broker: Arc<Broker>,
        allowed: Arc<Vec<u32>>,
        shutdown: &Notify,
    ) {
        let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        loop {
            let accepted = tokio::select! {
                accepted = self.listener.accept() => accepted,
                () = shutdown.notified() => return,
            };
            let Ok((stream, _)) = accepted else {
                // Out of descriptors, say: do not spin.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                drop(stream);
                continue;
            };
            let (broker, allowed) = (broker.clone(), allowed.clone());
            tokio::spawn(async move {
                let peer = stream.peer_cred().ok().map(|cred| cred.uid());
                let permitted = peer.is_some_and(|uid| allowed.contains(&uid));
                let service = hyper::service::service_fn(move |request| {
                    let broker = broker.clone();
                    async move { Ok::<_, Infallible>(answer(request, &broker, permitted, peer).await) }
                });
                let connection = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEAD_TIMEOUT)
                    .max_buf_size(MAX_HEAD_BYTES)
                    .keep_alive(false)
                    .serve_connection(TokioIo::new(stream), service);
                let _ = tokio::time::timeout(CONNECTION_LIMIT, connection).await;
                drop(slot);
            });
        }
    }
}

/// `DirBuilder` with mode 0700.
trait PrivateDir {
    fn mode_private(&mut self) -> &mut Self;
}

impl PrivateDir for std::fs::DirBuilder {
    fn mode_private(&mut self) -> &mut Self {
        use std::os::unix::fs::DirBuilderExt;
        self.mode(0o700)
    }
}

type Answer = Response<Full<Bytes>>;

fn json(status: StatusCode, body: &impl serde::Serialize) -> Answer {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::CACHE_CONTROL, "no-store")
        .body(Full::new(Bytes::from(bytes)))
        .unwrap_or_default()
}

fn refusal(status: StatusCode, error: &str, message: impl Into<String>) -> Answer {
    json(
        status,
        &ErrorAnswer {
            error: error.into(),
            message: message.into(),
        },
    )
}

/// The login's failure: 503 with its reaction's word.
fn failed(error: &ClaudeCodeAuthError) -> Answer {
    refusal(
        StatusCode::SERVICE_UNAVAILABLE,
        reaction_word(error.reaction()),
        error.to_string(),
    )
}

/// The answer to `request` from `peer` (`permitted` or not by `--allow-uid`).
async fn answer(
    request: Request<Incoming>,
    broker: &Broker,
    permitted: bool,
    peer: Option<u32>,
) -> Answer {
    if !permitted {
        return refusal(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "uid {} may not use this broker (see --allow-uid)",
                peer.map_or_else(|| "unknown".into(), |uid| uid.to_string())
            ),
        );
    }
    let path = request.uri().path().to_owned();
    let method = request.method().clone();
    let known = [TOKEN_PATH, HEADER_PATH, STATUS_PATH, REFRESH_PATH];
    match (method, path.as_str()) {
        (Method::GET, TOKEN_PATH) => token(broker).await,
        (Method::GET, HEADER_PATH) => header(broker).await,
        (Method::GET, STATUS_PATH) => match broker.provider().status().await {
            Ok(status) => json(StatusCode::OK, &status),
            Err(error) => failed(&error),
        },
        (Method::POST, REFRESH_PATH) => refresh(request, broker).await,
        (_, path) if known.contains(&path) => refusal(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!(
                "{path} takes {}",
                if path == REFRESH_PATH { "POST" } else { "GET" }
            ),
        ),
        (_, path) => refusal(
            StatusCode::NOT_FOUND,
            "not_found",
            format!(
                "no {} here; ask {TOKEN_PATH}, {HEADER_PATH}, {STATUS_PATH} or {REFRESH_PATH}",
                path.chars().take(64).collect::<String>()
            ),
        ),
    }
}

/// `GET /v1/token`.
async fn token(broker: &Broker) -> Answer {
    match broker.current().await {
        Ok(current) => json(
            StatusCode::OK,
            &TokenAnswer {
                access_token: current.token.expose_secret().to_owned(),
                expires_at: current.status.expires_at_ms,
                refreshed: None,
            },
        ),
        Err(error) => failed(&error),
    }
}

/// `GET /v1/header`.
async fn header(broker: &Broker) -> Answer {
    match broker.current().await {
        Ok(current) => json(
            StatusCode::OK,
            &HeaderAnswer {
                name: "Authorization".into(),
                value: format!("Bearer {}", current.token.expose_secret()),
                expires_at: current.status.expires_at_ms,
            },
        ),
        Err(error) => failed(&error),
    }
}

/// `POST /v1/refresh`: the token the asker's 401 refused is replaced, once however many ask.
async fn refresh(request: Request<Incoming>, broker: &Broker) -> Answer {
    let ask = match read_ask(request).await {
        Ok(ask) => ask,
        Err(refused) => return *refused,
    };
    match broker.replace(&ask.rejected).await {
        Ok((current, refreshed)) => json(
            StatusCode::OK,
            &TokenAnswer {
                access_token: current.token.expose_secret().to_owned(),
                expires_at: current.status.expires_at_ms,
                refreshed: Some(refreshed),
            },
        ),
        Err(error) => failed(&error),
    }
}

/// The body of `POST /v1/refresh`: at most [`MAX_BODY_BYTES`], in [`BODY_TIMEOUT`], naming a
/// SHA-256 hex digest. (The refusal boxed: a response is large for an `Err`.)
async fn read_ask(request: Request<Incoming>) -> Result<RefreshAsk, Box<Answer>> {
    let collected = tokio::time::timeout(
        BODY_TIMEOUT,
        Limited::new(request.into_body(), MAX_BODY_BYTES).collect(),
    )
    .await
    .map_err(|_| {
        Box::new(refusal(
            StatusCode::REQUEST_TIMEOUT,
            "timeout",
            "the body came too slowly",
        ))
    })?
    .map_err(|_| {
        Box::new(refusal(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("a body of at most {MAX_BODY_BYTES} bytes"),
        ))
    })?
    .to_bytes();
    let bad = || {
        Box::new(refusal(
            StatusCode::BAD_REQUEST,
            "bad_request",
            r#"the body is {"rejected": "<sha256 hex of the access token a 401 rejected>"}"#,
        ))
    };
    let ask: RefreshAsk = serde_json::from_slice(&collected).map_err(|_| bad())?;
    let digest = &ask.rejected;
    if digest.len() != 64
        || !digest
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    {
        return Err(bad());
    }
    Ok(ask)
}
