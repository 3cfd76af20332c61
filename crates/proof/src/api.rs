//! The public API as shoppers and administrators use it, through the gateway.

use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, tungstenite::Message};
use uuid::Uuid;

/// A client of one gateway.
#[derive(Debug, Clone)]
pub struct Api {
    http: reqwest::Client,
    base: String,
}

/// A registered, logged-in user.
#[derive(Debug, Clone)]
pub struct Shopper {
    /// Their e-mail.
    pub email: String,
    /// Their password.
    pub password: String,
    /// A current access token.
    pub token: String,
}

impl Shopper {
    /// The `Authorization` header value.
    pub fn bearer(&self) -> String {
        format!("Bearer {}", self.token)
    }
}

/// The password every generated shopper has.
pub const PASSWORD: &str = "a good password";

async fn expect(response: reqwest::Response, status: u16, what: &str) -> anyhow::Result<Value> {
    let actual = response.status().as_u16();
    let body = response.text().await.unwrap_or_default();
    if actual != status {
        bail!("{what}: expected {status}, got {actual}: {body}");
    }
    Ok(serde_json::from_str(&body).unwrap_or(Value::Null))
}

impl Api {
    /// A client of the gateway at `base` (`http://host:port`), keeping up to `connections`
    /// idle connections.
    pub fn new(base: &str, connections: usize) -> anyhow::Result<Self> {
        Ok(Self {
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(connections)
                .timeout(Duration::from_secs(30))
                .build()?,
            base: base.trim_end_matches('/').to_owned(),
        })
    }

    /// `base` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The underlying HTTP client.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// `POST /login`; the access token.
    pub async fn login(&self, email: &str, password: &str) -> anyhow::Result<String> {
        self.sign_in(
            json!({"email": email, "password": password}),
            &format!("login of {email}"),
        )
        .await
    }

    /// `POST /login` with a one-time code; the access token.
    pub async fn login_with_code(
        &self,
        email: &str,
        password: &str,
        code: &str,
    ) -> anyhow::Result<String> {
        self.sign_in(
            json!({"email": email, "password": password, "otp": code}),
            &format!("login of {email} with a code"),
        )
        .await
    }

    async fn sign_in(&self, body: Value, what: &str) -> anyhow::Result<String> {
        let response = self
            .http
            .post(self.url("/login"))
            .json(&body)
            .send()
            .await?;
        let body = expect(response, 200, what).await?;
        body["accessToken"]
            .as_str()
            .map(str::to_owned)
            .context("login answer without accessToken")
    }

    /// Enrols a second factor for the token's account and confirms it, as an authenticator app
    /// would; returns a token of a new session signed in with a code (what admin routes need
    /// when ADMIN_REQUIRE_MFA is on).
    pub async fn sign_in_with_second_factor(
        &self,
        email: &str,
        password: &str,
    ) -> anyhow::Result<String> {
        let token = self.login(email, password).await?;
        let response = self
            .http
            .post(self.url("/me/mfa"))
            .bearer_auth(&token)
            .send()
            .await?;
        let enrolment = expect(response, 200, "second-factor enrolment").await?;
        let secret = enrolment["secret"]
            .as_str()
            .context("enrolment without secret")?;
        let secret = totp_rs::Secret::try_from_base32(secret)
            .map_err(|e| anyhow::anyhow!("enrolment secret: {e:?}"))?
            .as_bytes()
            .to_vec();
        let code_at = |step: u64| {
            totp_rs::Builder::new()
                .with_secret(secret.clone())
                .build_noncompliant()
                .generate(step * 30)
                .to_string()
        };
        let step = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs()
            / 30;
        let response = self
            .http
            .post(self.url("/me/mfa/confirm"))
            .bearer_auth(&token)
            .json(&json!({"code": code_at(step)}))
            .send()
            .await?;
        expect(response, 204, "second-factor confirmation").await?;
        // Each code is taken once: the next step's, still within the window.
        self.login_with_code(email, password, &code_at(step + 1))
            .await
    }

    /// The development administrator, logged in.
    pub async fn admin(&self) -> anyhow::Result<String> {
        self.login(
            shop_settings::DEV_ADMIN_EMAIL,
            shop_settings::DEV_ADMIN_PASSWORD,
        )
        .await
    }

    /// Registers and logs in a new shopper.
    pub async fn new_shopper(&self) -> anyhow::Result<Shopper> {
        let email = format!("shopper-{}@example.com", Uuid::new_v4().simple());
        let response = self
            .http
            .post(self.url("/register"))
            .json(&json!({"email": email, "password": PASSWORD}))
            .send()
            .await?;
        expect(response, 201, &format!("registration of {email}")).await?;
        let token = self.login(&email, PASSWORD).await?;
        Ok(Shopper {
            email,
            password: PASSWORD.to_owned(),
            token,
        })
    }

    /// `POST /products` as an administrator; the new product's id.
    pub async fn create_product(
        &self,
        admin_token: &str,
        name: &str,
        price_cents: i64,
        stock: i64,
    ) -> anyhow::Result<Uuid> {
        let response = self
            .http
            .post(self.url("/products"))
            .bearer_auth(admin_token)
            .json(&json!({"name": name, "priceCents": price_cents, "stock": stock}))
            .send()
            .await?;
        let body = expect(response, 201, &format!("creating {name}")).await?;
        body["id"]
            .as_str()
            .and_then(|id| id.parse().ok())
            .context("product answer without id")
    }

    /// `GET {path}` with the body as text, failing unless 200.
    pub async fn get_text(&self, path: &str) -> anyhow::Result<String> {
        let response = self.http.get(self.url(path)).send().await?;
        if response.status() != 200 {
            bail!("GET {path}: {}", response.status());
        }
        Ok(response.text().await?)
    }

    /// `POST /orders` with `Idempotency-Key: key`; the raw answer.
    pub async fn place_order(
        &self,
        shopper: &Shopper,
        lines: &[(Uuid, i64)],
        key: &str,
    ) -> reqwest::Result<reqwest::Response> {
        let items: Vec<Value> = lines
            .iter()
            .map(|(product, quantity)| json!({"productId": product, "quantity": quantity}))
            .collect();
        self.http
            .post(self.url("/orders"))
            .header("authorization", shopper.bearer())
            .header("idempotency-key", key)
            .json(&json!({"items": items}))
            .send()
            .await
    }

    /// Opens the shopper's live socket (ticket flow) and waits for its `ready` message.
    pub async fn open_socket(&self, shopper: &Shopper) -> anyhow::Result<Socket> {
        let response = self
            .http
            .post(self.url("/ws/ticket"))
            .header("authorization", shopper.bearer())
            .send()
            .await?;
        let ticket = expect(response, 201, "socket ticket").await?;
        let ticket = ticket["ticket"].as_str().context("no ticket")?;
        let url = format!("{}/ws?ticket={ticket}", self.base.replacen("http", "ws", 1));
        let (ws, _) = tokio_tungstenite::connect_async(url).await?;
        let mut socket = Socket { ws };
        let ready = socket.next(Duration::from_secs(10)).await?;
        if ready["type"] != "ready" {
            bail!("the socket's first message was {ready}");
        }
        Ok(socket)
    }
}

/// A live socket.
#[derive(Debug)]
pub struct Socket {
    ws: WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>,
}

impl Socket {
    /// The next JSON message within `deadline`.
    pub async fn next(&mut self, deadline: Duration) -> anyhow::Result<Value> {
        loop {
            let frame = tokio::time::timeout(deadline, self.ws.next())
                .await
                .context("no message in time")?
                .context("the socket closed")??;
            match frame {
                Message::Text(text) => return Ok(serde_json::from_str(&text)?),
                Message::Close(frame) => bail!("the socket closed: {frame:?}"),
                _ => {}
            }
        }
    }

    /// Waits for the event `kind` about `order`; fails on its `order.failed` or after
    /// `deadline`. Returns every message about the order seen until then, that one last.
    pub async fn await_order_event(
        &mut self,
        order: &str,
        kind: &str,
        deadline: Duration,
    ) -> anyhow::Result<Vec<Value>> {
        let until = tokio::time::Instant::now() + deadline;
        let mut seen = Vec::new();
        loop {
            let left = until.saturating_duration_since(tokio::time::Instant::now());
            let message = self.next(left).await?;
            let event = &message["event"];
            if event["orderId"] != order {
                continue;
            }
            let done = event["type"] == kind;
            if event["type"] == "order.failed" {
                bail!("order {order} failed: {event}");
            }
            seen.push(message);
            if done {
                return Ok(seen);
            }
        }
    }
}
