//! Liveness and readiness: ready means Postgres answers; Redis does not count.

use std::time::Duration;

use shop_settings::Settings;
use shop_testkit::{Component, TcpProxy, TestApp, wait};

async fn status(app: &TestApp, url: &str) -> u16 {
    app.http.get(url).send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn every_part_is_ready_while_redis_is_away() {
    let app = TestApp::builder().redis_through_proxy().spawn().await;
    app.redis_proxy().cut();
    for component in [
        Component::User,
        Component::Catalog,
        Component::Order,
        Component::Payment,
        Component::Gateway,
    ] {
        let base = format!("http://{}", app.addr(component));
        assert_eq!(
            status(&app, &format!("{base}/healthz")).await,
            200,
            "{component:?}"
        );
        assert_eq!(
            status(&app, &format!("{base}/readyz")).await,
            200,
            "{component:?}"
        );
    }
}

#[tokio::test]
async fn without_postgres_a_service_is_alive_but_not_ready() {
    let app = TestApp::spawn().await;
    let postgres = TcpProxy::start("127.0.0.1:5432".parse().unwrap()).await;
    let settings = Settings {
        database_url: app
            .db()
            .url()
            .replace("127.0.0.1:5432", &postgres.addr().to_string())
            .into(),
        database_acquire_timeout: Duration::from_millis(500),
        ..app.settings.clone()
    };
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let running = catalog_service::start(settings, listener).await.unwrap();
    assert_eq!(status(&app, &format!("{base}/readyz")).await, 200);

    postgres.cut();
    assert_eq!(status(&app, &format!("{base}/readyz")).await, 503);
    assert_eq!(status(&app, &format!("{base}/healthz")).await, 200);

    postgres.restore();
    wait::until("readiness to return", Duration::from_secs(15), || async {
        (status(&app, &format!("{base}/readyz")).await == 200).then_some(())
    })
    .await;
    running.stop().await;
}
