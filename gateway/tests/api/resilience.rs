//! Redis is a cache and a transport: losing it degrades, never breaks.

use std::time::Duration;

use shop_testkit::{TestApp, wait};

use crate::assert_locked_by_wrong_passwords;

#[tokio::test]
async fn with_redis_cut_logins_work_and_nothing_answers_5xx() {
    let app = TestApp::builder().redis_through_proxy().spawn().await;
    let user = app.new_user().await;
    let second = app.new_user().await;
    app.redis_proxy().cut();

    // Logging in, using tokens (the session check falls back to the user service) and
    // refreshing all work.
    let tokens = app.login_ok(&user.email, &user.password).await;
    let me = app
        .get("/me")
        .bearer_auth(&tokens.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);
    let refreshed = app
        .post(
            "/refresh",
            &serde_json::json!({"refreshToken": tokens.refresh_token}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(refreshed.status(), 200);

    // The failed-login throttle keeps counting in memory.
    assert_locked_by_wrong_passwords(&app, &second.email, &second.password).await;

    // Logout is durable in Postgres even though the denylist cannot be written now.
    let logout = app
        .http
        .post(app.url("/logout"))
        .bearer_auth(&user.tokens.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), 204);
    for path in ["/me", "/products", "/users"] {
        let response = app
            .get(path)
            .bearer_auth(&user.tokens.access_token)
            .send()
            .await
            .unwrap();
        assert!(
            response.status().as_u16() < 500,
            "{path}: {}",
            response.status()
        );
    }

    // Once Redis is back, the revocation reaches the denylist and the token is refused.
    app.redis_proxy().restore();
    wait::until(
        "the logged-out token to be refused",
        Duration::from_secs(30),
        || async {
            let status = app
                .get("/me")
                .bearer_auth(&user.tokens.access_token)
                .send()
                .await
                .unwrap()
                .status();
            (status == 401).then_some(())
        },
    )
    .await;
}
