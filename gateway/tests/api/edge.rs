//! The gateway's edge rules: the allowlist, header hygiene, body limits and down services.

use std::time::Duration;

use serde_json::{Value, json};
use shop_testkit::{Component, TestApp};

use crate::expect_problem;

#[tokio::test]
async fn internal_and_oddly_spelled_paths_are_404() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    let sid = uuid::Uuid::now_v7();
    for path in [
        format!("/internal/sessions/{sid}"),
        format!("//internal/sessions/{sid}"),
        format!("/%2Finternal/sessions/{sid}"),
        format!("/%2finternal%2fsessions%2f{sid}"),
        format!("/me/../internal/sessions/{sid}"),
        "/me/".to_owned(),
        "//me".to_owned(),
        "/%6De".to_owned(),
        "/nothing-here".to_owned(),
    ] {
        let response = app
            .get(&path)
            .header("authorization", user.bearer())
            .send()
            .await
            .unwrap();
        expect_problem(response, 404, "not-found").await;
    }
    // Listed paths with another method are not routes either.
    let response = app
        .http
        .delete(app.url("/me"))
        .header("authorization", user.bearer())
        .send()
        .await
        .unwrap();
    expect_problem(response, 404, "not-found").await;
}

#[tokio::test]
async fn client_sent_identity_headers_are_ignored() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    let admin = app.admin().await;
    let me: Value = app
        .get("/me")
        .header("authorization", user.bearer())
        .header("x-user-id", admin.id.to_string())
        .header("x-user-role", "admin")
        .header("x-session-id", uuid::Uuid::now_v7().to_string())
        .header("x-internal-token", app.settings.internal_token())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["id"], user.id.to_string());

    let users = app
        .get("/users")
        .header("authorization", user.bearer())
        .header("x-user-role", "admin")
        .send()
        .await
        .unwrap();
    expect_problem(users, 403, "forbidden").await;

    let anonymous = app
        .get("/me")
        .header("x-user-id", user.id.to_string())
        .header("x-user-role", "user")
        .header("x-session-id", uuid::Uuid::now_v7().to_string())
        .send()
        .await
        .unwrap();
    expect_problem(anonymous, 401, "unauthorized").await;
}

#[tokio::test]
async fn services_refuse_calls_without_the_internal_credential() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    let direct = format!("http://{}/me", app.addr(Component::User));
    let identity = |request: reqwest::RequestBuilder| {
        request
            .header("x-user-id", user.id.to_string())
            .header("x-user-role", "user")
            .header("x-session-id", uuid::Uuid::now_v7().to_string())
    };
    let without = identity(app.http.get(&direct)).send().await.unwrap();
    expect_problem(without, 401, "unauthorized").await;
    let wrong = identity(app.http.get(&direct))
        .header("x-internal-token", "x".repeat(40))
        .send()
        .await
        .unwrap();
    expect_problem(wrong, 401, "unauthorized").await;
    let right = identity(app.http.get(&direct))
        .header("x-internal-token", app.settings.internal_token())
        .send()
        .await
        .unwrap();
    assert_eq!(right.status(), 200);
    // Health stays open for probes.
    let health = app
        .http
        .get(format!("http://{}/healthz", app.addr(Component::User)))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
}

#[tokio::test]
async fn a_stopped_service_is_a_prompt_503_and_comes_back() {
    let mut app = TestApp::spawn().await;
    let user = app.new_user().await;
    app.stop(Component::User).await;
    // A deadline on the client: a hang fails the test instead of stalling it.
    let response = app
        .get("/me")
        .header("authorization", user.bearer())
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .unwrap();
    assert!(response.headers().contains_key("retry-after"));
    expect_problem(response, 503, "dependency-unavailable").await;
    let login = app.login(&user.email, &user.password).await;
    expect_problem(login, 503, "dependency-unavailable").await;

    app.start(Component::User).await;
    let me = app
        .get("/me")
        .header("authorization", user.bearer())
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);
}

#[tokio::test]
async fn oversized_bodies_are_413_and_bodies_stream_through() {
    let app = TestApp::builder()
        .configure(|s| s.max_body_bytes = 4096)
        .spawn()
        .await;
    let big = json!({"email": "big@example.com", "password": "x".repeat(8192)});
    let declared = app.post("/register", &big).send().await.unwrap();
    expect_problem(declared, 413, "payload-too-large").await;

    // Without a declared length the limit applies while streaming.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = vec![
        Ok(b"{\"email\":\"big@example.com\",\"password\":\"".to_vec()),
        Ok(vec![b'x'; 8192]),
        Ok(b"\"}".to_vec()),
    ];
    let streamed = app
        .http
        .post(app.url("/register"))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    expect_problem(streamed, 413, "payload-too-large").await;

    // Clients sending bodies that are too large are their own problem: they do not open the
    // circuit to the user service for everyone else.
    let user = app.new_user().await;
    for _ in 0..8 {
        let chunks: Vec<Result<Vec<u8>, std::io::Error>> = vec![Ok(vec![b' '; 8192])];
        let response = app
            .http
            .post(app.url("/login"))
            .header("content-type", "application/json")
            .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
                chunks,
            )))
            .send()
            .await
            .unwrap();
        expect_problem(response, 413, "payload-too-large").await;
    }
    app.login_ok(&user.email, &user.password).await;

    // A chunked body within the limit reaches the service intact.
    let ok_chunks: Vec<Result<Vec<u8>, std::io::Error>> = vec![
        Ok(b"{\"email\":\"small@example.com\",".to_vec()),
        Ok(b"\"password\":\"long enough\"}".to_vec()),
    ];
    let created = app
        .http
        .post(app.url("/register"))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            ok_chunks,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
}

#[tokio::test]
async fn request_ids_are_echoed_or_made() {
    let app = TestApp::spawn().await;
    let given = app
        .get("/healthz")
        .header("x-request-id", "client-chosen-id-1")
        .send()
        .await
        .unwrap();
    assert_eq!(given.headers()["x-request-id"], "client-chosen-id-1");
    let made = app
        .get("/products")
        .header("x-request-id", "bad id with spaces")
        .send()
        .await
        .unwrap();
    let id = made.headers()["x-request-id"].to_str().unwrap();
    assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
}
