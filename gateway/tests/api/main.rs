//! End-to-end tests: every service and the gateway in-process, spoken to over HTTP through
//! the gateway as a client would.

#![allow(clippy::unwrap_used)]

mod accounts;
mod after_sale;
mod docs;
mod edge;
mod guest_carts;
mod hardening;
mod mail;
mod mfa;
mod resilience;
mod scenarios;
mod sessions;
mod tokens;
mod ws;

pub use shop_testkit::expect_problem;

/// Five wrong passwords for `email` answer 401, and then even the right `password` answers
/// 429: the failed-login throttle (a limit of 5) holds for this client and account.
pub async fn assert_locked_by_wrong_passwords(
    app: &shop_testkit::TestApp,
    email: &str,
    password: &str,
) {
    for _ in 0..5 {
        expect_problem(
            app.login(email, "wrong password").await,
            401,
            "unauthorized",
        )
        .await;
    }
    expect_problem(app.login(email, password).await, 429, "rate-limited").await;
}

/// `GET /me` with `bearer` (an `Authorization` value).
pub async fn me(app: &shop_testkit::TestApp, bearer: &str) -> reqwest::Response {
    app.get("/me")
        .header("authorization", bearer)
        .send()
        .await
        .unwrap()
}
