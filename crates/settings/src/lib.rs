//! Layered configuration shared by every Shop binary.
//!
//! Built-in defaults, then an optional file (`SHOP_CONFIG_FILE`, TOML), then the process
//! environment, using the variable names of the original requirements (`DATABASE_URL`,
//! `JWT_SECRET`, `THROTTLER_TTL`, ...). A value that does not parse or validate is a start-up
//! error naming the variable. With `APP_ENV=production` default or missing secrets are refused.

mod duration;
mod fields;
mod table;

use std::{collections::HashMap, net::SocketAddr, time::Duration};

use ipnet::IpNet;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

pub use duration::parse as parse_duration;
pub use fields::field_names;
pub use table::{VARIABLES, Variable, markdown_table};

/// The development defaults for the secrets; refused when `APP_ENV=production`.
pub const DEV_JWT_SECRET: &str = "dev-only-jwt-secret-0123456789abcdefghijkl";
/// See [`DEV_JWT_SECRET`].
pub const DEV_INTERNAL_TOKEN: &str = "dev-only-internal-token-0123456789abcdefgh";
/// The development database URL (its password is the well-known default).
pub const DEV_DATABASE_URL: &str = "postgres://postgres:postgres@127.0.0.1:5432/shop";
/// The administrator created in development when `ADMIN_EMAIL` is not set.
pub const DEV_ADMIN_EMAIL: &str = "admin@shop.local";
/// Its password (development only; README documents it).
pub const DEV_ADMIN_PASSWORD: &str = "admin-dev-password";

/// Where the binary runs; decides which defaults are acceptable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AppEnv {
    /// A developer's machine: every default works out of the box.
    Development,
    /// Automated tests.
    Test,
    /// Real deployments: secrets must be given explicitly.
    Production,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable, for terminals.
    Pretty,
    /// One JSON object per line, for collectors.
    Json,
}

/// The service whose database settings are wanted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    /// Accounts and sessions (schema `users`).
    User,
    /// Products and stock (schema `catalog`).
    Catalog,
    /// Carts and orders (schema `orders`).
    Order,
    /// Payments (schema `payments`).
    Payment,
}

impl Service {
    /// The Postgres schema the service owns.
    pub fn schema(self) -> &'static str {
        match self {
            Service::User => "users",
            Service::Catalog => "catalog",
            Service::Order => "orders",
            Service::Payment => "payments",
        }
    }

    /// The name sent as `X-Caller` and used in logs.
    pub fn name(self) -> &'static str {
        match self {
            Service::User => "user",
            Service::Catalog => "catalog",
            Service::Order => "order",
            Service::Payment => "payment",
        }
    }
}

/// Every setting of every binary; each binary reads the part it needs.
///
/// Field names are the lower-cased environment variable names.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub app_env: AppEnv,
    pub log_format: LogFormat,
    pub rust_log: String,

    pub database_url: SecretString,
    pub user_database_url: Option<SecretString>,
    pub catalog_database_url: Option<SecretString>,
    pub order_database_url: Option<SecretString>,
    pub payment_database_url: Option<SecretString>,
    pub database_pool_size: u32,
    #[serde(deserialize_with = "duration::millis")]
    pub database_acquire_timeout: Duration,
    pub run_migrations_on_start: bool,

    pub redis_url: Option<SecretString>,
    pub redis_host: String,
    pub redis_port: u16,
    pub redis_password: Option<SecretString>,
    pub redis_key_prefix: String,
    pub redis_pool_size: u32,
    pub cache_redis_url: Option<SecretString>,
    #[serde(deserialize_with = "duration::secs")]
    pub product_cache_ttl: Duration,
    #[serde(deserialize_with = "duration::secs")]
    pub list_cache_ttl: Duration,
    /// How long another catalog instance's write may stay unseen by this one's in-process
    /// cache (DESIGN, "Product read freshness").
    #[serde(deserialize_with = "duration::millis")]
    pub product_cache_sync: Duration,
    #[serde(deserialize_with = "duration::millis")]
    pub redis_acquire_timeout: Duration,

    pub jwt_secret: Option<SecretString>,
    pub jwt_key_id: String,
    pub jwt_previous_secret: Option<SecretString>,
    pub jwt_previous_key_id: Option<String>,
    #[serde(deserialize_with = "duration::secs")]
    pub jwt_expires_in: Duration,
    #[serde(deserialize_with = "duration::secs")]
    pub refresh_expires_in: Duration,
    pub jwt_issuer: String,
    pub jwt_audience: String,
    pub internal_token: Option<SecretString>,
    pub internal_token_previous: Option<SecretString>,
    pub bcrypt_cost: u32,
    pub bcrypt_queue: usize,
    pub login_throttle_limit: u32,
    #[serde(deserialize_with = "duration::secs")]
    pub login_throttle_window: Duration,
    #[serde(deserialize_with = "duration::secs")]
    pub denylist_grace: Duration,
    #[serde(deserialize_with = "duration::secs")]
    pub ws_check_interval: Duration,
    #[serde(deserialize_with = "duration::secs")]
    pub ws_idle_timeout: Duration,
    pub ws_queue: usize,
    pub admin_email: Option<String>,
    pub admin_password: Option<SecretString>,

    #[serde(deserialize_with = "duration::millis")]
    pub throttler_ttl: Duration,
    pub throttler_limit: u32,
    pub throttler_enabled: bool,
    #[serde(deserialize_with = "duration::millis")]
    pub throttler_auth_ttl: Duration,
    pub throttler_auth_limit: u32,
    pub cors_origins: String,
    pub trusted_proxies: String,
    pub max_body_bytes: usize,

    pub metrics_addr: String,
    pub otel_exporter_otlp_endpoint: Option<String>,
    pub gateway_addr: SocketAddr,
    pub user_addr: SocketAddr,
    pub catalog_addr: SocketAddr,
    pub order_addr: SocketAddr,
    pub payment_addr: SocketAddr,
    pub user_service_url: String,
    pub catalog_service_url: String,
    pub order_service_url: String,
    pub payment_service_url: String,
    pub http_workers: usize,
    #[serde(deserialize_with = "duration::millis")]
    pub http_connect_timeout: Duration,
    #[serde(deserialize_with = "duration::millis")]
    pub user_service_timeout: Duration,
    #[serde(deserialize_with = "duration::millis")]
    pub catalog_service_timeout: Duration,
    #[serde(deserialize_with = "duration::millis")]
    pub order_service_timeout: Duration,
    #[serde(deserialize_with = "duration::millis")]
    pub payment_service_timeout: Duration,
    pub http_retries: u32,
    pub http_max_in_flight: usize,
    pub http_pool_max_idle: usize,
    pub circuit_breaker_threshold: u32,
    #[serde(deserialize_with = "duration::millis")]
    pub circuit_breaker_cooldown: Duration,
    #[serde(deserialize_with = "duration::secs")]
    pub shutdown_timeout: Duration,

    pub currency: String,
    #[serde(deserialize_with = "duration::secs")]
    pub reserve_timeout: Duration,
    #[serde(deserialize_with = "duration::secs")]
    pub order_payment_timeout: Duration,
    #[serde(deserialize_with = "duration::secs_opt")]
    pub payment_request_resend: Option<Duration>,
    #[serde(deserialize_with = "duration::secs")]
    pub idempotency_ttl: Duration,
    #[serde(deserialize_with = "duration::secs")]
    pub idempotency_resume_after: Duration,
    #[serde(deserialize_with = "duration::secs")]
    pub worker_interval: Duration,
    #[serde(deserialize_with = "duration::millis")]
    pub outbox_poll_interval: Duration,
    #[serde(deserialize_with = "duration::secs")]
    pub outbox_retention: Duration,
    pub notifications_max_len: u64,
    pub user_stream_max_len: u64,
    #[serde(deserialize_with = "duration::secs")]
    pub user_stream_ttl: Duration,
    pub backoff_retries: u32,
    #[serde(deserialize_with = "duration::millis")]
    pub backoff_delay: Duration,
    pub payment_failed_probability: u8,
    #[serde(deserialize_with = "duration::millis")]
    pub payment_duration: Duration,
    pub payment_concurrency: usize,
    pub payment_max_deliveries: u32,
    #[serde(deserialize_with = "duration::secs")]
    pub payment_reclaim_idle: Duration,
    pub payment_consumer: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        let addr = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
        Self {
            app_env: AppEnv::Development,
            log_format: LogFormat::Pretty,
            rust_log: "info".into(),
            database_url: DEV_DATABASE_URL.into(),
            user_database_url: None,
            catalog_database_url: None,
            order_database_url: None,
            payment_database_url: None,
            database_pool_size: 10,
            database_acquire_timeout: Duration::from_secs(5),
            run_migrations_on_start: true,
            redis_url: None,
            redis_host: "127.0.0.1".into(),
            redis_port: 6379,
            redis_password: None,
            redis_key_prefix: "shop:".into(),
            redis_pool_size: 16,
            cache_redis_url: None,
            product_cache_ttl: Duration::from_secs(300),
            list_cache_ttl: Duration::from_secs(30),
            product_cache_sync: Duration::from_millis(100),
            redis_acquire_timeout: Duration::from_millis(500),
            jwt_secret: None,
            jwt_key_id: "k1".into(),
            jwt_previous_secret: None,
            jwt_previous_key_id: None,
            jwt_expires_in: Duration::from_secs(15 * 60),
            refresh_expires_in: Duration::from_secs(30 * 86_400),
            jwt_issuer: "shop".into(),
            jwt_audience: "shop-api".into(),
            internal_token: None,
            internal_token_previous: None,
            bcrypt_cost: 12,
            bcrypt_queue: 32,
            login_throttle_limit: 5,
            login_throttle_window: Duration::from_secs(15 * 60),
            denylist_grace: Duration::from_secs(60),
            ws_check_interval: Duration::from_secs(15),
            ws_idle_timeout: Duration::from_secs(60),
            ws_queue: 256,
            admin_email: None,
            admin_password: None,
            throttler_ttl: Duration::from_secs(60),
            metrics_addr: "127.0.0.1:9464".into(),
            otel_exporter_otlp_endpoint: None,
            throttler_limit: 600,
            throttler_enabled: true,
            throttler_auth_ttl: Duration::from_secs(60),
            throttler_auth_limit: 10,
            cors_origins: String::new(),
            trusted_proxies: String::new(),
            max_body_bytes: 1024 * 1024,
            gateway_addr: SocketAddr::from(([0, 0, 0, 0], 8080)),
            user_addr: addr(8081),
            catalog_addr: addr(8082),
            order_addr: addr(8083),
            payment_addr: addr(8084),
            user_service_url: "http://127.0.0.1:8081".into(),
            catalog_service_url: "http://127.0.0.1:8082".into(),
            order_service_url: "http://127.0.0.1:8083".into(),
            payment_service_url: "http://127.0.0.1:8084".into(),
            http_workers: 0,
            http_connect_timeout: Duration::from_secs(1),
            user_service_timeout: Duration::from_secs(5),
            catalog_service_timeout: Duration::from_secs(3),
            order_service_timeout: Duration::from_secs(10),
            payment_service_timeout: Duration::from_secs(3),
            http_retries: 2,
            http_max_in_flight: 512,
            http_pool_max_idle: 64,
            circuit_breaker_threshold: 5,
            circuit_breaker_cooldown: Duration::from_secs(5),
            shutdown_timeout: Duration::from_secs(30),
            currency: "USD".into(),
            reserve_timeout: Duration::from_secs(30),
            order_payment_timeout: Duration::from_secs(30 * 60),
            payment_request_resend: None,
            idempotency_ttl: Duration::from_secs(24 * 3600),
            idempotency_resume_after: Duration::from_secs(10),
            worker_interval: Duration::from_secs(5),
            outbox_poll_interval: Duration::from_secs(1),
            outbox_retention: Duration::from_secs(3600),
            notifications_max_len: 100_000,
            user_stream_max_len: 1000,
            user_stream_ttl: Duration::from_secs(7 * 86_400),
            backoff_retries: 5,
            backoff_delay: Duration::from_millis(1000),
            payment_failed_probability: 20,
            payment_duration: Duration::from_millis(1000),
            payment_concurrency: 8,
            payment_max_deliveries: 5,
            payment_reclaim_idle: Duration::from_secs(30),
            payment_consumer: None,
        }
    }
}

/// A configuration problem found at start-up.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// A variable has a value that cannot be used.
    #[error("{variable}: {message}")]
    Invalid {
        /// The environment variable's name.
        variable: String,
        /// What is wrong with it.
        message: String,
    },
    /// The configuration could not be read at all.
    #[error("configuration: {0}")]
    Load(String),
}

fn invalid(variable: &str, message: impl Into<String>) -> SettingsError {
    SettingsError::Invalid {
        variable: variable.to_ascii_uppercase(),
        message: message.into(),
    }
}

impl Settings {
    /// Reads defaults, the optional `SHOP_CONFIG_FILE` and the process environment.
    pub fn load() -> Result<Self, SettingsError> {
        let env: HashMap<String, String> = std::env::vars().collect();
        Self::from_env(env)
    }

    /// Like [`Settings::load`] but from the given variables instead of the process environment.
    pub fn from_env(env: HashMap<String, String>) -> Result<Self, SettingsError> {
        let names = field_names::<Settings>();
        let file = env.get("SHOP_CONFIG_FILE").cloned();
        // Only our own variables: the environment holds much else (PATH, HOME, ...).
        let ours: config::Map<String, String> = env
            .into_iter()
            .filter(|(k, _)| names.contains(&k.to_ascii_lowercase().as_str()))
            .collect();
        let mut builder = config::Config::builder();
        if let Some(path) = file {
            builder = builder.add_source(config::File::with_name(&path).required(true));
        }
        let config = builder
            .add_source(config::Environment::default().source(Some(ours)))
            .build()
            .map_err(|e| SettingsError::Load(e.to_string()))?;
        let settings: Settings = config.try_deserialize().map_err(config_error)?;
        settings.validate()?;
        Ok(settings)
    }

    /// Checks cross-field rules and production requirements.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let production = self.app_env == AppEnv::Production;
        check_secret(
            "jwt_secret",
            self.jwt_secret.as_ref(),
            DEV_JWT_SECRET,
            production,
        )?;
        check_secret(
            "internal_token",
            self.internal_token.as_ref(),
            DEV_INTERNAL_TOKEN,
            production,
        )?;
        if let Some(previous) = &self.internal_token_previous
            && previous.expose_secret().len() < 32
        {
            return Err(invalid(
                "internal_token_previous",
                "must be at least 32 bytes",
            ));
        }
        if let Some(previous) = &self.jwt_previous_secret {
            if previous.expose_secret().len() < 32 {
                return Err(invalid("jwt_previous_secret", "must be at least 32 bytes"));
            }
            match &self.jwt_previous_key_id {
                Some(kid) if *kid != self.jwt_key_id => {}
                _ => {
                    return Err(invalid(
                        "jwt_previous_key_id",
                        "must be set, and differ from JWT_KEY_ID, when JWT_PREVIOUS_SECRET is",
                    ));
                }
            }
        }
        if production && self.database_url.expose_secret() == DEV_DATABASE_URL {
            return Err(invalid(
                "database_url",
                "the development default (with its well-known password) is refused in production",
            ));
        }
        if self.admin_email.is_some() != self.admin_password.is_some() {
            return Err(invalid(
                "admin_password",
                "ADMIN_EMAIL and ADMIN_PASSWORD must be given together",
            ));
        }
        if let Some(password) = &self.admin_password {
            let len = password.expose_secret().len();
            if !(8..=72).contains(&len) {
                return Err(invalid("admin_password", "must be 8 to 72 bytes"));
            }
        }
        if self.ws_queue == 0 {
            return Err(invalid("ws_queue", "must be at least 1"));
        }
        if self.ws_idle_timeout < Duration::from_secs(1) {
            return Err(invalid("ws_idle_timeout", "must be at least 1 second"));
        }
        if self.jwt_expires_in < Duration::from_secs(10) {
            return Err(invalid("jwt_expires_in", "must be at least 10 seconds"));
        }
        if self.refresh_expires_in <= self.jwt_expires_in {
            return Err(invalid("refresh_expires_in", "must exceed JWT_EXPIRES_IN"));
        }
        if !(4..=31).contains(&self.bcrypt_cost) {
            return Err(invalid("bcrypt_cost", "must be between 4 and 31"));
        }
        if self.payment_failed_probability > 100 {
            return Err(invalid("payment_failed_probability", "must be 0 to 100"));
        }
        if self.currency.len() != 3 || !self.currency.chars().all(|c| c.is_ascii_uppercase()) {
            return Err(invalid(
                "currency",
                "must be a three-letter ISO 4217 code such as USD",
            ));
        }
        for (name, value) in [
            ("database_pool_size", self.database_pool_size),
            ("redis_pool_size", self.redis_pool_size),
            ("login_throttle_limit", self.login_throttle_limit),
            ("throttler_limit", self.throttler_limit),
            ("throttler_auth_limit", self.throttler_auth_limit),
            ("circuit_breaker_threshold", self.circuit_breaker_threshold),
            ("payment_max_deliveries", self.payment_max_deliveries),
        ] {
            if value == 0 {
                return Err(invalid(name, "must be at least 1"));
            }
        }
        if self.idempotency_resume_after >= self.reserve_timeout {
            return Err(invalid(
                "idempotency_resume_after",
                "must be shorter than RESERVE_TIMEOUT, so a crashed request is resumed before it is abandoned",
            ));
        }
        if self.order_payment_timeout <= self.longest_payment() {
            return Err(invalid(
                "order_payment_timeout",
                format!(
                    "must exceed the longest possible payment ({} s from BACKOFF_* and PAYMENT_DURATION)",
                    self.longest_payment().as_secs()
                ),
            ));
        }
        if self.payment_concurrency == 0 {
            return Err(invalid("payment_concurrency", "must be at least 1"));
        }
        for (name, value) in [
            ("throttler_ttl", self.throttler_ttl),
            ("throttler_auth_ttl", self.throttler_auth_ttl),
            ("user_service_timeout", self.user_service_timeout),
            ("catalog_service_timeout", self.catalog_service_timeout),
            ("order_service_timeout", self.order_service_timeout),
            ("payment_service_timeout", self.payment_service_timeout),
            ("product_cache_sync", self.product_cache_sync),
        ] {
            if value < Duration::from_millis(1) {
                return Err(invalid(name, "must be at least 1 ms"));
            }
        }
        if self.http_max_in_flight == 0 {
            return Err(invalid("http_max_in_flight", "must be at least 1"));
        }
        if self.max_body_bytes == 0 {
            return Err(invalid("max_body_bytes", "must be at least 1"));
        }
        for (name, url) in [
            ("user_service_url", &self.user_service_url),
            ("catalog_service_url", &self.catalog_service_url),
            ("order_service_url", &self.order_service_url),
            ("payment_service_url", &self.payment_service_url),
        ] {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(invalid(name, "must be an http:// or https:// URL"));
            }
        }
        self.trusted_proxies()?;
        self.metrics_addr()?;
        for origin in self.cors_origins() {
            let rest = origin
                .strip_prefix("https://")
                .or_else(|| origin.strip_prefix("http://"));
            if !rest.is_some_and(|host| !host.is_empty() && !host.contains('/')) {
                return Err(invalid(
                    "cors_origins",
                    format!("`{origin}` is not an origin such as https://shop.example.com"),
                ));
            }
        }
        Ok(())
    }

    /// The signing secret (validated at load; the development default otherwise).
    pub fn jwt_secret(&self) -> &str {
        self.jwt_secret
            .as_ref()
            .map_or(DEV_JWT_SECRET, |s| s.expose_secret())
    }

    /// The current internal credential.
    pub fn internal_token(&self) -> &str {
        self.internal_token
            .as_ref()
            .map_or(DEV_INTERNAL_TOKEN, |s| s.expose_secret())
    }

    /// The database URL for a service: its own override, else `DATABASE_URL`.
    pub fn database_url(&self, service: Service) -> &str {
        let own = match service {
            Service::User => &self.user_database_url,
            Service::Catalog => &self.catalog_database_url,
            Service::Order => &self.order_database_url,
            Service::Payment => &self.payment_database_url,
        };
        own.as_ref().unwrap_or(&self.database_url).expose_secret()
    }

    /// The Redis URL: `REDIS_URL`, else one built from `REDIS_HOST`, `REDIS_PORT`, `REDIS_PASSWORD`.
    pub fn redis_url(&self) -> String {
        if let Some(url) = &self.redis_url {
            return url.expose_secret().to_owned();
        }
        match &self.redis_password {
            Some(password) => format!(
                "redis://:{}@{}:{}",
                password.expose_secret(),
                self.redis_host,
                self.redis_port
            ),
            None => format!("redis://{}:{}", self.redis_host, self.redis_port),
        }
    }

    /// The Redis URL of the catalog cache: `CACHE_REDIS_URL`, else the main Redis.
    pub fn cache_redis_url(&self) -> String {
        self.cache_redis_url
            .as_ref()
            .map_or_else(|| self.redis_url(), |url| url.expose_secret().to_owned())
    }

    /// The administrator to create at start-up, if any: `ADMIN_EMAIL`/`ADMIN_PASSWORD`, else the
    /// development default.
    pub fn bootstrap_admin(&self) -> Option<(String, String)> {
        match (&self.admin_email, &self.admin_password) {
            (Some(email), Some(password)) => {
                Some((email.clone(), password.expose_secret().to_owned()))
            }
            _ if self.app_env == AppEnv::Development => {
                Some((DEV_ADMIN_EMAIL.into(), DEV_ADMIN_PASSWORD.into()))
            }
            _ => None,
        }
    }

    /// Networks whose `X-Forwarded-For` is believed.
    pub fn trusted_proxies(&self) -> Result<Vec<IpNet>, SettingsError> {
        split_list(&self.trusted_proxies)
            .map(|item| {
                item.parse::<IpNet>()
                    .or_else(|_| item.parse::<std::net::IpAddr>().map(IpNet::from))
                    .map_err(|_| {
                        invalid("trusted_proxies", format!("`{item}` is not an IP or CIDR"))
                    })
            })
            .collect()
    }

    /// Where `/metrics` is served; `None` when `METRICS_ADDR` is empty (off).
    pub fn metrics_addr(&self) -> Result<Option<SocketAddr>, SettingsError> {
        let text = self.metrics_addr.trim();
        if text.is_empty() {
            return Ok(None);
        }
        text.parse().map(Some).map_err(|_| {
            invalid(
                "metrics_addr",
                format!("`{text}` is not host:port (or empty to turn metrics off)"),
            )
        })
    }

    /// Origins allowed for browsers and WebSockets.
    pub fn cors_origins(&self) -> Vec<String> {
        split_list(&self.cors_origins).map(str::to_owned).collect()
    }

    /// The longest a payment can take: every attempt plus every backoff at its maximum jitter.
    pub fn longest_payment(&self) -> Duration {
        let attempts = self.backoff_retries.saturating_add(1);
        let mut total = self.payment_duration.saturating_mul(attempts);
        for retry in 0..self.backoff_retries {
            let delay = self.backoff_delay.saturating_mul(1_u32 << retry.min(20));
            total = total.saturating_add(delay.mul_f64(1.5));
        }
        total
    }

    /// When a pending order's payment request is sent again if the payment service has not
    /// reported: `PAYMENT_REQUEST_RESEND`, else twice the longest possible payment (at least a
    /// minute).
    pub fn payment_request_resend(&self) -> Duration {
        self.payment_request_resend.unwrap_or_else(|| {
            self.longest_payment()
                .saturating_mul(2)
                .max(Duration::from_secs(60))
        })
    }

    /// Worker threads per HTTP server (`HTTP_WORKERS`, 0 = one per core).
    pub fn http_workers(&self) -> usize {
        if self.http_workers > 0 {
            self.http_workers
        } else {
            std::thread::available_parallelism().map_or(2, usize::from)
        }
    }
}

fn split_list(text: &str) -> impl Iterator<Item = &str> {
    text.split(',').map(str::trim).filter(|s| !s.is_empty())
}

fn check_secret(
    name: &str,
    value: Option<&SecretString>,
    dev_default: &str,
    production: bool,
) -> Result<(), SettingsError> {
    match value {
        None if production => Err(invalid(name, "must be set when APP_ENV=production")),
        None => Ok(()),
        Some(secret) => {
            let secret = secret.expose_secret();
            if secret.len() < 32 {
                Err(invalid(name, "must be at least 32 bytes"))
            } else if production && secret == dev_default {
                Err(invalid(
                    name,
                    "the development default is refused in production",
                ))
            } else {
                Ok(())
            }
        }
    }
}

/// Names the variable in a deserialisation error.
fn config_error(error: config::ConfigError) -> SettingsError {
    match &error {
        config::ConfigError::Type {
            key: Some(key),
            unexpected,
            expected,
            ..
        } => invalid(key, format!("expected {expected}, found {unexpected}")),
        config::ConfigError::At {
            key: Some(key),
            error: inner,
            ..
        } => invalid(key, inner.to_string()),
        _ => SettingsError::Load(error.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(pairs: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        Settings::from_env(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )
    }

    fn variable_of(result: Result<Settings, SettingsError>) -> String {
        match result {
            Err(SettingsError::Invalid { variable, .. }) => variable,
            other => panic!("expected an invalid variable, got {other:?}"),
        }
    }

    #[test]
    fn defaults_work_in_development() {
        let settings = load(&[("PATH", "/usr/bin")]).expect("defaults load");
        assert_eq!(settings.app_env, AppEnv::Development);
        assert_eq!(settings.database_url(Service::Order), DEV_DATABASE_URL);
        assert_eq!(settings.redis_url(), "redis://127.0.0.1:6379");
        assert_eq!(settings.jwt_expires_in, Duration::from_secs(900));
        assert_eq!(settings.throttler_ttl, Duration::from_secs(60));
        assert_eq!(
            settings.bootstrap_admin(),
            Some((DEV_ADMIN_EMAIL.into(), DEV_ADMIN_PASSWORD.into()))
        );
    }

    #[test]
    fn seed_names_and_units_are_honoured() {
        let settings = load(&[
            ("JWT_EXPIRES_IN", "1d"),
            ("THROTTLER_TTL", "1000"),
            ("BACKOFF_DELAY", "300"),
            ("PAYMENT_FAILED_PROBABILITY", "95"),
            ("REDIS_HOST", "cache"),
            ("REDIS_PORT", "6380"),
            ("REDIS_PASSWORD", "pw"),
            ("CATALOG_DATABASE_URL", "postgres://catalog@db/shop"),
        ])
        .expect("loads");
        assert_eq!(settings.jwt_expires_in, Duration::from_secs(86_400));
        assert_eq!(settings.throttler_ttl, Duration::from_secs(1));
        assert_eq!(settings.backoff_delay, Duration::from_millis(300));
        assert_eq!(settings.payment_failed_probability, 95);
        assert_eq!(settings.redis_url(), "redis://:pw@cache:6380");
        assert_eq!(
            settings.database_url(Service::Catalog),
            "postgres://catalog@db/shop"
        );
        assert_eq!(settings.database_url(Service::User), DEV_DATABASE_URL);
    }

    #[test]
    fn a_bad_value_names_its_variable() {
        assert_eq!(
            variable_of(load(&[("THROTTLER_LIMIT", "lots")])),
            "THROTTLER_LIMIT"
        );
        assert_eq!(
            variable_of(load(&[("JWT_EXPIRES_IN", "soon")])),
            "JWT_EXPIRES_IN"
        );
        assert_eq!(variable_of(load(&[("APP_ENV", "staging")])), "APP_ENV");
        assert_eq!(
            variable_of(load(&[("GATEWAY_ADDR", "nowhere")])),
            "GATEWAY_ADDR"
        );
        assert_eq!(
            variable_of(load(&[("PAYMENT_FAILED_PROBABILITY", "101")])),
            "PAYMENT_FAILED_PROBABILITY"
        );
        assert_eq!(variable_of(load(&[("JWT_SECRET", "short")])), "JWT_SECRET");
        assert_eq!(variable_of(load(&[("CURRENCY", "usd")])), "CURRENCY");
        assert_eq!(
            variable_of(load(&[("TRUSTED_PROXIES", "10.0.0.0/8,banana")])),
            "TRUSTED_PROXIES"
        );
    }

    #[test]
    fn production_refuses_default_and_missing_secrets() {
        let strong = "a-real-secret-of-at-least-32-bytes-xyz";
        let base = [
            ("APP_ENV", "production"),
            ("DATABASE_URL", "postgres://shop:pw@db/shop"),
            ("JWT_SECRET", strong),
            ("INTERNAL_TOKEN", strong),
        ];
        let settings = load(&base).expect("a complete production configuration loads");
        assert_eq!(settings.bootstrap_admin(), None);

        let without = |name: &str| -> Vec<(&str, &str)> {
            base.iter().copied().filter(|(k, _)| *k != name).collect()
        };
        assert_eq!(variable_of(load(&without("JWT_SECRET"))), "JWT_SECRET");
        assert_eq!(
            variable_of(load(&without("INTERNAL_TOKEN"))),
            "INTERNAL_TOKEN"
        );
        assert_eq!(variable_of(load(&without("DATABASE_URL"))), "DATABASE_URL");

        let mut with_dev_secret = without("JWT_SECRET");
        with_dev_secret.push(("JWT_SECRET", DEV_JWT_SECRET));
        assert_eq!(variable_of(load(&with_dev_secret)), "JWT_SECRET");

        let mut admin_without_password = base.to_vec();
        admin_without_password.push(("ADMIN_EMAIL", "ops@example.com"));
        assert_eq!(variable_of(load(&admin_without_password)), "ADMIN_PASSWORD");
    }

    #[test]
    fn the_variable_table_lists_every_setting_once() {
        let mut documented: Vec<&str> = VARIABLES.iter().map(|v| v.name).collect();
        documented.sort_unstable();
        let before = documented.len();
        documented.dedup();
        assert_eq!(before, documented.len(), "a variable is documented twice");
        let mut fields: Vec<String> = field_names::<Settings>()
            .iter()
            .map(|f| f.to_ascii_uppercase())
            .collect();
        fields.push("SHOP_CONFIG_FILE".into());
        fields.sort_unstable();
        assert_eq!(documented, fields);
    }
}
