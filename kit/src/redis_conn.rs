//! Pooled Redis connections that come back within a second of Redis.
//!
//! A restarted Redis leaves every pooled connection stale: the next command
//! on it fails with a broken pipe, and only then does the pool reconnect.
//! Here the pool retries its connection attempts at most half a second apart
//! (the client library's default backs off to seconds), and
//! [`retry_if_stale`] gives a command that met a stale connection one more try
//! on the fresh one, so no request fails just because its connection was
//! pooled across a restart.

use std::future::Future;
use std::time::Duration;

use redis::RedisResult;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

/// The first retry of a lost connection comes after this, then twice as long
/// each time up to [`MAX_RECONNECT_DELAY`].
const MIN_RECONNECT_DELAY: Duration = Duration::from_millis(50);
const MAX_RECONNECT_DELAY: Duration = Duration::from_millis(500);
/// Connection attempts one command waits for before it fails (about a second
/// in all while Redis is down); the next command starts over.
const RECONNECT_ATTEMPTS: usize = 4;

/// A pooled connection to `client`'s Redis that reconnects quickly.
pub async fn manager(client: &redis::Client) -> RedisResult<ConnectionManager> {
    let config = ConnectionManagerConfig::new()
        .set_min_delay(MIN_RECONNECT_DELAY)
        .set_max_delay(MAX_RECONNECT_DELAY)
        .set_number_of_retries(RECONNECT_ATTEMPTS);
    ConnectionManager::new_with_config(client.clone(), config).await
}

/// Runs `command` on `connection`, and once more if the connection had been
/// dropped (the pool is reconnecting by then, and the second try waits for
/// it). Only for commands that may be applied twice without harm: a command
/// whose answer was lost with the connection may have been applied.
pub async fn retry_if_stale<T, F, Fut>(connection: &ConnectionManager, command: F) -> RedisResult<T>
where
    F: Fn(ConnectionManager) -> Fut,
    Fut: Future<Output = RedisResult<T>>,
{
    match command(connection.clone()).await {
        Err(e) if e.is_connection_dropped() => {
            tracing::debug!(error = %e, "redis connection was stale; trying once more");
            command(connection.clone()).await
        }
        done => done,
    }
}

#[cfg(test)]
mod tests {
    use redis::AsyncCommands as _;

    use super::*;
    use crate::testkit::RedisServer;

    #[tokio::test]
    async fn a_command_after_a_restart_succeeds_on_its_first_call() {
        let Some(mut redis) = RedisServer::start() else {
            return;
        };
        let client = redis::Client::open(redis.url()).unwrap();
        let connection = manager(&client).await.unwrap();
        let set = |mut c: ConnectionManager| async move { c.set::<_, _, ()>("k", 1).await };
        retry_if_stale(&connection, set).await.unwrap();
        redis.kill();
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        redis.restart();
        // The pooled connection is stale now; one call still succeeds.
        retry_if_stale(&connection, set).await.unwrap();
        let read: i64 = retry_if_stale(&connection, |mut c| async move { c.get("k").await })
            .await
            .unwrap();
        assert_eq!(read, 1);
    }
}
