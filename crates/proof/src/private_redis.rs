//! A `redis-server` of one's own, for tests and runs that lose, restart or corrupt Redis.

use std::{
    net::SocketAddr,
    process::{Child, Command, Stdio},
    time::Duration,
};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::free_port;

/// A running private Redis, killed when dropped.
#[derive(Debug)]
pub struct PrivateRedis {
    port: u16,
    child: Option<Child>,
}

async fn answers(port: u16) -> bool {
    let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return false;
    };
    if stream.write_all(b"PING\r\n").await.is_err() {
        return false;
    }
    let mut reply = [0u8; 7];
    matches!(
        tokio::time::timeout(Duration::from_secs(1), stream.read(&mut reply)).await,
        Ok(Ok(n)) if reply[..n].starts_with(b"+PONG")
    )
}

fn spawn(port: u16) -> Child {
    Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start redis-server (run `make services`): {e}"))
}

async fn await_answer(port: u16) -> bool {
    for _ in 0..100 {
        if answers(port).await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

impl PrivateRedis {
    /// Starts `redis-server` (from PATH) on a free loopback port, without persistence.
    pub async fn start() -> Self {
        let mut last_error = String::new();
        for _ in 0..5 {
            let port = free_port();
            let mut redis = Self {
                port,
                child: Some(spawn(port)),
            };
            if await_answer(port).await {
                return redis;
            }
            last_error = format!("redis-server on port {port} did not answer");
            redis.kill();
        }
        panic!("{last_error}");
    }

    /// Kills the server and starts an empty one on the same port: Redis lost its data.
    pub async fn restart_empty(&mut self) {
        self.kill();
        for _ in 0..50 {
            self.child = Some(spawn(self.port));
            if await_answer(self.port).await {
                return;
            }
            self.kill();
        }
        panic!("redis-server did not come back on port {}", self.port);
    }

    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server (as a crash would).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}
