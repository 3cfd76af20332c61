//! A real SMTP server of the test's own on loopback (the `mailin` protocol state machine over
//! tokio sockets), that keeps every message it accepts and can be stopped and started again
//! on the same port.

use std::{
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex},
    time::Duration,
};

use base64::Engine;
use mailin::{Action, Handler, Response, SessionBuilder, response};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::{TcpListener, TcpStream},
    sync::Notify,
    task::JoinSet,
};

/// A message as the server received it.
#[derive(Debug, Clone)]
pub struct ReceivedMail {
    /// The envelope's recipients (`RCPT TO`).
    pub to: Vec<String>,
    /// The message as sent (headers and body, CRLF line ends).
    pub raw: String,
}

impl ReceivedMail {
    /// The first value of a header (unfolded), by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<String> {
        header_of(head(&self.raw), name)
    }

    /// `Subject`.
    pub fn subject(&self) -> String {
        self.header("Subject").unwrap_or_default()
    }

    /// `Message-ID`.
    pub fn message_id(&self) -> String {
        self.header("Message-ID").unwrap_or_default()
    }

    /// Whether the envelope names `address` as a recipient.
    pub fn is_to(&self, address: &str) -> bool {
        self.to.iter().any(|t| t.eq_ignore_ascii_case(address))
    }

    /// The decoded body of the part of this content type (`text/plain`, `text/html`).
    pub fn part(&self, content_type: &str) -> Option<String> {
        parts(&self.raw).into_iter().find_map(|part| {
            let head = head(&part);
            let kind = header_of(head, "Content-Type").unwrap_or_default();
            kind.to_ascii_lowercase()
                .starts_with(content_type)
                .then(|| decode(&part))
        })
    }

    /// The plain-text body.
    pub fn text(&self) -> String {
        self.part("text/plain").unwrap_or_default()
    }

    /// The value of the query parameter `name` in the first link of the text that has it.
    pub fn link_param(&self, name: &str) -> Option<String> {
        let text = self.text();
        let needle = format!("{name}=");
        let start = text.find(&needle)? + needle.len();
        Some(
            text[start..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
                .collect(),
        )
    }
}

fn head(raw: &str) -> &str {
    raw.split("\r\n\r\n").next().unwrap_or(raw)
}

fn header_of(head: &str, name: &str) -> Option<String> {
    let unfolded = head.replace("\r\n ", " ").replace("\r\n\t", " ");
    unfolded.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim()
            .eq_ignore_ascii_case(name)
            .then(|| value.trim().to_owned())
    })
}

/// The leaf parts of a (possibly multipart) message, each with its own headers.
fn parts(raw: &str) -> Vec<String> {
    let kind = header_of(head(raw), "Content-Type").unwrap_or_default();
    let Some(boundary) = kind.split(';').find_map(|p| {
        let p = p.trim();
        p.strip_prefix("boundary=")
            .map(|b| b.trim_matches('"').to_owned())
    }) else {
        return vec![raw.to_owned()];
    };
    let body = raw.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    body.split(&format!("--{boundary}"))
        .skip(1)
        .filter(|p| !p.starts_with("--"))
        .flat_map(|p| parts(p.trim_start_matches("\r\n")))
        .collect()
}

/// A leaf part's body, its transfer encoding undone.
fn decode(part: &str) -> String {
    let encoding = header_of(head(part), "Content-Transfer-Encoding")
        .unwrap_or_default()
        .to_ascii_lowercase();
    let body = part.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    match encoding.as_str() {
        "base64" => {
            let compact: String = body.split_whitespace().collect();
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(compact)
                .unwrap_or_default();
            String::from_utf8_lossy(&bytes).into_owned()
        }
        "quoted-printable" => {
            let joined = body.replace("=\r\n", "");
            let mut bytes = Vec::with_capacity(joined.len());
            let raw = joined.as_bytes();
            let mut i = 0;
            while i < raw.len() {
                let hex = raw
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match (raw[i], hex) {
                    (b'=', Some(byte)) => {
                        bytes.push(byte);
                        i += 3;
                    }
                    (byte, _) => {
                        bytes.push(byte);
                        i += 1;
                    }
                }
            }
            String::from_utf8_lossy(&bytes).into_owned()
        }
        _ => body.to_owned(),
    }
}

#[derive(Debug, Default)]
struct Inbox {
    messages: Mutex<Vec<ReceivedMail>>,
    arrived: Notify,
}

/// One connection's session state.
#[derive(Debug)]
struct Session {
    inbox: Arc<Inbox>,
    to: Vec<String>,
    data: Vec<u8>,
}

impl Handler for Session {
    fn data_start(&mut self, _: &str, _: &str, _: bool, to: &[String]) -> Response {
        self.to = to.to_vec();
        self.data.clear();
        response::OK
    }

    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.data.extend_from_slice(buf);
        Ok(())
    }

    fn data_end(&mut self) -> Response {
        let mail = ReceivedMail {
            to: std::mem::take(&mut self.to),
            raw: String::from_utf8_lossy(&std::mem::take(&mut self.data)).into_owned(),
        };
        self.inbox.messages.lock().expect("inbox lock").push(mail);
        self.inbox.arrived.notify_waiters();
        response::OK
    }
}

/// The server.
#[derive(Debug)]
pub struct SmtpServer {
    addr: SocketAddr,
    inbox: Arc<Inbox>,
    /// The accept loop and every open session; empty while stopped.
    running: Mutex<Option<JoinSet<()>>>,
}

impl SmtpServer {
    /// Starts a server on a free loopback port.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind an SMTP port");
        let server = Self {
            addr: listener.local_addr().expect("local addr"),
            inbox: Arc::default(),
            running: Mutex::new(None),
        };
        server.serve(listener);
        server
    }

    /// `smtp://127.0.0.1:PORT`, for `SMTP_URL`.
    pub fn url(&self) -> String {
        format!("smtp://{}", self.addr)
    }

    /// Stops listening and drops every open session: clients are refused until
    /// [`SmtpServer::restart`].
    pub fn stop(&self) {
        if let Some(mut tasks) = self.running.lock().expect("lock").take() {
            tasks.abort_all();
        }
    }

    /// Listens again on the same port (after [`SmtpServer::stop`]).
    pub async fn restart(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(listener) => break listener,
                Err(error) if tokio::time::Instant::now() < deadline => {
                    tracing::debug!(%error, "SMTP port not free yet");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(error) => panic!("cannot listen on {} again: {error}", self.addr),
            }
        };
        self.serve(listener);
    }

    fn serve(&self, listener: TcpListener) {
        let inbox = self.inbox.clone();
        let mut tasks = JoinSet::new();
        tasks.spawn(async move {
            let mut sessions = JoinSet::new();
            loop {
                let Ok((stream, peer)) = listener.accept().await else {
                    continue;
                };
                sessions.spawn(session(stream, peer.ip(), inbox.clone()));
                // Reap finished sessions as we go.
                while sessions.try_join_next().is_some() {}
            }
        });
        *self.running.lock().expect("lock") = Some(tasks);
    }

    /// Every message received so far, in order.
    pub fn messages(&self) -> Vec<ReceivedMail> {
        self.inbox.messages.lock().expect("inbox lock").clone()
    }

    /// The messages to `address`, in order.
    pub fn messages_to(&self, address: &str) -> Vec<ReceivedMail> {
        self.messages()
            .into_iter()
            .filter(|m| m.is_to(address))
            .collect()
    }

    /// Waits (up to 30 s) for a message to `address` whose subject contains `subject`.
    pub async fn wait_for(&self, address: &str, subject: &str) -> ReceivedMail {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let arrived = self.inbox.arrived.notified();
            if let Some(found) = self
                .messages_to(address)
                .into_iter()
                .find(|m| m.subject().contains(subject))
            {
                return found;
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                panic!(
                    "no mail `{subject}` to {address} within 30 s; received: {:?}",
                    self.messages()
                        .iter()
                        .map(|m| (m.to.clone(), m.subject()))
                        .collect::<Vec<_>>()
                );
            }
        }
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One SMTP conversation.
async fn session(stream: TcpStream, peer: IpAddr, inbox: Arc<Inbox>) {
    let mut session = SessionBuilder::new("testkit.smtp").build(
        peer,
        Session {
            inbox,
            to: Vec::new(),
            data: Vec::new(),
        },
    );
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let reply = |response: &Response| response.buffer().unwrap_or_default();
    if write.write_all(&reply(&session.greeting())).await.is_err() {
        return;
    }
    let mut line = Vec::new();
    loop {
        line.clear();
        match read.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let response = session.process(&line);
        match response.action {
            Action::NoReply => {}
            Action::Reply | Action::UpgradeTls => {
                if write.write_all(&reply(&response)).await.is_err() {
                    return;
                }
            }
            Action::Close => {
                let _ = write.write_all(&reply(&response)).await;
                return;
            }
        }
    }
}
