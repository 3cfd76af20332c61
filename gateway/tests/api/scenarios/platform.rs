//! What the gateway serves itself: pages, documents, probes and live updates.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};
use shop_testkit::{Component, TestApp};
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream, connect_async,
    tungstenite::{self, Message, client::IntoClientRequest},
};

use super::{Call, Caller, Rules, fast_payments, place_ok, refuse_bad_requests, token};

type Ws = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens `GET /ws{query}`, with `token` in the `Authorization` header if given.
async fn open(app: &TestApp, query: &str, token: Option<&str>) -> Result<Ws, tungstenite::Error> {
    let url = format!("ws://{}/ws{query}", app.addr(Component::Gateway));
    let mut request = url.into_client_request().unwrap();
    if let Some(token) = token {
        request
            .headers_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    connect_async(request).await.map(|(ws, _)| ws)
}

/// The status a refused handshake got.
async fn refused_handshake(app: &TestApp, query: &str, token: Option<&str>) -> u16 {
    match open(app, query, token).await {
        Err(tungstenite::Error::Http(response)) => response.status().as_u16(),
        other => panic!("the socket {query} opened: {:?}", other.map(|_| ())),
    }
}

/// The next JSON message, skipping control frames.
async fn next(ws: &mut Ws) -> Value {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(20), ws.next())
            .await
            .expect("a message within 20 s")
            .expect("the socket is open")
            .expect("a frame");
        if let Message::Text(text) = message {
            return serde_json::from_str(&text).unwrap();
        }
    }
}

/// Event types until one of `kind` arrives, that one last.
async fn until_event(ws: &mut Ws, kind: &str) -> Vec<String> {
    let mut seen = Vec::new();
    loop {
        let message = next(ws).await;
        let this = message["event"]["type"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        seen.push(this.clone());
        if this == kind {
            return seen;
        }
    }
}

#[tokio::test]
async fn pages_documents_and_probes_answer_anyone() {
    let app = TestApp::spawn().await;
    for (path, kind) in [("/", "text/html"), ("/api", "text/html")] {
        let page = app.get(path).send().await.unwrap();
        assert_eq!(page.status(), 200, "{path}");
        let content_type = page.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(content_type.starts_with(kind), "{path}: {content_type}");
        assert!(!page.text().await.unwrap().is_empty(), "{path}");
    }
    let document = Call::get("/api/openapi.json").expect(&app, None, 200).await;
    assert!(document["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/register",
        "/orders/{id}/payment",
        "/cart/checkout",
        "/ws/ticket",
    ] {
        assert!(document["paths"][path].is_object(), "{path} is documented");
    }
    for probe in ["/healthz", "/readyz"] {
        assert_eq!(
            app.get(probe).send().await.unwrap().status(),
            200,
            "{probe}"
        );
    }
}

#[tokio::test]
async fn live_updates_need_a_ticket_or_a_token_and_refuse_stale_ones() {
    let app = TestApp::builder().configure(fast_payments).spawn().await;
    let mug = app.create_product("Mug", 1250, 10).await;
    let user = app.new_user().await;
    let caller = Caller::of(&app, &user).await;

    // A browser: a ticket first, then the socket with it.
    let ticket = Call::post("/ws/ticket")
        .expect(&app, token(&user), 201)
        .await;
    assert_eq!(ticket["expiresIn"], 30);
    let ticket = ticket["ticket"].as_str().unwrap().to_owned();
    let mut browser = open(&app, &format!("?ticket={ticket}"), None)
        .await
        .unwrap();
    assert_eq!(next(&mut browser).await, json!({"type": "ready"}));
    // Another client: the token in the header.
    let mut client = open(&app, "", token(&user)).await.unwrap();
    assert_eq!(next(&mut client).await, json!({"type": "ready"}));

    let order = place_ok(&app, &user, &[(mug, 1)]).await;
    for ws in [&mut browser, &mut client] {
        let seen = until_event(ws, "order.paid").await;
        assert_eq!(
            seen.first().map(String::as_str),
            Some("order.created"),
            "{seen:?}"
        );
    }
    app.await_order_status(order, "paid", super::DEADLINE).await;

    // GET /ws: a used ticket, an unknown one, and stale or missing tokens get 401 before the
    // upgrade.
    for (query, token, what) in [
        (format!("?ticket={ticket}"), None, "a used ticket"),
        ("?ticket=made-up".to_owned(), None, "an unknown ticket"),
        (String::new(), None, "no credentials"),
        (
            String::new(),
            Some(caller.expired.as_str()),
            "an expired token",
        ),
        (
            String::new(),
            Some(caller.revoked.as_str()),
            "a revoked token",
        ),
    ] {
        assert_eq!(refused_handshake(&app, &query, token).await, 401, "{what}");
    }
    for (token, what) in [
        (None, "no token"),
        (Some(caller.expired.as_str()), "an expired token"),
        (Some(caller.revoked.as_str()), "a revoked token"),
    ] {
        Call::get("/ws")
            .refused(&app, token, 401, "unauthorized", what)
            .await;
    }
    assert_eq!(
        refused_handshake(&app, "?scope=all", token(&user)).await,
        403
    );

    // POST /ws/ticket refuses stale credentials and bodies over the limit.
    refuse_bad_requests(
        &app,
        &Call::post("/ws/ticket"),
        Rules {
            caller: Some(&caller),
            ..Rules::default()
        },
    )
    .await;
}
