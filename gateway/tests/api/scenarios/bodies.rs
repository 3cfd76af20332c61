//! Bodies on every writing route at once: one over the limit is 413 and does nothing, whether
//! its length is declared or it streams; JSON is judged whole, so malformed JSON is 400 even
//! after a field error, and a value of the wrong type is 422 whatever the field.
//!
//! Each sweep records every disagreement and fails once at the end with all of them. A change
//! is reported against the request after which it was first seen; an effect that lands just
//! after its (refused) answer shows up against the next request.

use serde_json::{Value, json};
use shop_testkit::{Component, TestApp, TestUser};
use uuid::Uuid;

use super::{Call, DEADLINE, fast_payments, huge_body, place_ok, refusal, streamed, token};

/// A shop with something for every writing route to touch.
struct World {
    app: TestApp,
    admin: TestUser,
    user: TestUser,
    /// Another session of the user, whose refresh token the `/refresh` requests carry.
    refresh_token: String,
    mug: Uuid,
    paid: Uuid,
    pending: Uuid,
}

impl World {
    async fn new() -> Self {
        let mut app = TestApp::builder().configure(fast_payments).spawn().await;
        let admin = app.admin().await;
        let user = app.new_user().await;
        let mug = app.create_product("Mug", 1250, 10).await;
        let paid = place_ok(&app, &user, &[(mug, 1)]).await;
        app.await_order_status(paid, "paid", DEADLINE).await;
        // Without the payment service the next order stays pending.
        app.stop(Component::Payment).await;
        let pending = place_ok(&app, &user, &[(mug, 2)]).await;
        Call::put("/cart")
            .json(json!({"items": [{"productId": mug, "quantity": 3}]}))
            .expect(&app, token(&user), 200)
            .await;
        let refresh_token = app
            .login_ok(&user.email, &user.password)
            .await
            .refresh_token;
        Self {
            app,
            admin,
            user,
            refresh_token,
            mug,
            paid,
            pending,
        }
    }

    /// Every writing route of the API table with a valid body and a caller it serves, the
    /// ones that would end the user's session last.
    fn writing_routes(&self) -> Vec<(Call, Option<&str>)> {
        let (mug, user, admin) = (self.mug, token(&self.user), token(&self.admin));
        vec![
            (
                Call::post("/register")
                    .json(json!({"email": "new@example.com", "password": "long enough"})),
                None,
            ),
            (
                Call::post("/login")
                    .json(json!({"email": self.user.email, "password": self.user.password})),
                None,
            ),
            (
                Call::post("/refresh").json(json!({"refreshToken": self.refresh_token})),
                None,
            ),
            (Call::patch("/me").json(json!({"name": "Changed"})), user),
            (
                Call::post("/products")
                    .json(json!({"name": "Lamp", "priceCents": 4000, "stock": 3})),
                admin,
            ),
            (
                Call::put(format!("/products/{mug}"))
                    .json(json!({"name": "Big mug", "priceCents": 1500, "version": 1})),
                admin,
            ),
            (
                Call::post(format!("/products/{mug}/stock-adjustments"))
                    .json(json!({"delta": -1, "reason": "breakage"})),
                admin,
            ),
            (
                Call::post("/orders").json(json!({"items": [{"productId": mug, "quantity": 1}]})),
                user,
            ),
            (
                Call::put(format!("/orders/{}/status", self.paid))
                    .json(json!({"status": "shipped"})),
                admin,
            ),
            (
                Call::put("/cart").json(json!({"items": [{"productId": mug, "quantity": 1}]})),
                user,
            ),
            (
                Call::put(format!("/cart/items/{mug}")).json(json!({"quantity": 1})),
                user,
            ),
            (Call::post("/ws/ticket"), user),
            (Call::post(format!("/orders/{}/cancel", self.pending)), user),
            (Call::delete(format!("/cart/items/{mug}")), user),
            (Call::delete("/cart"), user),
            (Call::post("/cart/checkout"), user),
            (Call::delete(format!("/products/{mug}")), admin),
            (
                Call::patch(format!("/users/{}", self.user.id))
                    .json(json!({"role": "user", "disabled": true})),
                admin,
            ),
            (
                Call::post("/me/password").json(
                    json!({"currentPassword": self.user.password, "newPassword": "a new password"}),
                ),
                user,
            ),
            (Call::post("/logout"), user),
        ]
    }

    /// What the user, anyone and the administrator see: each view's status and body.
    async fn observe(&self) -> Vec<(u16, Value)> {
        let (user, admin) = (token(&self.user), token(&self.admin));
        let views = [
            ("/me".to_owned(), user),
            ("/cart".to_owned(), user),
            ("/orders".to_owned(), user),
            (format!("/orders/{}", self.paid), user),
            (format!("/orders/{}", self.pending), user),
            (format!("/products/{}", self.mug), None),
            ("/products".to_owned(), None),
            ("/users".to_owned(), admin),
        ];
        let mut seen = Vec::with_capacity(views.len());
        for (path, token) in views {
            let response = Call::get(path).send(&self.app, token).await;
            let status = response.status().as_u16();
            seen.push((status, response.json().await.unwrap_or(Value::Null)));
        }
        seen
    }
}

/// Disagreements with DESIGN.md, collected so one run names them all.
struct Sweep<'w> {
    world: &'w World,
    seen: Vec<(u16, Value)>,
    failures: Vec<String>,
}

impl<'w> Sweep<'w> {
    async fn new(world: &'w World) -> Self {
        Self {
            world,
            seen: world.observe().await,
            failures: Vec::new(),
        }
    }

    /// Expects an answer with the problem `status` and `code`, then that no view changed
    /// since the last request.
    async fn check(
        &mut self,
        what: String,
        response: reqwest::Result<reqwest::Response>,
        status: u16,
        code: &str,
    ) {
        match response {
            Err(error) => self.failures.push(format!(
                "{what}: expected {status} {code}, got no answer: {error}"
            )),
            Ok(response) => self.expect(&what, response, status, code).await,
        }
        self.compare(&what).await;
    }

    /// Expects the problem `status` and `code`, checked by `expect_problem` once the status
    /// is right.
    async fn expect(&mut self, what: &str, response: reqwest::Response, status: u16, code: &str) {
        if response.status() == status {
            refusal(response, status, code, what).await;
        } else {
            let got = response.status();
            let body = response.text().await.unwrap_or_default();
            self.failures.push(format!(
                "{what}: expected {status} {code}, got {got}: {body}"
            ));
        }
    }

    /// Records every view that changed since the last request, and moves on from there.
    async fn compare(&mut self, what: &str) {
        let now = self.world.observe().await;
        if now != self.seen {
            let changed: Vec<String> = self
                .seen
                .iter()
                .zip(&now)
                .filter(|(before, after)| before != after)
                .map(|(before, after)| format!("{before:?} -> {after:?}"))
                .collect();
            self.failures.push(format!(
                "{what}: changed what clients see: {}",
                changed.join("; ")
            ));
            self.seen = now;
        }
    }

    /// Puts the line back in the user's cart, so every cart route has something to remove.
    async fn refill_cart(&mut self) {
        let world = self.world;
        Call::put("/cart")
            .json(json!({"items": [{"productId": world.mug, "quantity": 3}]}))
            .expect(&world.app, token(&world.user), 200)
            .await;
        self.seen = world.observe().await;
    }

    fn finish(self) {
        assert!(
            self.failures.is_empty(),
            "{} disagreement(s) with DESIGN.md:\n{}",
            self.failures.len(),
            self.failures.join("\n")
        );
    }
}

#[tokio::test]
async fn oversized_bodies_are_413_on_every_writing_route_and_change_nothing() {
    let world = World::new().await;
    let app = &world.app;
    let huge = huge_body(app);
    let mut sweep = Sweep::new(&world).await;
    for (call, token) in world.writing_routes() {
        // A route that answers without reading the body leaves it on the connection: no
        // request after it may share that connection.
        let call = call.header("connection", "close");
        let empties_the_cart = call.body.is_none() && call.path.starts_with("/cart");
        if empties_the_cart {
            sweep.refill_cart().await;
        }
        let declared = call
            .try_send_raw(app, token, "application/json", huge.clone())
            .await;
        sweep
            .check(
                format!("{call} with a declared huge body"),
                declared,
                413,
                "payload-too-large",
            )
            .await;
        if empties_the_cart {
            sweep.refill_cart().await;
        }
        let chunked = call
            .try_send_raw(app, token, "application/json", streamed(&huge))
            .await;
        sweep
            .check(
                format!("{call} with a streamed huge body"),
                chunked,
                413,
                "payload-too-large",
            )
            .await;
    }
    // The other session's refresh token was never used: it still rotates.
    let refresh = Call::post("/refresh")
        .json(json!({"refreshToken": world.refresh_token}))
        .send(app, None)
        .await;
    if refresh.status() != 200 {
        sweep.failures.push(format!(
            "the untouched refresh token: got {}",
            refresh.status()
        ));
    }
    sweep.finish();
}

#[tokio::test]
async fn json_is_judged_whole_on_every_writing_route() {
    let world = World::new().await;
    let app = &world.app;
    let mut sweep = Sweep::new(&world).await;
    for (call, token) in world.writing_routes() {
        let Some(body) = call.body.clone() else {
            continue;
        };
        // Well-formed up to a field error, then cut off: still malformed JSON.
        for raw in ["{\"bogus\": 1,", "{\"bogus\": 1, \"more\""] {
            let response = call
                .try_send_raw(app, token, "application/json", raw.to_owned())
                .await;
            sweep
                .check(
                    format!("{call} with {raw}"),
                    response,
                    400,
                    "malformed-json",
                )
                .await;
        }
        // A number where a string belongs (an enum's too) is a wrong type: 422.
        for (field, value) in body.as_object().unwrap() {
            if !value.is_string() {
                continue;
            }
            let mut mistyped = body.clone();
            mistyped[field] = json!(12_345);
            let response = call
                .clone()
                .json(mistyped.clone())
                .try_send(app, token)
                .await;
            sweep
                .check(
                    format!("{call} with {mistyped}"),
                    response,
                    422,
                    "validation-failed",
                )
                .await;
        }
    }
    sweep.finish();
}
