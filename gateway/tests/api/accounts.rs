//! Registration, login and profiles.

use serde_json::{Value, json};
use shop_testkit::TestApp;

use crate::expect_problem;

#[tokio::test]
async fn register_login_and_read_me() {
    let app = TestApp::spawn().await;
    let response = app
        .post(
            "/register",
            &json!({"email": " Ann@Example.COM ", "password": "correct horse", "name": "Ann"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers()["location"], "/me");
    let user: Value = response.json().await.unwrap();
    assert_eq!(user["email"], "ann@example.com");
    assert_eq!(user["role"], "user");
    assert_eq!(user["name"], "Ann");
    assert!(user.get("passwordHash").is_none() && user.get("password_hash").is_none());

    let tokens = app.login_ok("ann@example.com", "correct horse").await;
    assert_eq!(tokens.token_type, "Bearer");
    assert_eq!(tokens.expires_in, 900);
    assert_ne!(tokens.refresh_token, tokens.access_token);

    let me: Value = app
        .get("/me")
        .bearer_auth(&tokens.access_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["id"], user["id"]);
    assert_eq!(me["email"], "ann@example.com");
}

#[tokio::test]
async fn duplicate_and_case_variant_emails_conflict() {
    let app = TestApp::spawn().await;
    assert_eq!(
        app.register("bob@example.com", "password-1").await.status(),
        201
    );
    for variant in ["bob@example.com", "BOB@Example.com", "  bob@EXAMPLE.com"] {
        expect_problem(
            app.register(variant, "password-2").await,
            409,
            "email-taken",
        )
        .await;
    }
    // The first password still works: nothing was overwritten.
    app.login_ok("bob@example.com", "password-1").await;
}

#[tokio::test]
async fn invalid_registrations_are_422_and_create_nothing() {
    let app = TestApp::spawn().await;
    let cases = [
        (
            json!({"email": "not-an-email", "password": "long enough"}),
            "email",
        ),
        (
            json!({"email": "a@example.com", "password": "short"}),
            "password",
        ),
        (
            json!({"email": "a@example.com", "password": "x".repeat(73)}),
            "password",
        ),
        (
            json!({"email": "a@example.com", "password": "€".repeat(25)}),
            "password",
        ),
        (
            json!({"email": "a@example.com", "password": "long enough", "role": "admin"}),
            "role",
        ),
        (json!({"password": "long enough"}), "email"),
        (
            json!({"email": "a@example.com", "password": 12345678}),
            "password",
        ),
    ];
    for (body, field) in cases {
        let problem = expect_problem(
            app.post("/register", &body).send().await.unwrap(),
            422,
            "validation-failed",
        )
        .await;
        assert_eq!(problem["errors"][0]["field"], field, "{body}: {problem}");
    }
    let malformed = app
        .http
        .post(app.url("/register"))
        .header("content-type", "application/json")
        .body("{\"email\": ")
        .send()
        .await
        .unwrap();
    expect_problem(malformed, 400, "malformed-json").await;
    let not_json = app
        .http
        .post(app.url("/register"))
        .header("content-type", "text/plain")
        .body("email=a@example.com")
        .send()
        .await
        .unwrap();
    expect_problem(not_json, 415, "unsupported-media-type").await;

    let users = app
        .db()
        .client()
        .await
        .query_one(
            "SELECT count(*) FROM users.users WHERE email = 'a@example.com'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(users.get::<_, i64>(0), 0);
}

#[tokio::test]
async fn wrong_password_and_unknown_email_answer_identically() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    let wrong_password = app.login(&user.email, "not the password").await;
    let unknown_email = app.login("nobody@example.com", "not the password").await;
    assert_eq!(wrong_password.status(), 401);
    assert_eq!(unknown_email.status(), 401);
    let a: Value = wrong_password.json().await.unwrap();
    let b: Value = unknown_email.json().await.unwrap();
    assert_eq!(a, b);
    assert_eq!(a["code"], "unauthorized");
}

#[tokio::test]
async fn profile_name_can_be_changed_and_cleared() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    let renamed: Value = app
        .patch("/me", &json!({"name": "  Zoë  "}))
        .header("authorization", user.bearer())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(renamed["name"], "Zoë");
    let unchanged: Value = app
        .patch("/me", &json!({}))
        .header("authorization", user.bearer())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(unchanged["name"], "Zoë");
    let cleared: Value = app
        .patch("/me", &json!({"name": null}))
        .header("authorization", user.bearer())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(cleared["name"], Value::Null);
    let too_long = app
        .patch("/me", &json!({"name": "x".repeat(101)}))
        .header("authorization", user.bearer())
        .send()
        .await
        .unwrap();
    expect_problem(too_long, 422, "validation-failed").await;
    let email_change = app
        .patch("/me", &json!({"email": "other@example.com"}))
        .header("authorization", user.bearer())
        .send()
        .await
        .unwrap();
    expect_problem(email_change, 422, "validation-failed").await;
}

#[tokio::test]
async fn only_admins_list_users_and_pages_are_bounded() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    let admin = app.admin().await;
    let page: Value = app
        .get("/users?limit=1&page=1")
        .header("authorization", admin.bearer())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    assert_eq!(page["total"], 2);
    assert_eq!(page["limit"], 1);
    assert_eq!(page["items"][0]["email"], user.email, "newest first");

    let forbidden = app
        .get("/users")
        .header("authorization", user.bearer())
        .send()
        .await
        .unwrap();
    expect_problem(forbidden, 403, "forbidden").await;
    for query in ["limit=0", "limit=101", "page=0", "limit=abc"] {
        let response = app
            .get(&format!("/users?{query}"))
            .header("authorization", admin.bearer())
            .send()
            .await
            .unwrap();
        expect_problem(response, 422, "validation-failed").await;
    }
}

#[tokio::test]
async fn control_characters_are_refused_not_stored() {
    let app = TestApp::spawn().await;
    let with_nul = app
        .post(
            "/register",
            &json!({"email": "nul@example.com", "password": "long enough", "name": "A\u{0}B"}),
        )
        .send()
        .await
        .unwrap();
    let problem = expect_problem(with_nul, 422, "validation-failed").await;
    assert_eq!(problem["errors"][0]["field"], "name");
    let bad_email = app.register("nul\u{0}@example.com", "long enough").await;
    expect_problem(bad_email, 422, "validation-failed").await;
    let login = app.login("nul\u{0}@example.com", "long enough").await;
    expect_problem(login, 401, "unauthorized").await;

    let user = app.new_user().await;
    let rename = app
        .patch("/me", &json!({"name": "x\u{0}y"}))
        .header("authorization", user.bearer())
        .send()
        .await
        .unwrap();
    expect_problem(rename, 422, "validation-failed").await;
}
