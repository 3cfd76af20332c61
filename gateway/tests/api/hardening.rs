//! The edge facing the internet: rate limits, CORS, security headers and the circuit breaker.

use std::time::Duration;

use reqwest::header::HeaderMap;
use shop_testkit::{Component, TestApp, wait};

use crate::expect_problem;

fn number(headers: &HeaderMap, name: &str) -> u64 {
    headers
        .get(name)
        .unwrap_or_else(|| panic!("no {name}"))
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// A second gateway on the same settings (and so the same Redis and prefix).
async fn second_gateway(app: &TestApp) -> (String, shop_http::Running) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let running = gateway::start(app.settings.clone(), listener)
        .await
        .unwrap();
    (url, running)
}

#[tokio::test]
async fn limits_hold_across_gateway_instances_per_forwarded_client() {
    let app = TestApp::builder()
        .configure(|s| {
            s.throttler_limit = 4;
            s.throttler_ttl = Duration::from_secs(60);
            s.trusted_proxies = "127.0.0.1/32".into();
        })
        .spawn()
        .await;
    let (other, running) = second_gateway(&app).await;
    let get = |base: &str, client: &str| {
        app.http
            .get(format!("{base}/products"))
            .header("x-forwarded-for", client)
    };
    let bases = [app.url(""), other.clone()];

    // Four requests spread over both instances use up one client's quota.
    for (i, remaining) in [3, 2, 1, 0].into_iter().enumerate() {
        let response = get(&bases[i % 2], "203.0.113.7").send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(number(response.headers(), "ratelimit-limit"), 4);
        assert_eq!(number(response.headers(), "ratelimit-remaining"), remaining);
    }
    for base in &bases {
        let refused = get(base, "203.0.113.7").send().await.unwrap();
        // A refusal is an answer like any other: security headers and a request id.
        assert_eq!(refused.headers()["x-content-type-options"], "nosniff");
        assert!(refused.headers().contains_key("x-request-id"));
        // 4 per minute: one request is earned back every 15 s; the whole quota in 60 s.
        assert_eq!(number(refused.headers(), "retry-after"), 15);
        assert_eq!(number(refused.headers(), "ratelimit-remaining"), 0);
        assert_eq!(number(refused.headers(), "ratelimit-reset"), 60);
        expect_problem(refused, 429, "rate-limited").await;
    }
    // Behind a trusted proxy, the first untrusted hop is the client; every client has its
    // own quota.
    let hop = get(&other, "203.0.113.7, 127.0.0.1").send().await.unwrap();
    assert_eq!(hop.status(), 429);
    let neighbour = get(&other, "203.0.113.8").send().await.unwrap();
    assert_eq!(neighbour.status(), 200);
    assert_eq!(number(neighbour.headers(), "ratelimit-remaining"), 3);
    running.stop().await;
}

#[tokio::test]
async fn users_are_limited_per_account_and_spoofed_addresses_do_not_help() {
    // No trusted proxies: X-Forwarded-For from a client means nothing.
    let app = TestApp::builder()
        .configure(|s| {
            s.throttler_limit = 6;
            s.throttler_ttl = Duration::from_secs(60);
        })
        .spawn()
        .await;
    // Registering and logging in two users: 4 requests from this address.
    let first = app.new_user().await;
    let second = app.new_user().await;
    for _ in 0..6 {
        let me = app
            .get("/me")
            .bearer_auth(&first.tokens.access_token)
            .send()
            .await
            .unwrap();
        assert_eq!(me.status(), 200);
    }
    let refused = app
        .get("/me")
        .bearer_auth(&first.tokens.access_token)
        .send()
        .await
        .unwrap();
    expect_problem(refused, 429, "rate-limited").await;
    let other_user = app
        .get("/me")
        .bearer_auth(&second.tokens.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        other_user.status(),
        200,
        "another account has its own quota"
    );

    // The address has 2 requests left, whatever it claims to be forwarding for.
    let statuses: Vec<u16> = futures_util::future::join_all(
        ["198.51.100.1", "198.51.100.2", "198.51.100.3"]
            .map(|ip| app.get("/products").header("x-forwarded-for", ip).send()),
    )
    .await
    .into_iter()
    .map(|r| r.unwrap().status().as_u16())
    .collect();
    let mut sorted = statuses.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, [200, 200, 429], "{statuses:?}");
}

#[tokio::test]
async fn sign_in_routes_have_a_tighter_limit_and_retry_after_is_honest() {
    let app = TestApp::builder()
        .configure(|s| {
            s.throttler_auth_limit = 2;
            s.throttler_auth_ttl = Duration::from_secs(2);
            s.trusted_proxies = "127.0.0.1/32".into();
        })
        .spawn()
        .await;
    let login = || {
        app.post(
            "/login",
            &serde_json::json!({"email": "nobody@example.com", "password": "wrong password"}),
        )
        .header("x-forwarded-for", "198.51.100.20")
    };
    for _ in 0..2 {
        expect_problem(login().send().await.unwrap(), 401, "unauthorized").await;
    }
    let refused = login().send().await.unwrap();
    let retry_after = number(refused.headers(), "retry-after");
    assert_eq!(retry_after, 1, "one attempt per second is earned back");
    assert_eq!(number(refused.headers(), "ratelimit-limit"), 2);
    expect_problem(refused, 429, "rate-limited").await;
    // Other routes from the same address are not held back by this limit.
    let products = app
        .get("/products")
        .header("x-forwarded-for", "198.51.100.20")
        .send()
        .await
        .unwrap();
    assert_eq!(products.status(), 200);

    // Waiting as long as Retry-After says is enough.
    tokio::time::sleep(Duration::from_secs(retry_after)).await;
    expect_problem(login().send().await.unwrap(), 401, "unauthorized").await;
}

#[tokio::test]
async fn with_redis_cut_each_instance_limits_in_memory() {
    let app = TestApp::builder()
        .redis_through_proxy()
        .configure(|s| {
            s.throttler_limit = 3;
            s.throttler_ttl = Duration::from_secs(60);
            s.trusted_proxies = "127.0.0.1/32".into();
        })
        .spawn()
        .await;
    let get = || {
        app.get("/products")
            .header("x-forwarded-for", "203.0.113.50")
            .send()
    };
    // Two of three used while the quota lives in Redis...
    for _ in 0..2 {
        assert_eq!(get().await.unwrap().status(), 200);
    }
    // ...then Redis goes away: this instance starts counting on its own, so a whole quota is
    // available again (Redis would have refused the second of these).
    app.redis_proxy().cut();
    for remaining in [2, 1, 0] {
        let response = get().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(number(response.headers(), "ratelimit-remaining"), remaining);
    }
    let refused = get().await.unwrap();
    assert_eq!(number(refused.headers(), "retry-after"), 20);
    expect_problem(refused, 429, "rate-limited").await;
}

/// Admitted requests out of `count`, sent one at a time, alternating between `bases`, from one
/// forwarded client.
async fn admitted(app: &TestApp, bases: &[String], client: &str, count: usize) -> usize {
    let mut admitted = 0;
    for i in 0..count {
        let response = app
            .http
            .get(format!("{}/products?limit=1", bases[i % bases.len()]))
            .header("x-forwarded-for", client)
            .send()
            .await
            .unwrap();
        match response.status().as_u16() {
            200 => admitted += 1,
            429 => {}
            status => panic!("request {i} answered {status}"),
        }
    }
    admitted
}

#[tokio::test]
async fn two_instances_lease_one_quota_in_blocks_within_the_stated_tolerance() {
    // 400 an hour: leased 8 at a time, and nothing earned back while the test runs.
    const LIMIT: u32 = 400;
    let app = TestApp::builder()
        .configure(|s| {
            s.throttler_limit = LIMIT;
            s.throttler_ttl = Duration::from_secs(3600);
            s.trusted_proxies = "127.0.0.1/32".into();
        })
        .spawn()
        .await;
    let block = shop_redis::Quota {
        limit: LIMIT,
        period: Duration::from_secs(3600),
    }
    .block();
    assert_eq!(block, 8);
    let other = app.start_instance(Component::Gateway, |_| {}).await;
    let bases = [app.url(""), other.url("")];
    let admitted = admitted(&app, &bases, "203.0.113.60", 500).await;
    // Never more than the quota; fewer by at most the tokens the other instance holds.
    let tolerance = usize::try_from(block - 1).unwrap();
    let limit = usize::try_from(LIMIT).unwrap();
    assert!(
        (limit - tolerance..=limit).contains(&admitted),
        "{admitted} of {LIMIT} admitted"
    );
    other.stop().await;
}

#[tokio::test]
async fn with_redis_cut_two_instances_each_hold_their_local_limit() {
    const LIMIT: u32 = 200;
    let app = TestApp::builder()
        .redis_through_proxy()
        .configure(|s| {
            s.throttler_limit = LIMIT;
            s.throttler_ttl = Duration::from_secs(3600);
            s.trusted_proxies = "127.0.0.1/32".into();
        })
        .spawn()
        .await;
    let other = app.start_instance(Component::Gateway, |_| {}).await;
    app.redis_proxy().cut();
    let limit = usize::try_from(LIMIT).unwrap();
    for base in [app.url(""), other.url("")] {
        assert_eq!(
            admitted(&app, std::slice::from_ref(&base), "203.0.113.61", 250).await,
            limit,
            "{base} limits on its own"
        );
    }
    other.stop().await;
}

#[tokio::test]
async fn cors_preflights_are_answered_for_listed_origins_only() {
    let app = TestApp::builder()
        .configure(|s| s.cors_origins = "https://shop.example.com".into())
        .spawn()
        .await;
    let preflight = |origin: &str, headers: &str| {
        app.http
            .request(reqwest::Method::OPTIONS, app.url("/orders"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", headers)
            .send()
    };
    let allowed = preflight(
        "https://shop.example.com",
        "authorization, content-type, idempotency-key",
    )
    .await
    .unwrap();
    assert_eq!(allowed.status(), 204);
    assert_eq!(allowed.headers()["x-content-type-options"], "nosniff");
    assert!(allowed.headers().contains_key("x-request-id"));
    let header = |name: &str| {
        allowed
            .headers()
            .get(name)
            .unwrap_or_else(|| panic!("no {name}"))
            .to_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(
        header("access-control-allow-origin"),
        "https://shop.example.com"
    );
    assert!(header("access-control-allow-methods").contains("POST"));
    assert!(header("access-control-allow-headers").contains("idempotency-key"));
    assert!(header("vary").contains("Origin"));

    let stranger = preflight("https://evil.example", "authorization")
        .await
        .unwrap();
    assert!(
        !stranger
            .headers()
            .contains_key("access-control-allow-origin")
    );
    expect_problem(stranger, 403, "forbidden").await;
    let odd_header = preflight("https://shop.example.com", "x-something")
        .await
        .unwrap();
    expect_problem(odd_header, 403, "forbidden").await;

    // Actual requests: the listed origin may read the answer (and its rate-limit headers);
    // another origin gets the answer without CORS headers, so its page cannot read it.
    let listed = app
        .get("/products")
        .header("origin", "https://shop.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), 200);
    assert_eq!(
        listed.headers()["access-control-allow-origin"],
        "https://shop.example.com"
    );
    assert!(
        listed.headers()["access-control-expose-headers"]
            .to_str()
            .unwrap()
            .contains("ratelimit-remaining")
    );
    let other = app
        .get("/products")
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert!(!other.headers().contains_key("access-control-allow-origin"));
    // Caches must not hand one origin's answer to another.
    let plain = app.get("/products").send().await.unwrap();
    for response in [&listed, &other, &plain] {
        assert!(
            response
                .headers()
                .get_all("vary")
                .iter()
                .any(|v| v.to_str().unwrap().contains("Origin"))
        );
    }

    // The gateway's own pages are same-origin: their sockets are allowed; other origins are
    // not.
    let user = app.new_user().await;
    let own = format!("http://{}", app.addr(Component::Gateway));
    for (origin, status) in [
        (own.as_str(), 400),
        ("https://shop.example.com", 400),
        ("https://evil.example", 403),
    ] {
        // Not an upgrade: past the origin and token checks, the handshake itself is refused.
        let response = app
            .get("/ws")
            .bearer_auth(&user.tokens.access_token)
            .header("origin", origin)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status, "{origin}");
    }
}

#[tokio::test]
async fn every_answer_carries_the_security_headers() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    let me = app
        .get("/me")
        .bearer_auth(&user.tokens.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);
    assert_eq!(me.headers()["cache-control"], "private, no-store");
    let login = app.login(&user.email, &user.password).await;
    assert_eq!(login.status(), 200);
    assert_eq!(login.headers()["cache-control"], "private, no-store");
    let products = app.get("/products").send().await.unwrap();
    let missing = app.get("/nowhere").send().await.unwrap();
    let unauthorized = app.get("/orders").send().await.unwrap();
    for response in [&me, &products, &missing, &unauthorized] {
        let headers = response.headers();
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert_eq!(headers["x-frame-options"], "DENY");
        assert_eq!(headers["referrer-policy"], "no-referrer");
        assert!(
            headers["content-security-policy"]
                .to_str()
                .unwrap()
                .contains("frame-ancestors 'none'")
        );
        assert!(headers.contains_key("strict-transport-security"));
        assert!(headers.contains_key("x-request-id"));
    }
    assert_eq!(missing.status(), 404);
    assert_eq!(unauthorized.status(), 401);
}

#[tokio::test]
async fn in_flight_slots_are_given_back_when_an_answer_ends() {
    // One call at a time per upstream: a slot kept after its answer would refuse the next.
    let app = TestApp::builder()
        .configure(|s| s.http_max_in_flight = 1)
        .spawn()
        .await;
    for _ in 0..5 {
        let response = app.get("/products").send().await.unwrap();
        assert_eq!(response.status(), 200);
        response.bytes().await.unwrap();
    }
    // A client that walks away before reading the body gives the slot back too.
    for _ in 0..3 {
        drop(app.get("/products").send().await.unwrap());
    }
    wait::until(
        "the abandoned answers' slots to return",
        Duration::from_secs(10),
        || async { (app.get("/products").send().await.unwrap().status() == 200).then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn the_circuit_opens_on_a_dead_upstream_and_closes_after_it_returns() {
    let mut app = TestApp::builder()
        .configure(|s| {
            s.circuit_breaker_threshold = 2;
            s.circuit_breaker_cooldown = Duration::from_secs(3);
        })
        .spawn()
        .await;
    app.stop(Component::Catalog).await;
    for _ in 0..2 {
        let refused = app.get("/products").send().await.unwrap();
        expect_problem(refused, 503, "dependency-unavailable").await;
    }
    // Open: even with the catalog back, calls fail fast until the cool-down ends, and say
    // how long that is.
    app.start(Component::Catalog).await;
    let fast = app.get("/products").send().await.unwrap();
    let retry_after = number(fast.headers(), "retry-after");
    assert!((1..=3).contains(&retry_after), "{retry_after}");
    expect_problem(fast, 503, "dependency-unavailable").await;
    // Other upstreams are unaffected.
    let user = app.new_user().await;
    assert!(!user.tokens.access_token.is_empty());
    // After the cool-down one probe goes through, and the circuit closes.
    wait::until("the circuit to close", Duration::from_secs(15), || async {
        (app.get("/products").send().await.unwrap().status() == 200).then_some(())
    })
    .await;
}
