//! [`BrokerClient`]: one request to a broker over its Unix socket, one connection each, the
//! answer bounded in size and time.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
#[cfg(unix)]
use http_body_util::{BodyExt, Full, Limited};
#[cfg(unix)]
use hyper_util::rt::TokioIo;
use secrecy::SecretString;

use crate::error::{ClaudeCodeAuthError, ClaudeCodeAuthResult, Reaction};
use crate::status::TokenStatus;

#[cfg(unix)]
use super::protocol::{ErrorAnswer, MAX_ANSWER_BYTES, reaction_of};
use super::protocol::{
    HEADER_PATH, HeaderAnswer, REFRESH_PATH, RefreshAsk, STATUS_PATH, TOKEN_PATH, TokenAnswer,
    token_digest,
};

/// How long a request may take by default: a broker may be refreshing (its lock wait and
/// refresh budget) before it answers.
pub const DEFAULT_BROKER_TIMEOUT: Duration = Duration::from_secs(75);

/// An access token a broker handed out, and when it expires.
#[derive(Clone)]
pub struct BrokerToken {
    /// The access token.
    pub access_token: SecretString,
    /// Its expiry in Unix milliseconds, when known.
    pub expires_at_ms: Option<i64>,
    /// For a refresh: whether this call refreshed (`false`: the rejected token had been
    /// replaced already).
    pub refreshed: bool,
}

impl std::fmt::Debug for BrokerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerToken")
            .field("access_token", &"[redacted]")
            .field("expires_at_ms", &self.expires_at_ms)
            .field("refreshed", &self.refreshed)
            .finish()
    }
}

impl From<TokenAnswer> for BrokerToken {
    fn from(answer: TokenAnswer) -> Self {
        Self {
            access_token: SecretString::from(answer.access_token),
            expires_at_ms: answer.expires_at,
            refreshed: answer.refreshed.unwrap_or(false),
        }
    }
}

/// Talks to a broker (`claude-code-auth serve --socket PATH`) at `socket`.
#[derive(Debug, Clone)]
pub struct BrokerClient {
    socket: PathBuf,
    timeout: Duration,
}

impl BrokerClient {
    /// A client of the broker listening on `socket`.
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Self {
            socket: socket.into(),
            timeout: DEFAULT_BROKER_TIMEOUT,
        }
    }

    /// The same client, each request bounded by `timeout` instead.
    #[must_use]
    pub const fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The broker's socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// `GET /v1/token`: the current access token.
    pub async fn token(&self) -> ClaudeCodeAuthResult<BrokerToken> {
        let body = self.call("GET", TOKEN_PATH, None).await?;
        self.parse::<TokenAnswer>(&body).map(BrokerToken::from)
    }

    /// `GET /v1/header`: the `Authorization` value, and when its token expires.
    pub async fn header(&self) -> ClaudeCodeAuthResult<(SecretString, Option<i64>)> {
        let body = self.call("GET", HEADER_PATH, None).await?;
        let answer: HeaderAnswer = self.parse(&body)?;
        Ok((SecretString::from(answer.value), answer.expires_at))
    }

    /// `GET /v1/status`: the broker's login, without a token.
    pub async fn status(&self) -> ClaudeCodeAuthResult<TokenStatus> {
        let body = self.call("GET", STATUS_PATH, None).await?;
        self.parse(&body)
    }

    /// `POST /v1/refresh`: replace `rejected` (an access token the API refused): the broker
    /// refreshes only while it is still its current token, and answers the current one.
    pub async fn refresh_rejected(&self, rejected: &str) -> ClaudeCodeAuthResult<BrokerToken> {
        let ask = serde_json::to_vec(&RefreshAsk {
            rejected: token_digest(rejected),
        })
        .map_err(|e| {
            self.error(
                format!("could not write the request: {e}"),
                Reaction::Refused,
            )
        })?;
        let body = self.call("POST", REFRESH_PATH, Some(ask)).await?;
        self.parse::<TokenAnswer>(&body).map(BrokerToken::from)
    }

    fn error(&self, message: String, reaction: Reaction) -> ClaudeCodeAuthError {
        ClaudeCodeAuthError::Broker {
            socket: self.socket.display().to_string(),
            message,
            reaction,
        }
    }

    fn parse<T: serde::de::DeserializeOwned>(&self, body: &[u8]) -> ClaudeCodeAuthResult<T> {
        serde_json::from_slice(body).map_err(|e| {
            self.error(
                format!(
                    "its answer is not what a broker answers ({:?} at line {} column {})",
                    e.classify(),
                    e.line(),
                    e.column()
                ),
                Reaction::Refused,
            )
        })
    }

    /// One request, on a connection of its own; the answer's body when it is a 200.
    async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> ClaudeCodeAuthResult<Bytes> {
        match tokio::time::timeout(self.timeout, self.exchange(method, path, body)).await {
            Ok(answer) => answer,
            Err(_) => Err(self.error(
                format!("no answer within {:?}", self.timeout),
                Reaction::Unreachable,
            )),
        }
    }

    #[cfg(unix)]
    async fn exchange(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> ClaudeCodeAuthResult<Bytes> {
        let unreachable = |what: &str, e: &dyn std::fmt::Display| {
            self.error(format!("{what}: {e}"), Reaction::Unreachable)
        };
        let stream = tokio::net::UnixStream::connect(&self.socket)
            .await
            .map_err(|e| {
                unreachable("cannot connect (is `claude-code-auth serve` running?)", &e)
            })?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| unreachable("the connection failed", &e))?;
        let driver = tokio::spawn(connection);
        let mut request = http::Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, "claude-code-auth-broker");
        if body.is_some() {
            request = request.header(http::header::CONTENT_TYPE, "application/json");
        }
        let request = request
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| {
                self.error(
                    format!("could not make the request: {e}"),
                    Reaction::Refused,
                )
            })?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| unreachable("the request failed", &e))?;
        let status = response.status();
        let bytes = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await
            .map_err(|e| unreachable("its answer could not be read", &e))?
            .to_bytes();
        driver.abort();
        if status == http::StatusCode::OK {
            return Ok(bytes);
        }
        Err(match serde_json::from_slice::<ErrorAnswer>(&bytes) {
            Ok(answer) => self.error(
                format!("HTTP {}: {}", status.as_u16(), answer.message),
                match status.as_u16() {
                    503 => reaction_of(&answer.error),
                    _ => Reaction::Refused,
                },
            ),
            Err(_) => self.error(
                format!("HTTP {} without a broker's answer", status.as_u16()),
                Reaction::Refused,
            ),
        })
    }

    #[cfg(not(unix))]
    async fn exchange(
        &self,
        _method: &str,
        _path: &str,
        _body: Option<Vec<u8>>,
    ) -> ClaudeCodeAuthResult<Bytes> {
        Err(self.error(
            "a broker is reached over a Unix socket, which this platform's build does not use"
                .into(),
            Reaction::Refused,
        ))
    }
}
