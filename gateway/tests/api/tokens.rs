//! Forged, expired and misused tokens are refused at the gateway.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};
use shop_testkit::{TestApp, TestUser};

use crate::expect_problem;

fn claims_of(user: &TestUser) -> Value {
    let payload = user.tokens.access_token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

fn sign(claims: &Value, secret: &str, kid: &str) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(kid.into());
    encode(
        &header,
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

async fn me_with(app: &TestApp, authorization: &str) -> reqwest::Response {
    app.get("/me")
        .header("authorization", authorization)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn forged_and_misused_tokens_are_401() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    let secret = app.settings.jwt_secret().to_owned();
    let claims = claims_of(&user);
    // The genuine token and a re-signed copy work: the forgeries below differ in one way each.
    assert_eq!(me_with(&app, &user.bearer()).await.status(), 200);
    assert_eq!(
        me_with(&app, &format!("Bearer {}", sign(&claims, &secret, "k1")))
            .await
            .status(),
        200
    );

    let now = chrono::Utc::now().timestamp();
    let with = |key: &str, value: Value| {
        let mut forged = claims.clone();
        forged[key] = value;
        forged
    };
    let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&with("role", json!("admin"))).unwrap());
    let parts: Vec<&str> = user.tokens.access_token.split('.').collect();
    let forgeries = [
        (
            "another key",
            sign(&claims, "another-secret-that-is-long-enough!!", "k1"),
        ),
        ("unknown kid", sign(&claims, &secret, "k9")),
        (
            "alg none",
            format!(
                "{}.{}.",
                URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT","kid":"k1"}"#),
                parts[1]
            ),
        ),
        ("HS512", {
            let mut header = Header::new(Algorithm::HS512);
            header.kid = Some("k1".into());
            encode(
                &header,
                &claims,
                &EncodingKey::from_secret(secret.as_bytes()),
            )
            .unwrap()
        }),
        (
            "tampered payload",
            format!("{}.{}.{}", parts[0], body, parts[2]),
        ),
        (
            "expired",
            sign(&with("exp", json!(now - 120)), &secret, "k1"),
        ),
        (
            "wrong audience",
            sign(&with("aud", json!("another-api")), &secret, "k1"),
        ),
        (
            "wrong issuer",
            sign(&with("iss", json!("someone-else")), &secret, "k1"),
        ),
        (
            "wrong type",
            sign(&with("typ", json!("refresh")), &secret, "k1"),
        ),
        (
            "refresh token as access token",
            user.tokens.refresh_token.clone(),
        ),
        ("garbage", "not.a.token".into()),
    ];
    for (what, token) in forgeries {
        let response = me_with(&app, &format!("Bearer {token}")).await;
        assert_eq!(response.status(), 401, "{what} was accepted");
        expect_problem(response, 401, "unauthorized").await;
    }
    for header in [
        "",
        "Bearer",
        "Basic dXNlcjpwYXNz",
        &user.tokens.access_token,
    ] {
        assert_eq!(me_with(&app, header).await.status(), 401, "{header:?}");
    }
    let none = app.get("/me").send().await.unwrap();
    expect_problem(none, 401, "unauthorized").await;
}
