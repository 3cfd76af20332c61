//! The second factor: enrolment, sign-in with one-time codes, and administration that needs
//! it when ADMIN_REQUIRE_MFA is on.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use shop_testkit::{ADMIN_EMAIL, ADMIN_PASSWORD, TestApp};
use totp_rs::{Builder, Secret};

use crate::expect_problem;

/// An authenticator app holding the enrolled secret.
struct Authenticator {
    secret: Vec<u8>,
}

impl Authenticator {
    /// The code of TOTP step `step`.
    fn code(&self, step: u64) -> String {
        Builder::new()
            .with_secret(self.secret.clone())
            .build_noncompliant()
            .generate(step * 30)
            .to_string()
    }
}

fn step_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 30
}

/// Enrols and confirms a second factor for the bearer; returns the app and the step its
/// confirming code was for.
async fn enrol(app: &TestApp, bearer: &str) -> (Authenticator, u64) {
    let enrolment = app
        .post("/me/mfa", &json!({}))
        .header("authorization", bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(enrolment.status(), 200);
    let enrolment: Value = enrolment.json().await.unwrap();
    let uri = enrolment["otpauthUri"].as_str().unwrap();
    assert!(uri.starts_with("otpauth://totp/Shop:"), "{uri}");
    assert!(enrolment["qrSvg"].as_str().unwrap().starts_with("<svg"));
    let secret = Secret::try_from_base32(enrolment["secret"].as_str().unwrap())
        .unwrap()
        .as_bytes()
        .to_vec();
    let authenticator = Authenticator { secret };
    let step = step_now();
    let confirmed = app
        .post(
            "/me/mfa/confirm",
            &json!({ "code": authenticator.code(step) }),
        )
        .header("authorization", bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(confirmed.status(), 204);
    (authenticator, step)
}

async fn login_with(app: &TestApp, email: &str, password: &str, otp: &str) -> reqwest::Response {
    app.post(
        "/login",
        &json!({ "email": email, "password": password, "otp": otp }),
    )
    .send()
    .await
    .unwrap()
}

/// The claims of an access token (already verified by whoever issued it).
fn claims(token: &str) -> Value {
    use base64::Engine;
    let payload = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

#[tokio::test]
async fn sign_in_with_a_second_factor_takes_each_code_once_within_one_step() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    let (authenticator, step) = enrol(&app, &user.bearer()).await;
    let profile: Value = crate::me(&app, &user.bearer()).await.json().await.unwrap();
    assert_eq!(profile["mfaEnabled"], true);

    // The right password alone asks for the code; a wrong one says nothing more.
    expect_problem(
        app.login(&user.email, &user.password).await,
        401,
        "mfa-required",
    )
    .await;
    expect_problem(
        app.login(&user.email, "not the password").await,
        401,
        "unauthorized",
    )
    .await;
    // The test runs within a step or two of `step`: three steps ahead is out of the window.
    expect_problem(
        login_with(
            &app,
            &user.email,
            &user.password,
            &authenticator.code(step + 3),
        )
        .await,
        401,
        "unauthorized",
    )
    .await;
    let valid: Vec<String> = (step - 1..=step + 2)
        .map(|s| authenticator.code(s))
        .collect();
    let wrong = (0..)
        .map(|n| format!("{n:06}"))
        .find(|c| !valid.contains(c))
        .unwrap();
    expect_problem(
        login_with(&app, &user.email, &user.password, &wrong).await,
        401,
        "unauthorized",
    )
    .await;
    // One step ahead of the confirming code: within the window, and not used yet.
    let next = authenticator.code(step + 1);
    let signed_in = login_with(&app, &user.email, &user.password, &next).await;
    assert_eq!(signed_in.status(), 200);
    let tokens: Value = signed_in.json().await.unwrap();
    let access = tokens["accessToken"].as_str().unwrap();
    assert_eq!(claims(access)["amr"], json!(["pwd", "otp"]));
    // Used once; and an older code is never taken after a newer one.
    expect_problem(
        login_with(&app, &user.email, &user.password, &next).await,
        401,
        "unauthorized",
    )
    .await;
    expect_problem(
        login_with(&app, &user.email, &user.password, &authenticator.code(step)).await,
        401,
        "unauthorized",
    )
    .await;
    // A refreshed token keeps the second factor of its session.
    let refreshed: Value = app
        .post(
            "/refresh",
            &json!({ "refreshToken": tokens["refreshToken"] }),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        claims(refreshed["accessToken"].as_str().unwrap())["amr"],
        json!(["pwd", "otp"])
    );
}

#[tokio::test]
async fn enrolment_needs_a_code_from_the_new_secret_and_removal_a_current_one() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    // No enrolment yet: nothing to confirm.
    let body = expect_problem(
        app.post("/me/mfa/confirm", &json!({ "code": "123456" }))
            .header("authorization", user.bearer())
            .send()
            .await
            .unwrap(),
        422,
        "validation-failed",
    )
    .await;
    assert_eq!(body["errors"][0]["field"], "code");
    let (authenticator, step) = enrol(&app, &user.bearer()).await;
    // Enabled: a second enrolment is refused until it is removed.
    expect_problem(
        app.post("/me/mfa", &json!({}))
            .header("authorization", user.bearer())
            .send()
            .await
            .unwrap(),
        409,
        "mfa-already-enabled",
    )
    .await;
    let remove = |code: String| {
        let app = &app;
        let bearer = user.bearer();
        async move {
            app.http
                .delete(app.url("/me/mfa"))
                .header("authorization", bearer)
                .json(&json!({ "code": code }))
                .send()
                .await
                .unwrap()
        }
    };
    // The confirming code was used already.
    expect_problem(
        remove(authenticator.code(step)).await,
        422,
        "validation-failed",
    )
    .await;
    assert_eq!(remove(authenticator.code(step + 1)).await.status(), 204);
    assert_eq!(app.login(&user.email, &user.password).await.status(), 200);
}

#[tokio::test]
async fn admin_routes_need_a_second_factor_when_required() {
    let app = TestApp::builder()
        .configure(|s| s.admin_require_mfa = Some(true))
        .spawn()
        .await;
    // What each bearer gets creating a product.
    let create = |bearer: String| {
        let app = &app;
        async move {
            app.post(
                "/products",
                &json!({"name": "Lamp", "priceCents": 4200, "stock": 3}),
            )
            .header("authorization", bearer)
            .send()
            .await
            .unwrap()
        }
    };
    let admin = app.admin().await;
    expect_problem(create(admin.bearer()).await, 403, "mfa-required").await;
    // A user is still refused for the role, not the factor.
    let user = app.new_user().await;
    expect_problem(create(user.bearer()).await, 403, "forbidden").await;

    // Enrol with the password-only session, then sign in again with a code.
    let (authenticator, step) = enrol(&app, &admin.bearer()).await;
    expect_problem(create(admin.bearer()).await, 403, "mfa-required").await;
    let signed_in = login_with(
        &app,
        ADMIN_EMAIL,
        ADMIN_PASSWORD,
        &authenticator.code(step + 1),
    )
    .await;
    assert_eq!(signed_in.status(), 200);
    let tokens: Value = signed_in.json().await.unwrap();
    let bearer = format!("Bearer {}", tokens["accessToken"].as_str().unwrap());
    assert_eq!(create(bearer).await.status(), 201);
}

#[tokio::test]
async fn one_code_sent_by_many_sign_ins_at_once_opens_one_session() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    let (authenticator, step) = enrol(&app, &user.bearer()).await;
    let code = authenticator.code(step + 1);
    let answers = futures_util::future::join_all(
        (0..8).map(|_| login_with(&app, &user.email, &user.password, &code)),
    )
    .await;
    let statuses: Vec<u16> = answers.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| [200, 401, 429].contains(s)),
        "{statuses:?}"
    );
}
