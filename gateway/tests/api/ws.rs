//! Live notifications over WebSocket, spoken to as a client would.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use shop_testkit::{Component, TestApp, TestUser};
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream, connect_async,
    tungstenite::{self, Message, client::IntoClientRequest},
};

use crate::expect_problem;

type Ws = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

async fn open(app: &TestApp, query: &str, bearer: Option<&str>) -> Result<Ws, tungstenite::Error> {
    let url = format!("ws://{}/ws{query}", app.addr(Component::Gateway));
    let mut request = url.into_client_request().unwrap();
    if let Some(token) = bearer {
        request
            .headers_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    connect_async(request).await.map(|(ws, _)| ws)
}

fn message_schema() -> jsonschema::Validator {
    let path = format!(
        "{}/../proto-docs/ws/message.v1.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap()
}

/// The next JSON message, skipping control frames; every message must match the documented
/// schema (proto-docs/ws/message.v1.json).
async fn next(ws: &mut Ws) -> Value {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(20), ws.next())
            .await
            .expect("a message within 20 s")
            .expect("the socket is open")
            .expect("a frame");
        match message {
            Message::Text(text) => {
                let message: Value = serde_json::from_str(&text).unwrap();
                let errors: Vec<String> = message_schema()
                    .iter_errors(&message)
                    .map(|e| e.to_string())
                    .collect();
                assert!(
                    errors.is_empty(),
                    "{message} does not match the documented schema: {errors:?}"
                );
                return message;
            }
            Message::Close(frame) => panic!("closed: {frame:?}"),
            _ => {}
        }
    }
}

/// Events until one of `kind` arrives; returns all of them, that one last.
async fn until_event(ws: &mut Ws, kind: &str) -> Vec<Value> {
    let mut seen = Vec::new();
    loop {
        let message = next(ws).await;
        let done = message["event"]["type"] == kind;
        seen.push(message);
        if done {
            return seen;
        }
    }
}

async fn ready(app: &TestApp, query: &str, user: &TestUser) -> Ws {
    let mut ws = open(app, query, Some(&user.tokens.access_token))
        .await
        .unwrap();
    assert_eq!(next(&mut ws).await, json!({"type": "ready"}));
    ws
}

fn fast_payments(s: &mut shop_settings::Settings) {
    s.payment_failed_probability = 0;
    s.payment_duration = Duration::from_millis(10);
    s.ws_check_interval = Duration::from_millis(500);
}

#[tokio::test]
async fn the_owner_sees_the_tracking_and_each_refund_live() {
    let app = TestApp::builder().configure(fast_payments).spawn().await;
    let mug = app.create_product("Mug", 1250, 10).await;
    let (user, admin) = (app.new_user().await, app.admin().await);
    app.set_address(&user).await;
    let mut ws = ready(&app, "", &user).await;
    let order = app.place_order(&user, &[(mug, 2)], None).await;
    assert_eq!(order.status(), 201);
    let order: Value = order.json().await.unwrap();
    let id = order["id"].as_str().unwrap();
    until_event(&mut ws, "order.paid").await;

    let shipped = app
        .http
        .put(app.url(&format!("/orders/{id}/status")))
        .header("authorization", admin.bearer())
        .json(&json!({"status": "shipped", "carrier": "DHL", "trackingNumber": "JD0142"}))
        .send()
        .await
        .unwrap();
    assert_eq!(shipped.status(), 200);
    let event = until_event(&mut ws, "order.shipped").await.pop().unwrap();
    assert_eq!(
        (
            &event["event"]["data"]["carrier"],
            &event["event"]["data"]["trackingNumber"]
        ),
        (&json!("DHL"), &json!("JD0142"))
    );

    for amount in [500, 2000] {
        let refund = app
            .post(
                &format!("/orders/{id}/refunds"),
                &json!({"amountCents": amount, "reason": "late delivery"}),
            )
            .header("authorization", admin.bearer())
            .send()
            .await
            .unwrap();
        assert_eq!(refund.status(), 201);
        let refund: Value = refund.json().await.unwrap();
        let event = until_event(&mut ws, "payment.refunded")
            .await
            .pop()
            .unwrap();
        assert_eq!(event["event"]["data"]["refundId"], refund["id"]);
        assert_eq!(event["event"]["data"]["amountCents"], amount);
    }
    let event = until_event(&mut ws, "order.refunded").await.pop().unwrap();
    assert_eq!(event["event"]["data"]["refundedCents"], 2500);
}

#[tokio::test]
async fn sockets_need_credentials_and_an_allowed_origin() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    expect_problem(app.get("/ws").send().await.unwrap(), 401, "unauthorized").await;
    let evil = app
        .get("/ws")
        .bearer_auth(&user.tokens.access_token)
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    expect_problem(evil, 403, "forbidden").await;
    let err = open(&app, "", None).await.unwrap_err();
    assert!(
        matches!(err, tungstenite::Error::Http(ref r) if r.status() == 401),
        "{err:?}"
    );
    let scope = open(&app, "?scope=all", Some(&user.tokens.access_token))
        .await
        .unwrap_err();
    assert!(
        matches!(scope, tungstenite::Error::Http(ref r) if r.status() == 403),
        "{scope:?}"
    );
}

#[tokio::test]
async fn tickets_are_single_use() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    let ticket: Value = app
        .http
        .post(app.url("/ws/ticket"))
        .bearer_auth(&user.tokens.access_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ticket = ticket["ticket"].as_str().unwrap().to_owned();
    let mut ws = open(&app, &format!("?ticket={ticket}"), None)
        .await
        .unwrap();
    assert_eq!(next(&mut ws).await, json!({"type": "ready"}));
    let again = open(&app, &format!("?ticket={ticket}"), None)
        .await
        .unwrap_err();
    assert!(
        matches!(again, tungstenite::Error::Http(ref r) if r.status() == 401),
        "{again:?}"
    );
    expect_problem(
        app.http.post(app.url("/ws/ticket")).send().await.unwrap(),
        401,
        "unauthorized",
    )
    .await;
}

#[tokio::test]
async fn owners_see_their_orders_others_only_theirs_and_admins_everything() {
    let app = TestApp::builder().configure(fast_payments).spawn().await;
    let mug = app.create_product("Mug", 1250, 10).await;
    let (owner, other) = (app.new_user().await, app.new_user().await);
    let admin = app.admin().await;
    let mut owner_ws = ready(&app, "", &owner).await;
    let mut other_ws = ready(&app, "", &other).await;
    let mut admin_ws = ready(&app, "?scope=all", &admin).await;

    let response = app.place_order(&owner, &[(mug, 1)], None).await;
    let order: Value = response.json().await.unwrap();
    let seen = until_event(&mut owner_ws, "order.paid").await;
    let kinds: Vec<&str> = seen
        .iter()
        .map(|m| m["event"]["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.first(), Some(&"order.created"), "{kinds:?}");
    assert!(kinds.contains(&"payment.succeeded"), "{kinds:?}");
    assert!(
        seen.iter()
            .all(|m| m["event"]["orderId"] == order["id"] && m["id"].is_string())
    );

    // The other user's socket gets only its own sentinel.
    let sentinel: Value = app
        .place_order(&other, &[(mug, 1)], None)
        .await
        .json()
        .await
        .unwrap();
    let theirs = until_event(&mut other_ws, "order.created").await;
    assert!(
        theirs
            .iter()
            .all(|m| m["event"]["orderId"] == sentinel["id"]),
        "{theirs:?}"
    );
    let everything = until_event(&mut admin_ws, "order.paid").await;
    assert!(
        everything
            .iter()
            .any(|m| m["event"]["orderId"] == order["id"])
    );
    let _ = admin_ws.send(Message::Close(None)).await;
}

#[tokio::test]
async fn since_replays_what_was_missed_and_too_old_resyncs() {
    let mut app = TestApp::builder().configure(fast_payments).spawn().await;
    app.stop(Component::Payment).await;
    let mug = app.create_product("Mug", 1250, 10).await;
    let user = app.new_user().await;
    let mut ws = ready(&app, "", &user).await;
    let order: Value = app
        .place_order(&user, &[(mug, 1)], None)
        .await
        .json()
        .await
        .unwrap();
    let created = until_event(&mut ws, "order.created").await.pop().unwrap();
    let created_id = created["id"].as_str().unwrap().to_owned();
    drop(ws);

    let cancel = app
        .http
        .post(app.url(&format!("/orders/{}/cancel", order["id"].as_str().unwrap())))
        .bearer_auth(&user.tokens.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(cancel.status(), 200);
    let mut again = ready(&app, &format!("?since={created_id}"), &user).await;
    let missed = next(&mut again).await;
    assert_eq!(missed["event"]["type"], "order.cancelled", "{missed}");

    let mut stale = ready(&app, "?since=1-0", &user).await;
    assert_eq!(next(&mut stale).await, json!({"type": "resync"}));
}

#[tokio::test]
async fn a_revoked_session_closes_its_socket_with_4401() {
    let app = TestApp::builder().configure(fast_payments).spawn().await;
    let user = app.new_user().await;
    let mut ws = ready(&app, "", &user).await;
    let logout = app
        .http
        .post(app.url("/logout"))
        .bearer_auth(&user.tokens.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), 204);
    let closed = loop {
        let frame = tokio::time::timeout(Duration::from_secs(20), ws.next())
            .await
            .expect("closed within 20 s");
        match frame {
            Some(Ok(Message::Close(frame))) => break frame,
            Some(Ok(_)) => continue,
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(closed.map(|f| u16::from(f.code)), Some(4401));
}

#[tokio::test]
async fn a_failing_payment_is_followed_live_to_the_end() {
    let app = TestApp::builder()
        .configure(|s| {
            fast_payments(s);
            s.payment_failed_probability = 100;
            s.backoff_retries = 2;
            s.backoff_delay = Duration::from_millis(20);
        })
        .spawn()
        .await;
    let mug = app.create_product("Mug", 1250, 10).await;
    let user = app.new_user().await;
    let mut ws = ready(&app, "", &user).await;
    assert_eq!(
        app.place_order(&user, &[(mug, 1)], None).await.status(),
        201
    );
    let seen = until_event(&mut ws, "order.failed").await;
    let kinds: Vec<&str> = seen
        .iter()
        .map(|m| m["event"]["type"].as_str().unwrap())
        .collect();
    let attempts: Vec<&Value> = seen
        .iter()
        .filter(|m| m["event"]["type"] == "payment.attempt_failed")
        .map(|m| &m["event"]["data"])
        .collect();
    assert_eq!(attempts.len(), 3, "{kinds:?}");
    assert!(!attempts[1]["nextRetryAt"].is_null());
    assert!(
        attempts[2]["nextRetryAt"].is_null(),
        "the last attempt has no next one"
    );
    let last_attempt = kinds
        .iter()
        .rposition(|k| *k == "payment.attempt_failed")
        .unwrap();
    assert!(
        kinds[last_attempt..].contains(&"payment.failed"),
        "{kinds:?}"
    );
    let ids: Vec<&str> = seen.iter().map(|m| m["id"].as_str().unwrap()).collect();
    let mut sorted = ids.clone();
    sorted.sort_by_key(|id| {
        let (ms, seq) = id.split_once('-').unwrap();
        (ms.parse::<u64>().unwrap(), seq.parse::<u64>().unwrap())
    });
    assert_eq!(ids, sorted, "messages arrive in stream order");
    shop_testkit::wait::until("stock back", Duration::from_secs(20), || async {
        (app.stock_of(mug).await == 10).then_some(())
    })
    .await;
}

/// The series an operator alarms on, each as it appears in the exposition text.
const SERIES: &[&str] = &[
    "shop_http_requests_total",
    "shop_http_request_duration_seconds_bucket",
    "shop_db_pool_connections",
    "shop_redis_pool_connections",
    "shop_cache_requests_total",
    "shop_outbox_backlog",
    "shop_outbox_oldest_age_seconds",
    "shop_stream_pending_entries",
    "shop_stream_lag_entries",
    "shop_payment_attempts_total",
    "shop_payments_settled_total",
    "shop_websocket_connections",
    "shop_rate_limit_rejections_total",
];

#[tokio::test]
async fn metrics_parse_and_carry_every_series_after_an_order() {
    let app = TestApp::builder()
        .configure(|s| {
            fast_payments(s);
            s.throttler_auth_limit = 3;
        })
        .spawn()
        .await;
    let mut scrape_settings = app.settings.clone();
    scrape_settings.metrics_addr = "127.0.0.1:0".into();
    let metrics = shop_http::start_metrics(&scrape_settings)
        .unwrap()
        .expect("metrics on");
    let metrics_url = format!("http://{}/metrics", metrics.addr());

    let user = app.new_user().await;
    let mut ws = ready(&app, "", &user).await;
    let product = app.create_product("Desk lamp", 1500, 5).await;
    for _ in 0..2 {
        let read = app
            .get(&format!("/products/{product}"))
            .send()
            .await
            .unwrap();
        assert_eq!(read.status(), 200);
    }
    let placed = app.place_order(&user, &[(product, 1)], None).await;
    assert_eq!(placed.status(), 201);
    until_event(&mut ws, "order.paid").await;
    // Wrong passwords until the per-address sign-in limit refuses one.
    let mut refused = false;
    for _ in 0..10 {
        if app.login(&user.email, "not the password").await.status() == 429 {
            refused = true;
            break;
        }
    }
    assert!(refused, "the sign-in limit never applied");

    let text = shop_testkit::wait::until(
        "every series in /metrics",
        Duration::from_secs(20),
        || async {
            let text = app
                .http
                .get(&metrics_url)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            SERIES
                .iter()
                .all(|name| text.lines().any(|line| line.starts_with(name)))
                .then_some(text)
        },
    )
    .await;
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .expect("Prometheus text format");
    let value = |name: &str, labels: &[(&str, &str)]| -> f64 {
        scrape
            .samples
            .iter()
            .filter(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => 0.0,
            })
            .sum()
    };
    let placed_at_the_gateway = value(
        "shop_http_requests_total",
        &[
            ("service", "gateway"),
            ("route", "/orders"),
            ("method", "POST"),
            ("status", "201"),
        ],
    );
    assert!(placed_at_the_gateway >= 1.0, "{placed_at_the_gateway}");
    // (The parser stops label values at `}`, so templates with ids are checked in the text.)
    let reservation = "shop_http_requests_total{service=\"catalog\",method=\"POST\",\
        route=\"/internal/reservations/{order_id}\",status=\"200\"}";
    assert!(
        text.lines().any(|l| l.starts_with(reservation)),
        "the catalog's reservation route is counted by its template"
    );
    assert!(
        value(
            "shop_cache_requests_total",
            &[("cache", "product"), ("result", "hit")]
        ) >= 1.0
    );
    assert!(value("shop_payments_settled_total", &[("outcome", "succeeded")]) >= 1.0);
    assert!(value("shop_rate_limit_rejections_total", &[("scope", "guarded")]) >= 1.0);
    assert!(value("shop_websocket_connections", &[]) >= 1.0);
    // No id ever becomes a label: only templates.
    assert!(!text.contains(&product.to_string()));
    metrics.stop().await;
}

/// Reads the server's frames off the wire, without answering them, until its close frame;
/// that frame's code. (A client library would answer the pings queued meanwhile, and writing
/// to a connection the server has closed ends the read with a broken pipe.)
async fn close_code(mut ws: Ws) -> Option<u16> {
    use tokio::io::AsyncReadExt;

    let MaybeTlsStream::Plain(tcp) = ws.get_mut() else {
        panic!("plain TCP expected");
    };
    let mut read = async |n: usize| {
        let mut bytes = vec![0u8; n];
        tokio::time::timeout(Duration::from_secs(30), tcp.read_exact(&mut bytes))
            .await
            .expect("a frame within 30 s")
            .ok()
            .map(|_| bytes)
    };
    loop {
        let head = read(2).await?;
        let opcode = head[0] & 0x0f;
        let length = match head[1] & 0x7f {
            126 => u64::from(u16::from_be_bytes(read(2).await?.try_into().unwrap())),
            127 => u64::from_be_bytes(read(8).await?.try_into().unwrap()),
            short => u64::from(short),
        };
        let payload = read(usize::try_from(length).unwrap()).await?;
        if opcode == 0x8 {
            return payload
                .get(..2)
                .map(|code| u16::from_be_bytes([code[0], code[1]]));
        }
    }
}

/// Appends `count` notifications for `user` straight to the instance's stream, each padded to
/// about `size` bytes; returns the last entry's id.
async fn publish(app: &TestApp, user: uuid::Uuid, count: usize, size: usize) -> String {
    let client = shop_redis::redis::Client::open(app.redis_direct_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let stream = format!("{}notifications", app.redis_prefix());
    let padding = "x".repeat(size);
    let mut last = String::new();
    for chunk in (0..count).collect::<Vec<_>>().chunks(50) {
        let mut pipe = shop_redis::redis::pipe();
        for n in chunk {
            let event = json!({
                "v": 1, "id": uuid::Uuid::now_v7(), "type": "order.paid", "producer": "order",
                "occurredAt": chrono::Utc::now(), "userId": user, "orderId": uuid::Uuid::now_v7(),
                "seq": n + 1, "traceparent": null,
                "data": {"status": "paid", "currency": "EUR", "padding": padding},
            });
            pipe.cmd("XADD")
                .arg(&stream)
                .arg("*")
                .arg("event")
                .arg(event.to_string());
        }
        let ids: Vec<String> = pipe.query_async(&mut conn).await.unwrap();
        last = ids.last().unwrap().clone();
    }
    last
}

#[tokio::test]
async fn a_socket_that_falls_behind_is_closed_with_4408_and_others_keep_receiving() {
    let app = TestApp::builder()
        .configure(|s| s.ws_queue = 64)
        .spawn()
        .await;
    let user = app.new_user().await;
    let slow = ready(&app, "", &user).await;
    let mut reader = ready(&app, "", &user).await;

    // Far more than the socket buffers of a client that reads nothing hold, in bursts the
    // reading one takes in before the next: it gets every event.
    let mut seen = 0;
    for _ in 0..20 {
        let last = publish(&app, user.id, 50, 64 * 1024).await;
        while next_raw(&mut reader).await["id"] != last {
            seen += 1;
        }
        seen += 1;
    }
    assert_eq!(seen, 1000);
    // The one that read nothing was dropped once its queue overflowed.
    assert_eq!(close_code(slow).await, Some(4408));
}

#[tokio::test]
async fn a_silent_socket_is_closed_after_the_idle_timeout_and_a_live_one_stays() {
    let app = TestApp::builder()
        .configure(|s| s.ws_idle_timeout = Duration::from_secs(2))
        .spawn()
        .await;
    let user = app.new_user().await;
    let silent = ready(&app, "", &user).await;
    let mut live = ready(&app, "", &user).await;

    // The live socket is read (so its pings are answered) while the silent one is left alone
    // past the timeout.
    let quiet = tokio::time::sleep(Duration::from_secs(4));
    tokio::pin!(quiet);
    loop {
        tokio::select! {
            () = &mut quiet => break,
            frame = live.next() => match frame {
                Some(Ok(Message::Close(frame))) => panic!("the live socket closed: {frame:?}"),
                Some(Ok(_)) => {}
                other => panic!("the live socket failed: {other:?}"),
            },
        }
    }
    assert_eq!(close_code(silent).await, Some(1001));
    let last = publish(&app, user.id, 1, 10).await;
    assert_eq!(next_raw(&mut live).await["id"], last);
}

/// The next text message, unchecked (the padded events above are not the documented kind).
async fn next_raw(ws: &mut Ws) -> Value {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .expect("a message within 30 s")
            .expect("the socket is open")
            .unwrap();
        if let Message::Text(text) = message {
            return serde_json::from_str(&text).unwrap();
        }
    }
}
