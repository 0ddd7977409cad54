//! One multiplexed connection to Redis, made on first use and made again after it broke (Redis
//! restarted, the network dropped), so an outage ends by itself once Redis is back.

use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, Cmd, FromRedisValue, RedisError, ScriptInvocation};
use tokio::sync::Mutex;

/// How long connecting, and then each command, may take before Redis counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);

pub(super) struct Connection {
    client: Client,
    live: Mutex<Option<MultiplexedConnection>>,
}

impl Connection {
    pub(super) fn new(client: Client) -> Self {
        Self {
            client,
            live: Mutex::new(None),
        }
    }

    async fn get(&self) -> Result<MultiplexedConnection, RedisError> {
        let mut live = self.live.lock().await;
        if let Some(connection) = live.as_ref() {
            return Ok(connection.clone());
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT));
        let connection = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        *live = Some(connection.clone());
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
