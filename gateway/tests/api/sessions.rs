//! Refresh rotation, reuse detection, logout, password changes and disabled accounts end
//! sessions at once.

use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::{Value, json};
use shop_contracts::TokenResponse;
use shop_testkit::TestApp;

use crate::{assert_locked_by_wrong_passwords, expect_problem};

async fn refresh(app: &TestApp, token: &str) -> reqwest::Response {
    app.post("/refresh", &json!({"refreshToken": token}))
        .send()
        .await
        .unwrap()
}

async fn me_status(app: &TestApp, access_token: &str) -> u16 {
    app.get("/me")
        .bearer_auth(access_token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn refresh_rotates_and_reuse_revokes_the_session() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    let first = user.tokens.clone();

    let response = refresh(&app, &first.refresh_token).await;
    assert_eq!(response.status(), 200);
    let second: TokenResponse = response.json().await.unwrap();
    assert_ne!(second.refresh_token, first.refresh_token);
    assert_eq!(me_status(&app, &second.access_token).await, 200);

    // The first refresh token was rotated away: presenting it again is reuse.
    expect_problem(
        refresh(&app, &first.refresh_token).await,
        401,
        "unauthorized",
    )
    .await;
    // The whole session is gone: the newest pair too.
    expect_problem(
        refresh(&app, &second.refresh_token).await,
        401,
        "unauthorized",
    )
    .await;
    assert_eq!(me_status(&app, &second.access_token).await, 401);
    assert_eq!(me_status(&app, &first.access_token).await, 401);
    // Other sessions of the user are untouched.
    let other = app.login_ok(&user.email, &user.password).await;
    assert_eq!(me_status(&app, &other.access_token).await, 200);

    expect_problem(refresh(&app, "made-up-token").await, 401, "unauthorized").await;
}

#[tokio::test]
async fn concurrent_refreshes_with_one_token_yield_one_pair() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    let attempts = (0..6).map(|_| refresh(&app, &user.tokens.refresh_token));
    let statuses: Vec<u16> = futures_util::future::join_all(attempts)
        .await
        .iter()
        .map(|r| r.status().as_u16())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 401),
        "{statuses:?}"
    );
}

#[tokio::test]
async fn logout_ends_the_session_at_once() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    let other = app.login_ok(&user.email, &user.password).await;
    let response = app
        .http
        .post(app.url("/logout"))
        .header("authorization", user.bearer())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    assert_eq!(me_status(&app, &user.tokens.access_token).await, 401);
    expect_problem(
        refresh(&app, &user.tokens.refresh_token).await,
        401,
        "unauthorized",
    )
    .await;
    assert_eq!(
        me_status(&app, &other.access_token).await,
        200,
        "only that session ends"
    );
}

#[tokio::test]
async fn password_change_ends_other_sessions() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    let other = app.login_ok(&user.email, &user.password).await;

    let wrong = app
        .post(
            "/me/password",
            &json!({"currentPassword": "not it", "newPassword": "a new password"}),
        )
        .header("authorization", user.bearer())
        .send()
        .await
        .unwrap();
    let problem = expect_problem(wrong, 422, "validation-failed").await;
    assert_eq!(problem["errors"][0]["field"], "currentPassword");
    let short = app
        .post(
            "/me/password",
            &json!({"currentPassword": user.password, "newPassword": "short"}),
        )
        .header("authorization", user.bearer())
        .send()
        .await
        .unwrap();
    expect_problem(short, 422, "validation-failed").await;
    assert_eq!(
        me_status(&app, &other.access_token).await,
        200,
        "failed changes end nothing"
    );

    let changed = app
        .post(
            "/me/password",
            &json!({"currentPassword": user.password, "newPassword": "a new password"}),
        )
        .header("authorization", user.bearer())
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), 204);
    assert_eq!(me_status(&app, &other.access_token).await, 401);
    expect_problem(
        refresh(&app, &other.refresh_token).await,
        401,
        "unauthorized",
    )
    .await;
    assert_eq!(
        me_status(&app, &user.tokens.access_token).await,
        200,
        "the changing session stays"
    );
    assert_eq!(app.login(&user.email, &user.password).await.status(), 401);
    app.login_ok(&user.email, "a new password").await;
}

#[tokio::test]
async fn disabling_a_user_ends_their_sessions_and_logins() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    let admin = app.admin().await;

    // Authorisation comes before validation: a user gets 403 even for a bad body.
    let by_user = app
        .patch(&format!("/users/{}", admin.id), &json!({"role": "emperor"}))
        .header("authorization", user.bearer())
        .send()
        .await
        .unwrap();
    expect_problem(by_user, 403, "forbidden").await;
    let bad_id = app
        .patch("/users/not-a-uuid", &json!({"disabled": true}))
        .header("authorization", admin.bearer())
        .send()
        .await
        .unwrap();
    expect_problem(bad_id, 400, "invalid-id").await;
    let missing = app
        .patch(
            &format!("/users/{}", uuid::Uuid::now_v7()),
            &json!({"disabled": true}),
        )
        .header("authorization", admin.bearer())
        .send()
        .await
        .unwrap();
    expect_problem(missing, 404, "not-found").await;
    // Nobody locks themselves out: an admin cannot change their own account here.
    for change in [
        json!({"disabled": true}),
        json!({"role": "user"}),
        json!({"role": "admin"}),
    ] {
        let own = app
            .patch(&format!("/users/{}", admin.id), &change)
            .header("authorization", admin.bearer())
            .send()
            .await
            .unwrap();
        expect_problem(own, 403, "forbidden").await;
    }
    let me = app
        .get("/me")
        .header("authorization", admin.bearer())
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200, "the admin's session lives on");

    let disabled: Value = app
        .patch(&format!("/users/{}", user.id), &json!({"disabled": true}))
        .header("authorization", admin.bearer())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(disabled["disabled"], true);
    assert_eq!(me_status(&app, &user.tokens.access_token).await, 401);
    expect_problem(
        refresh(&app, &user.tokens.refresh_token).await,
        401,
        "unauthorized",
    )
    .await;
    expect_problem(
        app.login(&user.email, &user.password).await,
        401,
        "unauthorized",
    )
    .await;

    let promoted: Value = app
        .patch(
            &format!("/users/{}", user.id),
            &json!({"disabled": false, "role": "admin"}),
        )
        .header("authorization", admin.bearer())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(promoted["role"], "admin");
    let again = app.login_ok(&user.email, &user.password).await;
    let users = app
        .get("/users")
        .bearer_auth(&again.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(users.status(), 200, "the new role is in new tokens");
}

#[tokio::test]
async fn failed_logins_are_throttled_per_client_and_email() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    for _ in 0..5 {
        expect_problem(
            app.login(&user.email, "wrong password").await,
            401,
            "unauthorized",
        )
        .await;
    }
    let throttled = app.login(&user.email, &user.password).await;
    let retry_after: u64 = throttled.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after > 0 && retry_after <= 900, "{retry_after}");
    expect_problem(throttled, 429, "rate-limited").await;
    // Another account from the same client is not affected.
    let other = app.new_user().await;
    app.login_ok(&other.email, &other.password).await;
}

#[tokio::test]
async fn concurrent_guesses_never_exceed_the_attempt_limit() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    let guesses = (0..20).map(|_| app.login(&user.email, "wrong password"));
    let statuses: Vec<u16> = futures_util::future::join_all(guesses)
        .await
        .iter()
        .map(|r| r.status().as_u16())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 401).count(),
        5,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        15,
        "{statuses:?}"
    );
}

#[tokio::test]
async fn logins_refused_as_busy_do_not_lock_out_the_right_password() {
    // Two bcrypt workers (one per core, at least) and no queue: under load, most logins
    // are refused with 503 "busy".
    let app = TestApp::builder()
        .configure(|s| {
            s.bcrypt_cost = 10;
            s.bcrypt_queue = 0;
        })
        .spawn()
        .await;
    let owner = app.new_user().await;
    let mut others = Vec::new();
    for _ in 0..6 {
        others.push(app.new_user().await);
    }
    let stop = AtomicBool::new(false);
    let load = futures_util::future::join_all(others.iter().map(|other| async {
        while !stop.load(Ordering::Relaxed) {
            app.login(&other.email, &other.password).await;
        }
    }));
    // The owner types the right password while the service is busy, until more busy answers
    // in a row than the attempt limit (5) allows guesses.
    let owner_tries = async {
        let (mut busy_in_a_row, mut tries) = (0, 0);
        while busy_in_a_row <= 5 && tries < 500 {
            tries += 1;
            let response = app.login(&owner.email, &owner.password).await;
            match response.status().as_u16() {
                503 => busy_in_a_row += 1,
                200 => busy_in_a_row = 0,
                status => panic!("the right password answered {status}"),
            }
        }
        stop.store(true, Ordering::Relaxed);
        busy_in_a_row
    };
    let (busy_in_a_row, _) = tokio::join!(owner_tries, load);
    assert!(busy_in_a_row > 5, "the load never made the service busy");
    // The burst is over: the right password works, and so does a wrong one's count.
    app.login_ok(&owner.email, &owner.password).await;
    assert_locked_by_wrong_passwords(&app, &owner.email, &owner.password).await;
}

#[tokio::test]
async fn logins_racing_a_password_change_do_not_survive_it() {
    let app = TestApp::builder()
        .configure(|s| s.login_throttle_limit = 1000)
        .spawn()
        .await;
    let user = app.new_user().await;
    let logins =
        futures_util::future::join_all((0..24).map(|_| app.login(&user.email, &user.password)));
    let change = app
        .post(
            "/me/password",
            &json!({"currentPassword": user.password, "newPassword": "a new password"}),
        )
        .header("authorization", user.bearer())
        .send();
    let (logins, change) = tokio::join!(logins, change);
    assert_eq!(change.unwrap().status(), 204);
    for login in logins {
        if login.status() == 200 {
            let tokens: TokenResponse = login.json().await.unwrap();
            assert_eq!(
                me_status(&app, &tokens.access_token).await,
                401,
                "a session opened with the old password outlived the change"
            );
            expect_problem(
                refresh(&app, &tokens.refresh_token).await,
                401,
                "unauthorized",
            )
            .await;
        } else {
            assert_eq!(login.status(), 401);
        }
    }
}

#[tokio::test]
async fn password_change_guesses_are_throttled() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    let attempt = |current: &str| {
        app.post(
            "/me/password",
            &json!({"currentPassword": current, "newPassword": "a new password"}),
        )
        .header("authorization", user.bearer())
        .send()
    };
    for _ in 0..5 {
        expect_problem(
            attempt("a wrong guess").await.unwrap(),
            422,
            "validation-failed",
        )
        .await;
    }
    let throttled = attempt(&user.password).await.unwrap();
    assert!(throttled.headers().contains_key("retry-after"));
    expect_problem(throttled, 429, "rate-limited").await;
}
