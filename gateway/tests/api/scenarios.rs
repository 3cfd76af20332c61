//! End-to-end scenarios: every operation of README's public API table used as a client would,
//! and every writing route refusing bad requests with the status and `code` of DESIGN.md's
//! error table while leaving nothing a client could see behind.
//!
//! The helpers here describe a request once ([`Call`]), run the refusals every writing route
//! shares ([`refuse_bad_requests`]) and capture what a client sees ([`look`]) so a scenario can
//! compare it before and after.

mod accounts;
mod bodies;
mod cart;
mod catalog;
mod fulfilment;
mod orders;
mod platform;

use std::time::Duration;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{EncodingKey, Header, encode};
use reqwest::{Method, Response};
use serde_json::{Value, json};
use shop_testkit::{TestApp, TestUser, wait};
use uuid::Uuid;

use crate::expect_problem;

/// How long a scenario waits for anything asynchronous (payments, releases).
pub const DEADLINE: Duration = Duration::from_secs(30);

/// How long any one request may take before the scenario counts it as unanswered.
pub const ANSWER_WITHIN: Duration = Duration::from_secs(10);

/// Payments that succeed at once, so orders settle quickly.
pub fn fast_payments(settings: &mut shop_settings::Settings) {
    settings.payment_failed_probability = 0;
    settings.payment_duration = Duration::from_millis(10);
}

/// A request to the gateway, described once and sent as often as a scenario needs.
#[derive(Debug, Clone)]
pub struct Call {
    method: Method,
    path: String,
    body: Option<Value>,
    headers: Vec<(&'static str, String)>,
}

impl Call {
    pub fn new(method: Method, path: impl Into<String>) -> Self {
        Self {
            method,
            path: path.into(),
            body: None,
            headers: Vec::new(),
        }
    }

    pub fn get(path: impl Into<String>) -> Self {
        Self::new(Method::GET, path)
    }

    pub fn post(path: impl Into<String>) -> Self {
        Self::new(Method::POST, path)
    }

    pub fn put(path: impl Into<String>) -> Self {
        Self::new(Method::PUT, path)
    }

    pub fn patch(path: impl Into<String>) -> Self {
        Self::new(Method::PATCH, path)
    }

    pub fn delete(path: impl Into<String>) -> Self {
        Self::new(Method::DELETE, path)
    }

    /// The same call with this JSON body.
    #[must_use]
    pub fn json(mut self, body: Value) -> Self {
        self.body = Some(body);
        self
    }

    /// The same call with one more header.
    #[must_use]
    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// The same call on another path.
    #[must_use]
    pub fn at(&self, path: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            ..self.clone()
        }
    }

    fn request(&self, app: &TestApp, token: Option<&str>) -> reqwest::RequestBuilder {
        let mut request = app
            .http
            .request(self.method.clone(), app.url(&self.path))
            .timeout(ANSWER_WITHIN);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        for (name, value) in &self.headers {
            request = request.header(*name, value);
        }
        request
    }

    /// Sends the call, its JSON body if it has one, with `token` as the bearer.
    pub async fn send(&self, app: &TestApp, token: Option<&str>) -> Response {
        self.try_send(app, token).await.unwrap()
    }

    /// [`Call::send`], failing after [`ANSWER_WITHIN`] instead of waiting for ever.
    pub async fn try_send(&self, app: &TestApp, token: Option<&str>) -> reqwest::Result<Response> {
        let mut request = self.request(app, token);
        if let Some(body) = &self.body {
            request = request.json(body);
        }
        request.send().await
    }

    /// Sends the call with a raw body of `content_type` instead of its JSON body.
    pub async fn send_raw(
        &self,
        app: &TestApp,
        token: Option<&str>,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> Response {
        self.try_send_raw(app, token, content_type, body)
            .await
            .unwrap()
    }

    /// [`Call::send_raw`], failing after [`ANSWER_WITHIN`] instead of waiting for ever.
    pub async fn try_send_raw(
        &self,
        app: &TestApp,
        token: Option<&str>,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Result<Response> {
        self.request(app, token)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
    }

    /// Sends the call and expects `status`; returns the JSON body (`null` when there is none).
    pub async fn expect(&self, app: &TestApp, token: Option<&str>, status: u16) -> Value {
        let response = self.send(app, token).await;
        let got = response.status();
        let text = response.text().await.unwrap();
        assert_eq!(
            got, status,
            "{} {}: expected {status}, got {got}: {text}",
            self.method, self.path
        );
        if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap()
        }
    }

    /// Sends the call and expects DESIGN.md's problem `status` and `code`; returns the problem.
    pub async fn refused(
        &self,
        app: &TestApp,
        token: Option<&str>,
        status: u16,
        code: &str,
        what: &str,
    ) -> Value {
        let response = self.send(app, token).await;
        refusal(response, status, code, &format!("{self}: {what}")).await
    }
}

impl std::fmt::Display for Call {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.method, self.path)
    }
}

/// Expects a problem answer; on the wrong status, says which request it was and what came
/// back, then leaves the rest (content type, `code`) to [`expect_problem`].
pub async fn refusal(response: Response, status: u16, code: &str, what: &str) -> Value {
    if response.status() != status {
        let got = response.status();
        let body = response.text().await.unwrap_or_default();
        panic!("{what}: expected {status} {code}, got {got}: {body}");
    }
    expect_problem(response, status, code).await
}

/// The access token of `user`, as [`Call::send`] takes it.
pub fn token(user: &TestUser) -> Option<&str> {
    Some(&user.tokens.access_token)
}

/// A signed-in caller and stale credentials of the same account: a token of this very session
/// that has expired (re-signed with the test secret and a past `exp`), and one of another
/// session that has logged out.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user: TestUser,
    pub expired: String,
    pub revoked: String,
}

impl Caller {
    pub async fn of(app: &TestApp, user: &TestUser) -> Self {
        let now = chrono::Utc::now().timestamp();
        // The copy re-signed with a live `exp` works, so the expired one fails for its `exp`.
        let live = resign(app, &user.tokens.access_token, now + 600);
        Call::get("/me").expect(app, Some(&live), 200).await;
        let revoked = app.login_ok(&user.email, &user.password).await;
        Call::post("/logout")
            .expect(app, Some(&revoked.access_token), 204)
            .await;
        Self {
            user: user.clone(),
            expired: resign(app, &user.tokens.access_token, now - 120),
            revoked: revoked.access_token,
        }
    }

    pub fn token(&self) -> Option<&str> {
        token(&self.user)
    }
}

/// `access_token` re-signed with the test secret (same key id, same claims, same session) with
/// `exp` set to `exp`.
fn resign(app: &TestApp, access_token: &str, exp: i64) -> String {
    let part = |i: usize| -> Value {
        let segment = access_token.split('.').nth(i).unwrap();
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(segment).unwrap()).unwrap()
    };
    let (header, mut claims) = (part(0), part(1));
    claims["exp"] = json!(exp);
    let mut signed = Header::new(jsonwebtoken::Algorithm::HS256);
    signed.kid = header["kid"].as_str().map(str::to_owned);
    encode(
        &signed,
        &claims,
        &EncodingKey::from_secret(app.settings.jwt_secret().as_bytes()),
    )
    .unwrap()
}

/// What a writing route asks of its callers and its body.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rules<'a> {
    /// A caller the route serves; `None` for the routes anyone may call.
    pub caller: Option<&'a Caller>,
    /// A signed-in user without the admin role, for the routes only administrators may call.
    pub not_admin: Option<&'a TestUser>,
    /// Body fields whose absence is refused with 422 on that field.
    pub required: &'a [&'a str],
}

/// A value of another JSON type than `value`: an object for a string, a string for anything
/// else. (A number for a string is `bodies.rs`'s case.)
fn wrong_type(value: &Value) -> Value {
    if value.is_string() {
        json!({"not": "a string"})
    } else {
        json!("not the right type")
    }
}

/// Runs the refusals every writing route shares, each with DESIGN.md's status and `code`:
/// no, expired and revoked tokens (401 `unauthorized`); a user's token on an administrator's
/// route (403 `forbidden`); and for routes that take a body: malformed JSON (400
/// `malformed-json`), another media type (415 `unsupported-media-type`), an unknown field, a
/// value of the wrong type for each field and each required field missing (422
/// `validation-failed`). Oversized bodies are `bodies.rs`'s, for every writing route at once.
pub async fn refuse_bad_requests(app: &TestApp, call: &Call, rules: Rules<'_>) {
    let bearer = rules.caller.and_then(Caller::token);
    if let Some(caller) = rules.caller {
        for (what, stale) in [
            ("no token", None),
            ("an expired token", Some(caller.expired.as_str())),
            ("a revoked token", Some(caller.revoked.as_str())),
        ] {
            call.refused(app, stale, 401, "unauthorized", what).await;
        }
    }
    if let Some(user) = rules.not_admin {
        call.refused(app, token(user), 403, "forbidden", "a user's token")
            .await;
    }

    let Some(body) = &call.body else { return };
    // A body cut short, as a dropped connection or a buggy client sends it.
    let whole = body.to_string();
    let truncated = &whole[..whole.len() - 1];
    for (what, raw) in [
        ("truncated JSON", truncated),
        ("not JSON at all", "{items: nope}"),
        ("an empty body", ""),
    ] {
        let response = call
            .send_raw(app, bearer, "application/json", raw.to_owned())
            .await;
        refusal(response, 400, "malformed-json", &format!("{call}: {what}")).await;
    }
    let text = call
        .send_raw(app, bearer, "text/plain", body.to_string())
        .await;
    refusal(
        text,
        415,
        "unsupported-media-type",
        &format!("{call}: text/plain"),
    )
    .await;
    let not_an_object = call.clone().json(json!([body]));
    not_an_object
        .refused(app, bearer, 422, "validation-failed", "an array body")
        .await;

    let fields = body.as_object().expect("bodies are JSON objects");
    let mut unknown = body.clone();
    unknown["bogus"] = json!(true);
    let problem = call
        .clone()
        .json(unknown)
        .refused(app, bearer, 422, "validation-failed", "an unknown field")
        .await;
    assert_eq!(problem["errors"][0]["field"], "bogus", "{call}: {problem}");
    for (field, value) in fields {
        let mut mistyped = body.clone();
        mistyped[field] = wrong_type(value);
        call.clone()
            .json(mistyped)
            .refused(
                app,
                bearer,
                422,
                "validation-failed",
                &format!("{field} of the wrong type"),
            )
            .await;
    }
    for field in rules.required {
        let mut missing = body.clone();
        missing.as_object_mut().unwrap().remove(*field);
        let problem = call
            .clone()
            .json(missing)
            .refused(
                app,
                bearer,
                422,
                "validation-failed",
                &format!("{field} missing"),
            )
            .await;
        assert_eq!(problem["errors"][0]["field"], *field, "{call}: {problem}");
    }
}

/// A JSON body one byte over the gateway's limit.
pub fn huge_body(app: &TestApp) -> Vec<u8> {
    let mut huge = br#"{"pad":""#.to_vec();
    huge.resize(app.settings.max_body_bytes + 1, b'x');
    huge.extend_from_slice(br#""}"#);
    huge
}

/// `bytes` sent in chunks without a declared length.
pub fn streamed(bytes: &[u8]) -> reqwest::Body {
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        bytes.chunks(64 * 1024).map(|c| Ok(c.to_vec())).collect();
    reqwest::Body::wrap_stream(futures_util::stream::iter(chunks))
}

/// What a client sees at each `(path, token)`, each read with 200; compare two looks to show
/// that nothing visible changed in between.
pub async fn look(app: &TestApp, views: &[(String, Option<&str>)]) -> Vec<Value> {
    let mut seen = Vec::with_capacity(views.len());
    for (path, token) in views {
        seen.push(Call::get(path.clone()).expect(app, *token, 200).await);
    }
    seen
}

/// The id in a JSON resource.
pub fn id_of(resource: &Value) -> Uuid {
    resource["id"].as_str().unwrap().parse().unwrap()
}

/// Places an order through `POST /orders` that must be created; returns its id.
pub async fn place_ok(app: &TestApp, user: &TestUser, lines: &[(Uuid, i64)]) -> Uuid {
    let response = app.place_order(user, lines, None).await;
    assert_eq!(response.status(), 201, "placing {lines:?}");
    id_of(&response.json().await.unwrap())
}

/// Waits until `GET /products/{id}` shows `stock` (releases travel through the outbox).
pub async fn await_visible_stock(app: &TestApp, product: Uuid, stock: i64) {
    wait::until(
        &format!("product {product} to show stock {stock}"),
        DEADLINE,
        || async {
            let seen = Call::get(format!("/products/{product}"))
                .expect(app, None, 200)
                .await;
            (seen["stock"] == stock).then_some(())
        },
    )
    .await;
}
