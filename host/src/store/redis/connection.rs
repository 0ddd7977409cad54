//! One multiplexed connection to Redis, made on first use and made again after it broke (Redis
//! restarted, the network dropped), so an outage ends by itself once Redis is back.
//!
//! The connection is made here, not by the `redis` crate: for `rediss://` this crate speaks TLS
//! itself, with an explicit crypto provider (the crate's would take the process-wide default,
//! which may be unset or ambiguous, and a library must not set it) and the same trust as for the
//! token endpoint: the web PKI roots plus the CA files given (`ca_file`, `SSL_CERT_FILE`,
//! `NODE_EXTRA_CA_CERTS`).

use std::path::PathBuf;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{
    AsyncConnectionConfig, Cmd, ConnectionAddr, ConnectionInfo, FromRedisValue, IntoConnectionInfo,
    RedisError, ScriptInvocation,
};
use tokio::net::TcpStream;
use tokio::sync::Mutex;

use crate::tls;

/// How long connecting (TCP and TLS), and then each command, may take before Redis counts as
/// unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);

pub(super) struct Connection {
    info: ConnectionInfo,
    /// `Some` for `rediss://`: the CA files to trust besides the web PKI.
    tls: Option<Vec<PathBuf>>,
    live: Mutex<Option<MultiplexedConnection>>,
}

impl Connection {
    /// A connection to `url` (`redis://` or `rediss://`), not made yet; `None` when `url` is
    /// not a Redis URL over TCP.
    pub(super) fn new(url: &str, ca_files: Vec<PathBuf>) -> Option<Self> {
        let (scheme, rest) = url.split_once("://")?;
        let tls = match scheme.to_ascii_lowercase().as_str() {
            "redis" | "valkey" => None,
            "rediss" | "valkeys" => Some(ca_files),
            _ => return None,
        };
        // Parsed as plain `redis://`: the TLS is this module's.
        let info = format!("redis://{rest}").into_connection_info().ok()?;
        matches!(info.addr(), ConnectionAddr::Tcp(..)).then_some(Self {
            info,
            tls,
            live: Mutex::new(None),
        })
    }

    async fn get(&self) -> Result<MultiplexedConnection, RedisError> {
        let mut live = self.live.lock().await;
        if let Some(connection) = live.as_ref() {
            return Ok(connection.clone());
        }
        // The whole of it — TCP, TLS, Redis's handshake — within the bound: a Redis that accepts
        // connections but does not answer (paused, overloaded) is unreachable too.
        let connection = tokio::time::timeout(CONNECT_TIMEOUT, self.connect())
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out"))??;
        *live = Some(connection.clone());
        Ok(connection)
    }

    async fn connect(&self) -> Result<MultiplexedConnection, RedisError> {
        let ConnectionAddr::Tcp(host, port) = self.info.addr() else {
            unreachable!("only TCP addresses are accepted in `new`")
        };
        // Bounded as a whole by `get`.
        let tcp = TcpStream::connect((host.as_str(), *port)).await?;
        tcp.set_nodelay(true)?;
        let config = AsyncConnectionConfig::new().set_response_timeout(Some(RESPONSE_TIMEOUT));
        let settings = self.info.redis_settings();
        let Some(ca_files) = &self.tls else {
            let (connection, driver) =
                MultiplexedConnection::new_with_config(settings, tcp, config).await?;
            tokio::spawn(driver);
            return Ok(connection);
        };
        let connector =
            tls::connector(&tls::extra_ca_files(ca_files)).map_err(std::io::Error::other)?;
        let name = rustls::pki_types::ServerName::try_from(host.clone())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let stream = connector.connect(name, tcp).await?;
        let (connection, driver) =
            MultiplexedConnection::new_with_config(settings, stream, config).await?;
        tokio::spawn(driver);
        Ok(connection)
    }

    /// Forget a connection that failed in a way another one may not.
    async fn judge<T>(&self, result: Result<T, RedisError>) -> Result<T, RedisError> {
        if let Err(error) = &result
            && (error.is_io_error()
                || error.is_connection_dropped()
                || error.is_timeout()
                || error.is_unrecoverable_error())
        {
            *self.live.lock().await = None;
        }
        result
    }

    /// Run one command.
    pub(super) async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T, RedisError> {
        let mut connection = self.get().await?;
        let result = cmd.query_async(&mut connection).await;
        self.judge(result).await
    }

    /// Run one script (loaded on first use, then called by its digest).
    pub(super) async fn script<T: FromRedisValue>(
        &self,
        invocation: &ScriptInvocation<'_>,
    ) -> Result<T, RedisError> {
        let mut connection = self.get().await?;
        let result = invocation.invoke_async(&mut connection).await;
        self.judge(result).await
    }
}
