//! The cache never serves data older than an acknowledged write, and never fails reads.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use serde_json::{Value, json};
use shop_testkit::{Component, Instance, TcpProxy, TestApp, TestUser, wait};

use crate::{create_product, id_of, read_product};

async fn list(app: &TestApp, query: &str) -> Value {
    let response = app.get(&format!("/products?{query}")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

async fn cached_entry_exists(app: &TestApp, key: &str) -> bool {
    cached_entry(app, key).await.is_some()
}

#[tokio::test]
async fn a_write_is_seen_by_the_next_read_of_products_and_lists() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let first = create_product(&app, &admin, "Whisk", 700, 4).await;
    let id = id_of(&first);
    // Warm both caches.
    assert_eq!(read_product(&app, id).await.2["name"], "Whisk");
    assert_eq!(list(&app, "sort=name").await["items"][0]["name"], "Whisk");
    assert!(
        cached_entry_exists(&app, &format!("catalog:product:{id}")).await,
        "reads fill the cache"
    );

    let renamed = app
        .http
        .put(app.url(&format!("/products/{id}")))
        .header("authorization", admin.bearer())
        .json(&json!({"name": "Balloon whisk", "priceCents": 750, "version": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(renamed.status(), 200);
    assert_eq!(read_product(&app, id).await.2["name"], "Balloon whisk");
    let page = list(&app, "sort=name").await;
    assert_eq!(page["items"][0]["name"], "Balloon whisk");
    assert_eq!(page["items"][0]["priceCents"], 750);

    create_product(&app, &admin, "Colander", 1100, 2).await;
    assert_eq!(list(&app, "sort=name").await["total"], 2);
    let adjusted = app
        .post(
            &format!("/products/{id}/stock-adjustments"),
            &json!({"delta": -4, "reason": "sold out"}),
        )
        .header("authorization", admin.bearer())
        .send()
        .await
        .unwrap();
    assert_eq!(adjusted.status(), 200);
    assert_eq!(read_product(&app, id).await.2["stock"], 0);
    assert_eq!(list(&app, "inStock=true").await["total"], 1);

    let deleted = app
        .http
        .delete(app.url(&format!("/products/{id}")))
        .header("authorization", admin.bearer())
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    assert_eq!(read_product(&app, id).await.0, 404);
    assert_eq!(list(&app, "sort=name").await["total"], 1);
}

#[tokio::test]
async fn concurrent_readers_never_bring_back_an_older_version() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let id = id_of(&create_product(&app, &admin, "Sieve", 0, 1).await);
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicUsize::new(0));
    let readers: Vec<_> = (0..8)
        .map(|i| {
            let (http, stop, reads) = (app.http.clone(), stop.clone(), reads.clone());
            let url = if i % 2 == 0 {
                app.url(&format!("/products/{id}"))
            } else {
                app.url("/products?sort=name")
            };
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let status = http.get(&url).send().await.unwrap().status();
                    assert_eq!(status, 200);
                    reads.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for price in 1..=25_i64 {
        let response = app
            .http
            .put(app.url(&format!("/products/{id}")))
            .header("authorization", admin.bearer())
            .json(&json!({"name": "Sieve", "priceCents": price, "version": price}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "write {price}");
        let (_, _, single) = read_product(&app, id).await;
        assert_eq!(
            single["priceCents"], price,
            "single product after write {price}"
        );
        let page = list(&app, "sort=name").await;
        assert_eq!(
            page["items"][0]["priceCents"], price,
            "list page after write {price}"
        );
    }
    stop.store(true, Ordering::Relaxed);
    for reader in readers {
        reader.await.unwrap();
    }
    assert!(
        reads.load(Ordering::Relaxed) > 25,
        "the readers really raced the writes"
    );
}

#[tokio::test]
async fn with_redis_cut_reads_and_writes_work_and_stay_fresh() {
    let app = TestApp::builder().redis_through_proxy().spawn().await;
    let admin = app.admin().await;
    let id = id_of(&create_product(&app, &admin, "Ladle", 900, 3).await);
    assert_eq!(read_product(&app, id).await.0, 200);
    list(&app, "").await;

    app.redis_proxy().cut();
    assert_eq!(read_product(&app, id).await.2["name"], "Ladle");
    assert_eq!(list(&app, "").await["total"], 1);
    let renamed = app
        .http
        .put(app.url(&format!("/products/{id}")))
        .header("authorization", admin.bearer())
        .json(&json!({"name": "Soup ladle", "priceCents": 900, "version": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(renamed.status(), 200);
    create_product(&app, &admin, "Tongs", 500, 1).await;
    assert_eq!(read_product(&app, id).await.2["name"], "Soup ladle");
    assert_eq!(list(&app, "").await["total"], 2);

    // Back: the entries cached before the cut are never served over the newer writes, neither
    // while the missed writes are replayed nor after.
    app.redis_proxy().restore();
    assert_eq!(read_product(&app, id).await.2["name"], "Soup ladle");
    assert_eq!(list(&app, "").await["total"], 2);
    let key = format!("catalog:product:{id}");
    wait::until(
        "the missed write to reach Redis",
        Duration::from_secs(15),
        || async {
            cached_entry(&app, &key)
                .await
                .filter(|entry| entry.contains("Soup ladle"))
        },
    )
    .await;
    assert_eq!(read_product(&app, id).await.2["name"], "Soup ladle");
    assert_eq!(list(&app, "").await["total"], 2);
    assert_eq!(
        list(&app, "").await["total"],
        2,
        "and from the cache once stored"
    );
}

async fn cached_entry(app: &TestApp, key: &str) -> Option<String> {
    let redis = shop_redis::RedisPool::with_url(
        "redis://127.0.0.1:6379",
        app.redis_prefix(),
        1,
        Duration::from_secs(1),
    )
    .unwrap();
    let mut conn = redis.get().await.unwrap();
    shop_redis::redis::cmd("GET")
        .arg(redis.key(key))
        .query_async(&mut *conn)
        .await
        .unwrap()
}

/// A product read from one catalog instance directly, as the gateway reads it: (status, ETag,
/// name).
async fn read_at(
    app: &TestApp,
    instance: &Instance,
    id: uuid::Uuid,
    if_none_match: Option<&str>,
) -> (u16, Option<String>, Option<String>) {
    let mut request = app
        .http
        .get(instance.url(&format!("/products/{id}")))
        .header("x-internal-token", app.settings.internal_token());
    if let Some(tag) = if_none_match {
        request = request.header("if-none-match", tag);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let etag = response
        .headers()
        .get("etag")
        .map(|v| v.to_str().unwrap().to_owned());
    let name = if status == 200 {
        let body: Value = response.json().await.unwrap();
        body["name"].as_str().map(str::to_owned)
    } else {
        None
    };
    (status, etag, name)
}

async fn rename(app: &TestApp, admin: &TestUser, id: uuid::Uuid, name: &str, version: i64) {
    let response = app
        .http
        .put(app.url(&format!("/products/{id}")))
        .header("authorization", admin.bearer())
        .json(&json!({"name": name, "priceCents": 100, "version": version}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "renaming to {name}");
}

/// `url` with its host and port replaced by `addr` (a proxy in front of it).
fn through(url: &str, addr: std::net::SocketAddr) -> String {
    let (scheme_and_user, rest) = url.split_once('@').unwrap();
    let (_, path) = rest.split_once('/').unwrap();
    format!("{scheme_and_user}@{addr}/{path}")
}

#[tokio::test]
async fn a_write_through_one_instance_is_read_through_another_within_the_bound() {
    let app = TestApp::spawn().await;
    let bound = app.settings.product_cache_sync;
    let admin = app.admin().await;
    let other = app.start_instance(Component::Catalog, |_| {}).await;
    let id = id_of(&create_product(&app, &admin, "Pan", 100, 5).await);
    assert_eq!(
        read_at(&app, &other, id, None).await.2.as_deref(),
        Some("Pan")
    );

    // The broadcast carries the write to the other instance's memory.
    rename(&app, &admin, id, "Frying pan", 1).await;
    wait::until(
        "the other instance to see the write",
        Duration::from_secs(5),
        || async {
            let (_, _, name) = read_at(&app, &other, id, None).await;
            (name.as_deref() == Some("Frying pan")).then_some(())
        },
    )
    .await;

    // The broadcast lost (ticks too): what the other instance holds is re-validated once the
    // bound has passed. The bound itself is what is checked, so this waits exactly that long.
    other
        .catalog_hooks()
        .lose_broadcasts
        .store(true, Ordering::SeqCst);
    rename(&app, &admin, id, "Skillet", 2).await;
    tokio::time::sleep(bound).await;
    assert_eq!(
        read_at(&app, &other, id, None).await.2.as_deref(),
        Some("Skillet"),
        "served past the bound"
    );
    // A deleted product is never served past the bound either, and at once where deleted.
    let deleted = app
        .http
        .delete(app.url(&format!("/products/{id}")))
        .header("authorization", admin.bearer())
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    assert_eq!(read_product(&app, id).await.0, 404);
    tokio::time::sleep(bound).await;
    assert_eq!(read_at(&app, &other, id, None).await.0, 404);
    other.stop().await;
}

#[tokio::test]
async fn with_its_redis_link_cut_another_instance_still_converges_within_the_bound() {
    let app = TestApp::spawn().await;
    let bound = app.settings.product_cache_sync;
    let admin = app.admin().await;
    let proxy = TcpProxy::start(shop_testkit::SHARED_REDIS.parse().unwrap()).await;
    let cache_url = format!("redis://{}", proxy.addr());
    let other = app
        .start_instance(Component::Catalog, move |s| {
            s.cache_redis_url = Some(cache_url.into());
        })
        .await;
    let id = id_of(&create_product(&app, &admin, "Kettle", 100, 5).await);
    assert_eq!(
        read_at(&app, &other, id, None).await.2.as_deref(),
        Some("Kettle")
    );

    // Its subscription and its Redis reads go: it answers from Postgres once the bound is up.
    proxy.cut();
    rename(&app, &admin, id, "Whistling kettle", 1).await;
    tokio::time::sleep(bound).await;
    assert_eq!(
        read_at(&app, &other, id, None).await.2.as_deref(),
        Some("Whistling kettle")
    );
    proxy.restore();
    rename(&app, &admin, id, "Electric kettle", 2).await;
    wait::until(
        "the instance to read the newest write again",
        Duration::from_secs(10),
        || async {
            let (_, _, name) = read_at(&app, &other, id, None).await;
            (name.as_deref() == Some("Electric kettle")).then_some(())
        },
    )
    .await;
    other.stop().await;
}

#[tokio::test]
async fn a_revalidation_answers_304_from_memory_with_redis_and_postgres_gone() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let id = id_of(&create_product(&app, &admin, "Teapot", 100, 5).await);
    let redis = TcpProxy::start(shop_testkit::SHARED_REDIS.parse().unwrap()).await;
    let postgres = TcpProxy::start("127.0.0.1:5432".parse().unwrap()).await;
    let (cache_url, database_url) = (
        format!("redis://{}", redis.addr()),
        through(app.db().url(), postgres.addr()),
    );
    let other = app
        .start_instance(Component::Catalog, move |s| {
            s.cache_redis_url = Some(cache_url.into());
            s.database_url = database_url.into();
            // A bound longer than the test: what it holds stays servable without a broadcast.
            s.product_cache_sync = Duration::from_secs(600);
        })
        .await;
    let (status, etag, _) = read_at(&app, &other, id, None).await;
    assert_eq!(status, 200);
    let etag = etag.unwrap();

    redis.cut();
    postgres.cut();
    let (status, revalidated, _) = read_at(&app, &other, id, Some(&etag)).await;
    assert_eq!(status, 304);
    assert_eq!(revalidated.as_deref(), Some(etag.as_str()));
    let (status, served, name) = read_at(&app, &other, id, None).await;
    assert_eq!((status, served.as_deref()), (200, Some(etag.as_str())));
    assert_eq!(name.as_deref(), Some("Teapot"));
    other.stop().await;
}
