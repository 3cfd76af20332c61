//! A TCP proxy in front of any link (Redis, Postgres, a service) whose traffic a test can cut,
//! restore or slow down, without touching the server behind it.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::watch,
    task::{AbortHandle, JoinHandle},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Open,
    /// Existing connections are closed; new ones are accepted and closed at once.
    Cut,
    /// Every chunk is held back this long in each direction.
    Slow(Duration),
    /// Requests still reach the server, its answers are dropped: the server did the work and
    /// the client never hears of it.
    Mute,
}

#[derive(Debug)]
struct Shared {
    target: SocketAddr,
    mode: watch::Sender<Mode>,
    connections: Mutex<Vec<AbortHandle>>,
}

/// A proxy listening on a free loopback port.
#[derive(Debug)]
pub struct TcpProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
}

impl TcpProxy {
    /// Starts forwarding to `target`.
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            target,
            mode: watch::channel(Mode::Open).0,
            connections: Mutex::default(),
        });
        let accept = tokio::spawn(accept_loop(listener, shared.clone()));
        Self {
            addr,
            shared,
            accept,
        }
    }

    /// Where clients should connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Drops every connection and refuses new ones (they are closed right after accept).
    pub fn cut(&self) {
        self.shared.mode.send_replace(Mode::Cut);
        for connection in self.shared.connections.lock().unwrap().drain(..) {
            connection.abort();
        }
    }

    /// Forwards normally again.
    pub fn restore(&self) {
        self.shared.mode.send_replace(Mode::Open);
    }

    /// Delays every chunk by `delay` in both directions.
    pub fn slow(&self, delay: Duration) {
        self.shared.mode.send_replace(Mode::Slow(delay));
    }

    /// Lets requests through but drops every answer (until [`TcpProxy::cut`] or
    /// [`TcpProxy::restore`]): a call that the server carried out and whose answer was lost.
    pub fn mute(&self) {
        self.shared.mode.send_replace(Mode::Mute);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.accept.abort();
        for connection in self.shared.connections.lock().unwrap().drain(..) {
            connection.abort();
        }
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    while let Ok((client, _)) = listener.accept().await {
        if *shared.mode.borrow() == Mode::Cut {
            drop(client);
            continue;
        }
        let shared_for_task = shared.clone();
        let task = tokio::spawn(async move {
            let Ok(server) = TcpStream::connect(shared_for_task.target).await else {
                return;
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let (client_read, client_write) = client.into_split();
            let (server_read, server_write) = server.into_split();
            let mode = shared_for_task.mode.subscribe();
            tokio::join!(
                pump(client_read, server_write, mode.clone(), false),
                pump(server_read, client_write, mode, true),
            );
        });
        let mut connections = shared.connections.lock().unwrap();
        connections.retain(|c| !c.is_finished());
        connections.push(task.abort_handle());
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mode: watch::Receiver<Mode>,
    answers: bool,
) {
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let current = *mode.borrow();
        match current {
            Mode::Cut => break,
            Mode::Slow(delay) => tokio::time::sleep(delay).await,
            Mode::Mute if answers => continue,
            Mode::Mute | Mode::Open => {}
        }
        if to.write_all(&buffer[..read]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}
