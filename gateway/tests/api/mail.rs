//! Password reset, email verification and order mail, read back from the test's own SMTP
//! server.

use std::time::Duration;

use serde_json::{Value, json};
use shop_testkit::{TestApp, TestUser, wait};

use crate::{expect_problem, me};

fn paying(s: &mut shop_settings::Settings) {
    s.payment_failed_probability = 0;
    s.payment_duration = Duration::from_millis(10);
}

async fn ask_reset(app: &TestApp, email: &str) -> reqwest::Response {
    app.post("/password-reset", &json!({ "email": email }))
        .send()
        .await
        .unwrap()
}

async fn confirm_reset(app: &TestApp, token: &str, password: &str) -> reqwest::Response {
    app.post(
        "/password-reset/confirm",
        &json!({ "token": token, "newPassword": password }),
    )
    .send()
    .await
    .unwrap()
}

/// The token of the newest reset mail to `user`.
async fn reset_token(app: &TestApp, user: &TestUser) -> String {
    let mail = app.smtp.wait_for(&user.email, "Reset your password").await;
    mail.link_param("token").expect("a token in the reset link")
}

#[tokio::test]
async fn a_mailed_reset_token_sets_the_password_once_and_ends_every_session() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    let second = app.login_ok(&user.email, &user.password).await;

    assert_eq!(ask_reset(&app, &user.email).await.status(), 202);
    let mail = app.smtp.wait_for(&user.email, "Reset your password").await;
    assert!(
        mail.text().contains("/#/reset-password?token="),
        "{}",
        mail.text()
    );
    assert!(
        mail.part("text/html").is_some_and(|h| h.contains("href=")),
        "an HTML part with the link"
    );
    let token = mail.link_param("token").unwrap();

    assert_eq!(
        confirm_reset(&app, &token, "a brand new password")
            .await
            .status(),
        204
    );
    // Every session ended, the one that asked included.
    assert_eq!(me(&app, &user.bearer()).await.status(), 401);
    let other = format!("Bearer {}", second.access_token);
    assert_eq!(me(&app, &other).await.status(), 401);
    // The token works once.
    expect_problem(
        confirm_reset(&app, &token, "yet another password").await,
        400,
        "invalid-token",
    )
    .await;
    // The new password signs in; the old one does not.
    assert_eq!(app.login(&user.email, &user.password).await.status(), 401);
    let tokens = app.login_ok(&user.email, "a brand new password").await;
    // The link reached the address, so it counts as verified.
    let profile: Value = me(&app, &format!("Bearer {}", tokens.access_token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(profile["emailVerified"], true);
    app.smtp
        .wait_for(&user.email, "Your password was changed")
        .await;
}

#[tokio::test]
async fn an_expired_or_superseded_reset_token_is_refused() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    ask_reset(&app, &user.email).await;
    let first = reset_token(&app, &user).await;
    let before = app.smtp.messages_to(&user.email).len();
    ask_reset(&app, &user.email).await;
    wait::until("a second reset mail", Duration::from_secs(30), || async {
        (app.smtp.messages_to(&user.email).len() > before).then_some(())
    })
    .await;
    let second = app
        .smtp
        .messages_to(&user.email)
        .last()
        .and_then(|m| m.link_param("token"))
        .unwrap();
    assert_ne!(first, second);
    // A newer link kills the older one.
    expect_problem(
        confirm_reset(&app, &first, "a brand new password").await,
        400,
        "invalid-token",
    )
    .await;
    // Time passes (the row says so): the newest one expires too.
    app.db()
        .client()
        .await
        .execute(
            "UPDATE users.account_tokens SET expires_at = now() - interval '1 second' \
             WHERE used_at IS NULL",
            &[],
        )
        .await
        .unwrap();
    expect_problem(
        confirm_reset(&app, &second, "a brand new password").await,
        400,
        "invalid-token",
    )
    .await;
    assert_eq!(app.login(&user.email, &user.password).await.status(), 200);
    // Unknown tokens and bad passwords get their own answers.
    expect_problem(
        confirm_reset(&app, "no-such-token", "a brand new password").await,
        400,
        "invalid-token",
    )
    .await;
    let body = expect_problem(
        confirm_reset(&app, &second, "short").await,
        422,
        "validation-failed",
    )
    .await;
    assert_eq!(body["errors"][0]["field"], "newPassword");
}

#[tokio::test]
async fn an_unknown_email_gets_the_same_answer_and_no_mail() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    let unknown = "nobody-here@example.com";
    let answer = ask_reset(&app, unknown).await;
    assert_eq!(answer.status(), 202);
    assert_eq!(answer.text().await.unwrap(), "");
    let known = ask_reset(&app, &user.email).await;
    assert_eq!(known.status(), 202);
    assert_eq!(known.text().await.unwrap(), "");
    // The known address's mail is the sentinel: the unknown one was asked for first.
    app.smtp.wait_for(&user.email, "Reset your password").await;
    assert!(app.smtp.messages_to(unknown).is_empty());
}

#[tokio::test]
async fn reset_requests_are_limited_per_email_and_per_address_known_or_not() {
    let app = TestApp::builder()
        .configure(|s| {
            s.account_mail_limit = 2;
            s.account_mail_ip_limit = 6;
        })
        .spawn()
        .await;
    let known = "limited-known@example.com";
    assert_eq!(app.register(known, "a good password").await.status(), 201);
    // Per email, whether or not the account exists: the same answers for both.
    for email in [known, "limited-unknown@example.com"] {
        assert_eq!(ask_reset(&app, email).await.status(), 202);
        assert_eq!(ask_reset(&app, email).await.status(), 202);
        let refused = ask_reset(&app, email).await;
        assert!(refused.headers().contains_key("retry-after"));
        expect_problem(refused, 429, "rate-limited").await;
    }
    // Per client address: six requests from this one so far, so a seventh is refused for
    // any email.
    expect_problem(
        ask_reset(&app, "fresh-address@example.com").await,
        429,
        "rate-limited",
    )
    .await;
}

#[tokio::test]
async fn registration_mails_a_verification_link_that_verifies_once() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    let profile: Value = me(&app, &user.bearer()).await.json().await.unwrap();
    assert_eq!(profile["emailVerified"], false);

    let mail = app.smtp.wait_for(&user.email, "Verify your email").await;
    let token = mail.link_param("token").unwrap();
    let confirm = |token: String| {
        let app = &app;
        async move {
            app.post("/email-verification/confirm", &json!({ "token": token }))
                .send()
                .await
                .unwrap()
        }
    };
    assert_eq!(confirm(token.clone()).await.status(), 204);
    let profile: Value = me(&app, &user.bearer()).await.json().await.unwrap();
    assert_eq!(profile["emailVerified"], true);
    expect_problem(confirm(token).await, 400, "invalid-token").await;

    // Verified: a resend is accepted and sends nothing (the sentinel is a reset mail).
    let resend = app
        .post("/me/email-verification", &json!({}))
        .header("authorization", user.bearer())
        .send()
        .await
        .unwrap();
    assert_eq!(resend.status(), 202);
    ask_reset(&app, &user.email).await;
    app.smtp.wait_for(&user.email, "Reset your password").await;
    let verifications = app
        .smtp
        .messages_to(&user.email)
        .iter()
        .filter(|m| m.subject().contains("Verify"))
        .count();
    assert_eq!(verifications, 1);
}

#[tokio::test]
async fn a_resent_verification_link_replaces_the_first() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    let first = app
        .smtp
        .wait_for(&user.email, "Verify your email")
        .await
        .link_param("token")
        .unwrap();
    let resend = app
        .post("/me/email-verification", &json!({}))
        .header("authorization", user.bearer())
        .send()
        .await
        .unwrap();
    assert_eq!(resend.status(), 202);
    wait::until(
        "a second verification mail",
        Duration::from_secs(30),
        || async { (app.smtp.messages_to(&user.email).len() >= 2).then_some(()) },
    )
    .await;
    let second = app.smtp.messages_to(&user.email)[1]
        .link_param("token")
        .unwrap();
    let confirm = |token: String| {
        let app = &app;
        async move {
            app.post("/email-verification/confirm", &json!({ "token": token }))
                .send()
                .await
                .unwrap()
        }
    };
    expect_problem(confirm(first).await, 400, "invalid-token").await;
    assert_eq!(confirm(second).await.status(), 204);
}

/// Places an order of one item and waits until it is paid; returns its id.
async fn paid_order(app: &TestApp, user: &TestUser, product: uuid::Uuid) -> uuid::Uuid {
    let placed = app.place_order(user, &[(product, 2)], None).await;
    assert_eq!(placed.status(), 201);
    let order: Value = placed.json().await.unwrap();
    let id: uuid::Uuid = order["id"].as_str().unwrap().parse().unwrap();
    app.await_order_status(id, "paid", Duration::from_secs(30))
        .await;
    id
}

/// Nothing more came for `order` than one mail: a second paid order's mail is the sentinel
/// (mail to one account goes out in order).
async fn assert_mailed_once(
    app: &TestApp,
    user: &TestUser,
    product: uuid::Uuid,
    order: uuid::Uuid,
) {
    let second = paid_order(app, user, product).await;
    wait::until(
        "the second order's mail",
        Duration::from_secs(30),
        || async {
            app.smtp
                .messages_to(&user.email)
                .iter()
                .any(|m| m.text().contains(&second.to_string()))
                .then_some(())
        },
    )
    .await;
    let about_first = app
        .smtp
        .messages_to(&user.email)
        .iter()
        .filter(|m| m.text().contains(&order.to_string()))
        .count();
    assert_eq!(about_first, 1);
}

#[tokio::test]
async fn a_paid_order_is_mailed_once_even_across_an_smtp_outage() {
    let app = TestApp::builder().configure(paying).spawn().await;
    let user = app.new_user().await;
    app.smtp.wait_for(&user.email, "Verify your email").await;
    let product = app.create_product("Blue mug", 1250, 10).await;

    app.smtp.stop();
    let order = paid_order(&app, &user, product).await;
    // The mail is queued and failing while the server is away.
    wait::until("a failed mail attempt", Duration::from_secs(30), || async {
        let failed: i64 = app
            .db()
            .client()
            .await
            .query_one(
                "SELECT count(*) FROM users.outbox WHERE sent_at IS NULL AND attempts > 0",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        (failed > 0).then_some(())
    })
    .await;
    app.smtp.restart().await;

    let mail = app.smtp.wait_for(&user.email, "Your order is paid").await;
    let text = mail.text();
    assert!(text.contains("2 × Blue mug at 12.50 USD"), "{text}");
    assert!(text.contains("Total: 25.00 USD"), "{text}");
    assert!(text.contains(&format!("/#/orders/{order}")), "{text}");
    assert_mailed_once(&app, &user, product, order).await;
}

#[tokio::test]
async fn an_order_event_delivered_twice_is_mailed_once() {
    let app = TestApp::builder().configure(paying).spawn().await;
    let user = app.new_user().await;
    let product = app.create_product("Green mug", 900, 10).await;
    let order = paid_order(&app, &user, product).await;
    app.smtp.wait_for(&user.email, "Your order is paid").await;

    // The same `order.paid` entry appended again, as a redelivery would hand it over.
    let paid = app
        .events_of("notifications", order)
        .await
        .into_iter()
        .find(|e| e["type"] == "order.paid")
        .expect("the order.paid event");
    let redis = shop_redis::RedisPool::with_url(
        app.redis_direct_url(),
        app.redis_prefix(),
        1,
        Duration::from_secs(1),
    )
    .unwrap();
    let mut conn = redis.get().await.unwrap();
    let _: String = shop_redis::redis::cmd("XADD")
        .arg(redis.key("notifications"))
        .arg("*")
        .arg("event")
        .arg(paid.to_string())
        .query_async(&mut *conn)
        .await
        .unwrap();

    assert_mailed_once(&app, &user, product, order).await;
}

#[tokio::test]
async fn a_failed_order_mail_says_no_money_was_taken() {
    let app = TestApp::builder()
        .configure(|s| {
            s.payment_failed_probability = 100;
            s.payment_duration = Duration::from_millis(10);
            s.backoff_retries = 0;
        })
        .spawn()
        .await;
    let user = app.new_user().await;
    let product = app.create_product("Red mug", 500, 10).await;
    let placed = app.place_order(&user, &[(product, 1)], None).await;
    let order: Value = placed.json().await.unwrap();
    let id: uuid::Uuid = order["id"].as_str().unwrap().parse().unwrap();
    app.await_order_status(id, "failed", Duration::from_secs(30))
        .await;
    let mail = app
        .smtp
        .wait_for(&user.email, "could not be completed")
        .await;
    let text = mail.text();
    assert!(text.contains("the payment was declined"), "{text}");
    assert!(text.contains("No money was taken"), "{text}");
    assert!(text.contains("1 × Red mug"), "{text}");
}

#[tokio::test]
async fn with_verified_email_required_an_order_waits_for_the_mailed_link() {
    let app = TestApp::builder()
        .configure(|s| {
            paying(s);
            s.require_verified_email = true;
        })
        .spawn()
        .await;
    let user = app.new_user().await;
    let product = app.create_product("Teapot", 3000, 5).await;
    expect_problem(
        app.place_order(&user, &[(product, 1)], None).await,
        403,
        "email-unverified",
    )
    .await;
    let checkout = app
        .post("/cart/checkout", &json!({}))
        .header("authorization", user.bearer())
        .send()
        .await
        .unwrap();
    expect_problem(checkout, 403, "email-unverified").await;
    assert_eq!(app.stock_of(product).await, 5, "nothing was reserved");

    let token = app
        .smtp
        .wait_for(&user.email, "Verify your email")
        .await
        .link_param("token")
        .unwrap();
    let verified = app
        .post("/email-verification/confirm", &json!({ "token": token }))
        .send()
        .await
        .unwrap();
    assert_eq!(verified.status(), 204);
    // The token in hand was signed before: a refreshed one says the email is verified.
    let refreshed: shop_contracts::TokenResponse = app
        .post(
            "/refresh",
            &json!({ "refreshToken": user.tokens.refresh_token }),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let user = TestUser {
        tokens: refreshed,
        ..user
    };
    assert_eq!(
        app.place_order(&user, &[(product, 1)], None).await.status(),
        201
    );
}

#[tokio::test]
async fn an_order_paid_while_the_user_service_is_down_is_mailed_once_it_is_back() {
    let mut app = TestApp::builder().configure(paying).spawn().await;
    let user = app.new_user().await;
    app.smtp.wait_for(&user.email, "Verify your email").await;
    let product = app.create_product("Sugar bowl", 1100, 10).await;
    app.stop(shop_testkit::Component::User).await;
    // The order service and the payment service carry on; the event waits in the stream for
    // the user service's consumer group.
    let order = paid_order(&app, &user, product).await;
    app.start(shop_testkit::Component::User).await;
    let mail = app.smtp.wait_for(&user.email, "Your order is paid").await;
    assert!(mail.text().contains(&order.to_string()));
    // A second order is the sentinel: nothing more came for the first.
    assert_mailed_once(&app, &user, product, order).await;
}
