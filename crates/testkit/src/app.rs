//! The whole system in-process: four services and the gateway on port 0, one test database,
//! one random Redis prefix, and an SMTP server the user service mails to.

use std::{collections::HashMap, net::SocketAddr, time::Duration};

use serde_json::{Value, json};
use shop_contracts::TokenResponse;
use shop_http::Running;
use shop_settings::{AppEnv, MailTransport, Settings};

use crate::{SmtpServer, TcpProxy, TestDb, TestRedis, test_redis::SHARED_REDIS};

/// The administrator every test system has.
pub const ADMIN_EMAIL: &str = "admin@test.local";
/// Its password.
pub const ADMIN_PASSWORD: &str = "admin-test-password";

/// A part of the system that can be stopped and started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Component {
    User,
    Catalog,
    Order,
    Payment,
    Gateway,
}

impl Component {
    const ALL: [Component; 5] = [
        Component::User,
        Component::Catalog,
        Component::Order,
        Component::Payment,
        Component::Gateway,
    ];
}

type Configure = Box<dyn FnOnce(&mut Settings) + Send>;

/// Options for [`TestApp`].
#[derive(Default)]
pub struct TestAppBuilder {
    configure: Vec<Configure>,
    redis_through_proxy: bool,
    redis_url: Option<String>,
}

impl std::fmt::Debug for TestAppBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestAppBuilder")
            .field("redis_through_proxy", &self.redis_through_proxy)
            .finish_non_exhaustive()
    }
}

impl TestAppBuilder {
    /// Adjusts the settings every component gets.
    #[must_use]
    pub fn configure(mut self, f: impl FnOnce(&mut Settings) + Send + 'static) -> Self {
        self.configure.push(Box::new(f));
        self
    }

    /// Routes every component's Redis traffic through a [`TcpProxy`] the test controls.
    #[must_use]
    pub fn redis_through_proxy(mut self) -> Self {
        self.redis_through_proxy = true;
        self
    }

    /// Uses this Redis (e.g. a [`crate::PrivateRedis`]) instead of the shared one.
    #[must_use]
    pub fn redis_url(mut self, url: String) -> Self {
        self.redis_url = Some(url);
        self
    }

    /// Creates the database and starts everything.
    pub async fn spawn(self) -> TestApp {
        shop_telemetry::init_for_tests();
        let db = TestDb::create().await;
        let redis = TestRedis::new();
        let redis_proxy = if self.redis_through_proxy {
            Some(TcpProxy::start(SHARED_REDIS.parse().unwrap()).await)
        } else {
            None
        };
        let mut addrs = HashMap::new();
        let mut listeners = HashMap::new();
        for component in Component::ALL {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            addrs.insert(component, listener.local_addr().unwrap());
            listeners.insert(component, listener);
        }
        let url = |c: Component| format!("http://{}", addrs[&c]);
        let smtp = SmtpServer::start().await;
        let mut settings = Settings {
            app_env: AppEnv::Test,
            rust_log: "warn".into(),
            database_url: db.url().into(),
            database_pool_size: 3,
            database_acquire_timeout: Duration::from_secs(5),
            run_migrations_on_start: false,
            redis_url: Some(
                match (&self.redis_url, &redis_proxy) {
                    (Some(url), _) => url.clone(),
                    (None, Some(proxy)) => format!("redis://{}", proxy.addr()),
                    (None, None) => format!("redis://{SHARED_REDIS}"),
                }
                .into(),
            ),
            redis_key_prefix: redis.prefix().to_owned(),
            redis_pool_size: 4,
            bcrypt_cost: 4,
            admin_email: Some(ADMIN_EMAIL.into()),
            admin_password: Some(ADMIN_PASSWORD.into()),
            user_service_url: url(Component::User),
            catalog_service_url: url(Component::Catalog),
            order_service_url: url(Component::Order),
            payment_service_url: url(Component::Payment),
            http_workers: 1,
            shutdown_timeout: Duration::from_secs(1),
            mail_transport: MailTransport::Smtp,
            smtp_url: Some(smtp.url().into()),
            // Explicit, and far above what any test sends unless it sets its own.
            throttler_limit: 100_000,
            throttler_auth_limit: 100_000,
            ..Settings::default()
        };
        for configure in self.configure {
            configure(&mut settings);
        }
        settings.validate().expect("test settings are valid");
        let redis_direct = self
            .redis_url
            .clone()
            .unwrap_or_else(|| format!("redis://{SHARED_REDIS}"));
        let mut app = TestApp {
            settings,
            smtp,
            db,
            redis,
            redis_proxy,
            redis_direct,
            addrs,
            running: HashMap::new(),
            order_hooks: std::sync::Arc::default(),
            payment_hooks: std::sync::Arc::default(),
            catalog_hooks: std::sync::Arc::default(),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
        };
        for component in Component::ALL {
            let listener = listeners.remove(&component).unwrap();
            app.start_on(component, listener).await;
        }
        app
    }
}

/// A running system for one test.
#[derive(Debug)]
pub struct TestApp {
    /// The settings every component got.
    pub settings: Settings,
    /// The SMTP server the user service mails to.
    pub smtp: SmtpServer,
    db: TestDb,
    redis: TestRedis,
    redis_proxy: Option<TcpProxy>,
    /// The Redis server itself (never through the proxy), for assertions.
    redis_direct: String,
    addrs: HashMap<Component, SocketAddr>,
    running: HashMap<Component, Running>,
    order_hooks: std::sync::Arc<order_service::hooks::Hooks>,
    payment_hooks: std::sync::Arc<payment_service::hooks::Hooks>,
    catalog_hooks: std::sync::Arc<catalog_service::hooks::Hooks>,
    /// A plain HTTP client (no redirects followed).
    pub http: reqwest::Client,
}

/// Another instance of a component (see [`TestApp::start_instance`]); it runs until
/// [`Instance::stop`] or the end of the test.
#[derive(Debug)]
pub struct Instance {
    running: Option<Running>,
    addr: SocketAddr,
    catalog_hooks: std::sync::Arc<catalog_service::hooks::Hooks>,
}

impl Instance {
    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The URL of `path` on it.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Its switches, if it is a catalog instance.
    pub fn catalog_hooks(&self) -> &catalog_service::hooks::Hooks {
        &self.catalog_hooks
    }

    /// Stops it gracefully.
    pub async fn stop(mut self) {
        if let Some(running) = self.running.take() {
            running.stop().await;
        }
    }
}

/// A registered, logged-in user.
#[derive(Debug, Clone)]
pub struct TestUser {
    pub id: uuid::Uuid,
    pub email: String,
    pub password: String,
    pub tokens: TokenResponse,
}

impl TestUser {
    /// `Authorization` header value.
    pub fn bearer(&self) -> String {
        format!("Bearer {}", self.tokens.access_token)
    }
}

impl TestApp {
    /// Everything with default test settings.
    pub async fn spawn() -> Self {
        Self::builder().spawn().await
    }

    /// Options first.
    pub fn builder() -> TestAppBuilder {
        TestAppBuilder::default()
    }

    async fn start_on(&mut self, component: Component, listener: std::net::TcpListener) {
        let settings = self.settings.clone();
        let running = match component {
            Component::User => user_service::start(settings, listener).await,
            Component::Catalog => {
                catalog_service::start_with_hooks(settings, listener, self.catalog_hooks.clone())
                    .await
            }
            Component::Order => {
                order_service::start_with_hooks(settings, listener, self.order_hooks.clone()).await
            }
            Component::Payment => {
                payment_service::start_with_hooks(settings, listener, self.payment_hooks.clone())
                    .await
            }
            Component::Gateway => gateway::start(settings, listener).await,
        }
        .unwrap_or_else(|e| panic!("cannot start {component:?}: {e:#}"));
        self.running.insert(component, running);
    }

    /// Stops a component gracefully; its port stays reserved for [`TestApp::start`].
    pub async fn stop(&mut self, component: Component) {
        if let Some(running) = self.running.remove(&component) {
            running.stop().await;
        }
    }

    /// Starts a stopped component again on its old port.
    pub async fn start(&mut self, component: Component) {
        assert!(
            !self.running.contains_key(&component),
            "{component:?} is running"
        );
        let addr = self.addrs[&component];
        let listener = std::net::TcpListener::bind(addr).unwrap();
        self.start_on(component, listener).await;
    }

    /// The order service's fault-injection switches.
    pub fn order_hooks(&self) -> &order_service::hooks::Hooks {
        &self.order_hooks
    }

    /// The payment service's fault-injection switches.
    pub fn payment_hooks(&self) -> &payment_service::hooks::Hooks {
        &self.payment_hooks
    }

    /// The catalog service's fault-injection switches.
    pub fn catalog_hooks(&self) -> &catalog_service::hooks::Hooks {
        &self.catalog_hooks
    }

    /// Starts another instance of `component` on a port of its own, with this system's
    /// settings adjusted by `configure` and switches of its own (for the catalog). It shares
    /// the database and Redis prefix; nothing routes to it unless the test does.
    pub async fn start_instance(
        &self,
        component: Component,
        configure: impl FnOnce(&mut Settings),
    ) -> Instance {
        let mut settings = self.settings.clone();
        configure(&mut settings);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let catalog_hooks = std::sync::Arc::<catalog_service::hooks::Hooks>::default();
        let running = match component {
            Component::User => user_service::start(settings, listener).await,
            Component::Catalog => {
                catalog_service::start_with_hooks(settings, listener, catalog_hooks.clone()).await
            }
            Component::Order => order_service::start(settings, listener).await,
            Component::Payment => payment_service::start(settings, listener).await,
            Component::Gateway => gateway::start(settings, listener).await,
        }
        .unwrap_or_else(|e| panic!("cannot start another {component:?}: {e:#}"));
        Instance {
            running: Some(running),
            addr,
            catalog_hooks,
        }
    }

    /// A component's address.
    pub fn addr(&self, component: Component) -> SocketAddr {
        self.addrs[&component]
    }

    /// The gateway URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addrs[&Component::Gateway])
    }

    /// The test's database.
    pub fn db(&self) -> &TestDb {
        &self.db
    }

    /// The prefix of every Redis key this system writes.
    pub fn redis_prefix(&self) -> &str {
        self.redis.prefix()
    }

    /// The URL of the Redis server itself (not through the proxy).
    pub fn redis_direct_url(&self) -> &str {
        &self.redis_direct
    }

    /// The proxy in front of Redis (with [`TestAppBuilder::redis_through_proxy`]).
    pub fn redis_proxy(&self) -> &TcpProxy {
        self.redis_proxy
            .as_ref()
            .expect("spawned with redis_through_proxy()")
    }

    /// `GET` through the gateway.
    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.get(self.url(path))
    }

    /// `POST` of a JSON body through the gateway.
    pub fn post(&self, path: &str, body: &Value) -> reqwest::RequestBuilder {
        self.http.post(self.url(path)).json(body)
    }

    /// `PATCH` of a JSON body through the gateway.
    pub fn patch(&self, path: &str, body: &Value) -> reqwest::RequestBuilder {
        self.http.patch(self.url(path)).json(body)
    }

    /// Registers an account; returns the raw answer.
    pub async fn register(&self, email: &str, password: &str) -> reqwest::Response {
        self.post("/register", &json!({"email": email, "password": password}))
            .send()
            .await
            .unwrap()
    }

    /// Logs in; returns the raw answer.
    pub async fn login(&self, email: &str, password: &str) -> reqwest::Response {
        self.post("/login", &json!({"email": email, "password": password}))
            .send()
            .await
            .unwrap()
    }

    /// Logs in and decodes the tokens, panicking unless it succeeds.
    pub async fn login_ok(&self, email: &str, password: &str) -> TokenResponse {
        let response = self.login(email, password).await;
        assert_eq!(response.status(), 200, "login of {email}");
        response.json().await.unwrap()
    }

    /// Registers and logs in a fresh user.
    pub async fn new_user(&self) -> TestUser {
        let email = format!("user-{}@example.com", uuid::Uuid::new_v4().simple());
        let password = "a good password".to_owned();
        let response = self.register(&email, &password).await;
        assert_eq!(response.status(), 201, "registration of {email}");
        let user: Value = response.json().await.unwrap();
        let tokens = self.login_ok(&email, &password).await;
        TestUser {
            id: user["id"].as_str().unwrap().parse().unwrap(),
            email,
            password,
            tokens,
        }
    }

    /// The administrator, logged in.
    pub async fn admin(&self) -> TestUser {
        let tokens = self.login_ok(ADMIN_EMAIL, ADMIN_PASSWORD).await;
        let me: Value = self
            .get("/me")
            .header("authorization", format!("Bearer {}", tokens.access_token))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        TestUser {
            id: me["id"].as_str().unwrap().parse().unwrap(),
            email: ADMIN_EMAIL.into(),
            password: ADMIN_PASSWORD.into(),
            tokens,
        }
    }
}
