//! The pool's connections: multiplexed Redis connections that remember when they broke, so the
//! pool can drop them without a `PING` on every checkout.

use redis::{
    Client, Cmd, IntoConnectionInfo, Pipeline, RedisError, RedisFuture, RedisResult, Value,
    aio::{ConnectionLike, MultiplexedConnection},
};

/// Makes [`Connection`]s for the pool.
#[derive(Debug, Clone)]
pub struct Manager {
    client: Client,
}

impl Manager {
    /// For a `redis://` URL (or any other form `redis::Client::open` takes).
    pub fn new<T: IntoConnectionInfo>(info: T) -> Result<Self, RedisError> {
        Ok(Self {
            client: Client::open(info.into_connection_info()?)?,
        })
    }
}

/// A multiplexed connection that notes a failure of the connection itself (not an error
/// answer): the pool then discards it instead of handing it out again.
#[derive(Clone)]
pub struct Connection {
    inner: MultiplexedConnection,
    broken: bool,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("broken", &self.broken)
            .finish_non_exhaustive()
    }
}

impl Connection {
    fn note<T>(&mut self, result: &RedisResult<T>) {
        if let Err(error) = result
            && (error.is_unrecoverable_error() || error.is_connection_dropped())
        {
            self.broken = true;
        }
    }
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let result = self.inner.req_packed_command(cmd).await;
            self.note(&result);
            result
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let result = self
                .inner
                .req_packed_commands(pipeline, offset, count)
                .await;
            self.note(&result);
            result
        })
    }

    fn get_db(&self) -> i64 {
        self.inner.get_db()
    }
}

impl bb8::ManageConnection for Manager {
    type Connection = Connection;
    type Error = RedisError;

    async fn connect(&self) -> Result<Connection, RedisError> {
        Ok(Connection {
            inner: self.client.get_multiplexed_async_connection().await?,
            broken: false,
        })
    }

    /// Only used where a pool is built to test connections (ours are not).
    async fn is_valid(&self, conn: &mut Connection) -> Result<(), RedisError> {
        redis::cmd("PING").query_async::<()>(conn).await
    }

    fn has_broken(&self, conn: &mut Connection) -> bool {
        conn.broken
    }
}
