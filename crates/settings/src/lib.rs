//! Layered configuration shared by every Shop binary.
//!
//! Built-in defaults, then an optional file (`SHOP_CONFIG_FILE`, TOML), then the process
//! environment, using the variable names of the original requirements (`DATABASE_URL`,
//! `JWT_SECRET`, `THROTTLER_TTL`, ...). A value that does not parse or validate is a start-up
//! error naming the variable. With `APP_ENV=production` default or missing secrets are refused.

mod duration;
mod macros;
mod table;
mod value;

use std::{collections::HashMap, net::SocketAddr, time::Duration};

use ipnet::IpNet;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

pub use duration::parse as parse_duration;
pub use macros::Variable;
pub use table::{Settings, markdown_table, variables};

/// The development defaults for the secrets; refused when `APP_ENV=production`.
pub const DEV_JWT_SECRET: &str = "dev-only-jwt-secret-0123456789abcdefghijkl";
/// See [`DEV_JWT_SECRET`].
pub const DEV_INTERNAL_TOKEN: &str = "dev-only-internal-token-0123456789abcdefgh";
/// See [`DEV_JWT_SECRET`].
pub const DEV_MFA_ENCRYPTION_KEY: &str = "dev-only-mfa-encryption-key-0123456789abc";
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

/// Where the user service's mail goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MailTransport {
    /// Each message as an `.eml` file under `MAIL_DIR` (development).
    File,
    /// To the SMTP server at `SMTP_URL`.
    Smtp,
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

pub(crate) fn invalid(variable: &str, message: impl Into<String>) -> SettingsError {
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
        let settings = Self::read(env)?;
        settings.validate()?;
        Ok(settings)
    }

    /// The layers read and merged, each value parsed, nothing validated yet.
    fn read(env: HashMap<String, String>) -> Result<Self, SettingsError> {
        let names = table::FIELDS;
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
        let layered: table::Layered = config.try_deserialize().map_err(config_error)?;
        Ok(layered.resolve())
    }

    /// Checks each setting's own rule (defined with it, in `table.rs`), then the rules across
    /// settings and the production requirements.
    pub fn validate(&self) -> Result<(), SettingsError> {
        self.check_each()?;
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
        check_secret(
            "mfa_encryption_key",
            self.mfa_encryption_key.as_ref(),
            DEV_MFA_ENCRYPTION_KEY,
            production,
        )?;
        if self.jwt_previous_secret.is_some()
            && self
                .jwt_previous_key_id
                .as_ref()
                .is_none_or(|kid| *kid == self.jwt_key_id)
        {
            return Err(invalid(
                "jwt_previous_key_id",
                "must be set, and differ from JWT_KEY_ID, when JWT_PREVIOUS_SECRET is",
            ));
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
        if self.refresh_expires_in <= self.jwt_expires_in {
            return Err(invalid("refresh_expires_in", "must exceed JWT_EXPIRES_IN"));
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
        if self.mail_transport == MailTransport::Smtp && self.smtp_url.is_none() {
            return Err(invalid("smtp_url", "must be set when MAIL_TRANSPORT=smtp"));
        }
        if production && self.mail_transport != MailTransport::Smtp {
            return Err(invalid(
                "mail_transport",
                "production sends mail over SMTP: set MAIL_TRANSPORT=smtp and SMTP_URL",
            ));
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

    /// The key the second factor's secrets are encrypted with (the development default
    /// outside production).
    pub fn mfa_encryption_key(&self) -> &str {
        self.mfa_encryption_key
            .as_ref()
            .map_or(DEV_MFA_ENCRYPTION_KEY, |s| s.expose_secret())
    }

    /// Whether admin routes need a token signed in with a second factor: ADMIN_REQUIRE_MFA,
    /// by default true in production and false elsewhere.
    pub fn admin_require_mfa(&self) -> bool {
        self.admin_require_mfa
            .unwrap_or(self.app_env == AppEnv::Production)
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

    /// The Redis URL: `REDIS_URL`, else one built from `REDIS_HOST`, `REDIS_PORT` and
    /// `REDIS_PASSWORD`.
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

/// A secret may be left to its development default only outside production.
fn check_secret(
    name: &str,
    value: Option<&SecretString>,
    dev_default: &str,
    production: bool,
) -> Result<(), SettingsError> {
    match value {
        None if production => Err(invalid(name, "must be set when APP_ENV=production")),
        Some(secret) if production && secret.expose_secret() == dev_default => Err(invalid(
            name,
            "the development default is refused in production",
        )),
        _ => Ok(()),
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
            ("MFA_ENCRYPTION_KEY", strong),
            ("MAIL_TRANSPORT", "smtp"),
            ("SMTP_URL", "smtp://mail-relay:25"),
        ];
        let settings = load(&base).expect("a complete production configuration loads");
        assert!(
            settings.admin_require_mfa(),
            "production requires a second factor for admins"
        );
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
        assert_eq!(
            variable_of(load(&without("MFA_ENCRYPTION_KEY"))),
            "MFA_ENCRYPTION_KEY"
        );
        assert_eq!(variable_of(load(&without("SMTP_URL"))), "SMTP_URL");
        assert_eq!(
            variable_of(load(&without("MAIL_TRANSPORT"))),
            "MAIL_TRANSPORT"
        );

        let mut with_dev_secret = without("JWT_SECRET");
        with_dev_secret.push(("JWT_SECRET", DEV_JWT_SECRET));
        assert_eq!(variable_of(load(&with_dev_secret)), "JWT_SECRET");

        let mut admin_without_password = base.to_vec();
        admin_without_password.push(("ADMIN_EMAIL", "ops@example.com"));
        assert_eq!(variable_of(load(&admin_without_password)), "ADMIN_PASSWORD");
    }

    /// Loads each documented variable whose default is a value, set to that documented text.
    fn documented_defaults() -> HashMap<String, String> {
        variables()
            .into_iter()
            .filter(|v| !v.default.starts_with('('))
            .map(|v| (v.name, v.default))
            .collect()
    }

    #[test]
    fn every_documented_default_reads_back_as_the_default() {
        let documented = documented_defaults();
        assert!(
            documented.len() > 60,
            "most defaults are values: {documented:?}"
        );
        let loaded = Settings::from_env(documented).expect("the documented defaults load");
        assert_eq!(loaded.env_texts(), Settings::default().env_texts());
    }

    #[test]
    fn a_bare_duration_is_read_in_its_documented_unit() {
        let mut durations = 0;
        for variable in variables() {
            let Some(bare) = variable
                .unit
                .split_once("duration (bare number: ")
                .and_then(|(_, rest)| rest.split_once(')'))
                .map(|(unit, _)| unit.to_owned())
            else {
                continue;
            };
            durations += 1;
            let name = variable.name;
            let env = HashMap::from([(name.clone(), "4000".to_owned())]);
            // Read only: 4000 of a unit may break a rule across settings.
            let loaded = Settings::read(env).unwrap_or_else(|e| panic!("{name}=4000 reads: {e}"));
            let field = name.to_ascii_lowercase();
            let text = loaded.env_texts().into_iter().find(|(f, _)| *f == field);
            let expected =
                parse_duration(&format!("4000{bare}"), Duration::ZERO).map(duration::render);
            assert_eq!(
                text.map(|(_, t)| t),
                expected.ok(),
                "{name} reads 4000 in {bare}"
            );
        }
        assert!(durations > 30, "the durations are documented as such");
    }

    #[test]
    fn a_documented_rule_is_the_one_enforced() {
        for (name, bad, rule) in [
            ("BCRYPT_COST", "3", "4 to 31"),
            ("WS_QUEUE", "0", "at least 1"),
            ("JWT_EXPIRES_IN", "9s", "at least 10s"),
            ("THROTTLER_TTL", "0", "at least 1ms"),
            ("ADMIN_PASSWORD", "short", "8 to 72 bytes"),
            ("INTERNAL_TOKEN_PREVIOUS", "short", "at least 32 bytes"),
            (
                "ORDER_SERVICE_URL",
                "order:8083",
                "an http:// or https:// URL",
            ),
        ] {
            let documented = variables().into_iter().find(|v| v.name == name);
            assert!(
                documented.is_some_and(|v| v.unit.ends_with(rule)),
                "README shows {name}'s rule `{rule}`"
            );
            let mut env = vec![(name, bad)];
            if name == "ADMIN_PASSWORD" {
                env.push(("ADMIN_EMAIL", "ops@example.com"));
            }
            match load(&env) {
                Err(SettingsError::Invalid { variable, message }) => {
                    assert_eq!(
                        (variable.as_str(), message),
                        (name, format!("must be {rule}"))
                    );
                }
                other => panic!("{name}={bad} is refused, got {other:?}"),
            }
        }
    }
}
