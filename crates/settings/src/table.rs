//! The one definition of every setting: type, default, unit, rule, readers and meaning.
//! [`crate::Settings`], its defaults, its per-setting checks and README's table all come from
//! here (see the `settings!` macro).

use std::{
    net::{Ipv4Addr, SocketAddr},
    time::Duration,
};

use secrecy::SecretString;

use crate::{
    AppEnv, DEV_DATABASE_URL, LogFormat, MailTransport, Variable,
    macros::settings,
    value::{at_least, between, bytes_at_least, bytes_between, currency_code, http_url, optional},
};

const ALL: &str = "all";
const SERVICES: &str = "user, catalog, order, payment";

const fn millis(n: u64) -> Duration {
    Duration::from_millis(n)
}

const fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

const fn mins(n: u64) -> Duration {
    Duration::from_secs(n * 60)
}

const fn hours(n: u64) -> Duration {
    Duration::from_secs(n * 3600)
}

const fn days(n: u64) -> Duration {
    Duration::from_secs(n * 86_400)
}

fn local(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

fn any(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::UNSPECIFIED, port))
}

settings! {
    /// production refuses default or missing secrets; images default to production
    app_env: AppEnv = AppEnv::Development, unit "development, test, production", read by ALL;
    /// log line format
    log_format: LogFormat = LogFormat::Pretty, unit "pretty, json", read by ALL;
    /// log filter, e.g. `info,user_service=debug`
    rust_log: String = "info".into(), unit "filter", read by ALL;
    /// Postgres for every service unless overridden below
    database_url: SecretString = DEV_DATABASE_URL.into(), unit "URL", read by SERVICES;
    /// the user service's own database
    user_database_url: Option<SecretString> = None,
        unit "URL", shown "(DATABASE_URL)", read by "user";
    /// the catalog service's own database
    catalog_database_url: Option<SecretString> = None,
        unit "URL", shown "(DATABASE_URL)", read by "catalog";
    /// the order service's own database
    order_database_url: Option<SecretString> = None,
        unit "URL", shown "(DATABASE_URL)", read by "order";
    /// the payment service's own database
    payment_database_url: Option<SecretString> = None,
        unit "URL", shown "(DATABASE_URL)", read by "payment";
    /// Postgres pool size per service
    database_pool_size: u32 = 10, unit "connections", check at_least(1), read by SERVICES;
    /// wait for a pooled connection before answering 503
    database_acquire_timeout: Duration = secs(5), bare Millis, read by SERVICES;
    /// apply migrations at start (images: false, use the `migrate` subcommand)
    run_migrations_on_start: bool = true, unit "bool", read by SERVICES;
    /// Redis; when unset it is built from the three below
    redis_url: Option<SecretString> = None, unit "URL",
        shown "(redis://127.0.0.1:6379, from the three below)", read by ALL;
    /// Redis host (when REDIS_URL is unset)
    redis_host: String = "127.0.0.1".into(), unit "host", read by ALL;
    /// Redis port (when REDIS_URL is unset)
    redis_port: u16 = 6379, unit "port", read by ALL;
    /// Redis password (when REDIS_URL is unset)
    redis_password: Option<SecretString> = None, unit "secret", read by ALL;
    /// prefix of every Redis key and stream
    redis_key_prefix: String = "shop:".into(), unit "string", read by ALL;
    /// Redis pool size per binary
    redis_pool_size: u32 = 16, unit "connections", check at_least(1), read by ALL;
    /// Redis for the product cache, if it should be another instance (it may evict)
    cache_redis_url: Option<SecretString> = None,
        unit "URL", shown "(REDIS_URL)", read by "catalog";
    /// longest another catalog instance's write stays unseen by this one's in-process cache
    product_cache_sync: Duration = millis(100),
        bare Millis, check at_least(millis(1)), read by "catalog";
    /// lifetime of a cached product (writes replace it at once)
    product_cache_ttl: Duration = mins(5), bare Secs, read by "catalog";
    /// lifetime of a cached list page; the most that stock shown in listings can lag
    list_cache_ttl: Duration = secs(30), bare Secs, read by "catalog";
    /// wait for a Redis connection before falling back
    redis_acquire_timeout: Duration = millis(500), bare Millis, read by ALL;
    /// HS256 signing key of access tokens
    jwt_secret: Option<SecretString> = None,
        unit "secret", shown "(development default)", check optional(bytes_at_least(32)),
        read by "user, gateway";
    /// `kid` header of tokens signed with JWT_SECRET
    jwt_key_id: String = "k1".into(), unit "string", read by "user, gateway";
    /// still-accepted key during rotation
    jwt_previous_secret: Option<SecretString> = None,
        unit "secret", check optional(bytes_at_least(32)), read by "gateway";
    /// `kid` of JWT_PREVIOUS_SECRET
    jwt_previous_key_id: Option<String> = None, unit "string", read by "gateway";
    /// access token lifetime
    jwt_expires_in: Duration = mins(15),
        bare Secs, check at_least(secs(10)), read by "user, gateway";
    /// session (refresh token) lifetime
    refresh_expires_in: Duration = days(30), bare Secs, read by "user";
    /// `iss` claim
    jwt_issuer: String = "shop".into(), unit "string", read by "user, gateway";
    /// `aud` claim
    jwt_audience: String = "shop-api".into(), unit "string", read by "user, gateway";
    /// credential on every call to a service
    internal_token: Option<SecretString> = None,
        unit "secret", shown "(development default)", check optional(bytes_at_least(32)),
        read by ALL;
    /// also accepted during rotation
    internal_token_previous: Option<SecretString> = None,
        unit "secret", check optional(bytes_at_least(32)), read by SERVICES;
    /// password hashing cost
    bcrypt_cost: u32 = 12, unit "log2 rounds", check between(4, 31), read by "user";
    /// hash jobs allowed to wait before 503 + Retry-After
    bcrypt_queue: usize = 32, unit "requests", read by "user";
    /// login attempts per (client IP, email) per window (a success clears the count); also
    /// password-change attempts per user
    login_throttle_limit: u32 = 5, unit "attempts", check at_least(1), read by "user";
    /// window of both attempt limits
    login_throttle_window: Duration = mins(15), bare Secs, read by "user";
    /// `file` writes each message under MAIL_DIR; `smtp` sends it to SMTP_URL (production
    /// refuses `file`)
    mail_transport: MailTransport = MailTransport::File, unit "file, smtp", read by "user";
    /// SMTP server, e.g. `smtp://user:pass@mail:587?tls=required` or `smtp://127.0.0.1:1025`
    smtp_url: Option<SecretString> = None, unit "URL", shown "(none)", read by "user";
    /// sender of every message
    mail_from: String = "Shop <no-reply@shop.local>".into(), unit "mailbox", read by "user";
    /// folder of the `.eml` files when MAIL_TRANSPORT=file
    mail_dir: String = "target/mail".into(), unit "path", read by "user";
    /// the storefront's address, the base of the links in mails
    public_url: String = "http://localhost:8080".into(), check http_url(), read by "user";
    /// lifetime of a mailed password-reset token
    password_reset_ttl: Duration = mins(30), bare Secs, check at_least(secs(60)), read by "user";
    /// lifetime of a mailed email-verification token
    email_verification_ttl: Duration = hours(24), bare Secs, check at_least(secs(60)), read by "user";
    /// password-reset and verification mails per email per window
    account_mail_limit: u32 = 3, unit "mails", check at_least(1), read by "user";
    /// password-reset requests per client IP per window
    account_mail_ip_limit: u32 = 20, unit "requests", check at_least(1), read by "user";
    /// window of both account-mail limits
    account_mail_window: Duration = hours(1), bare Secs, read by "user";
    /// encrypts the second factor's secrets at rest (at least 32 bytes; changing it disables
    /// every enrolled second factor)
    mfa_encryption_key: Option<SecretString> = None,
        unit "secret", shown "(development default)", check optional(bytes_at_least(32)),
        read by "user";
    /// admin routes refuse an admin token signed in without a second factor (403 mfa-required)
    admin_require_mfa: Option<bool> = None,
        unit "bool", shown "(true in production, else false)", read by "gateway";
    /// placing an order needs a verified email (403 email-unverified)
    require_verified_email: bool = false, unit "bool", read by "order";
    /// how long revocation answers are served from memory while Redis is away
    denylist_grace: Duration = secs(60), bare Secs, read by "gateway";
    /// how often open sockets check their session (closed with 4401 once revoked)
    ws_check_interval: Duration = secs(15), bare Secs, read by "gateway";
    /// a socket that sends nothing (not even a pong to the pings, sent every third of this) is
    /// closed with 1001
    ws_idle_timeout: Duration = secs(60), bare Secs, check at_least(secs(1)), read by "gateway";
    /// events waiting for one socket; a socket that falls further behind is closed with 4408
    ws_queue: usize = 256, unit "events", check at_least(1), read by "gateway";
    /// first administrator, created idempotently
    admin_email: Option<String> = None,
        unit "email", shown "(none; admin@shop.local in development)", read by "user";
    /// its password
    admin_password: Option<SecretString> = None,
        unit "secret", shown "(none; see README in development)",
        check optional(bytes_between(8, 72)), read by "user";
    /// rate-limit period (a sliding GCRA window)
    throttler_ttl: Duration = secs(60), bare Millis, check at_least(millis(1)), read by "gateway";
    /// requests per period, per IP anonymous, per user authenticated
    throttler_limit: u32 = 600, unit "requests", check at_least(1), read by "gateway";
    /// rate limiting on or off
    throttler_enabled: bool = true, unit "bool", read by "gateway";
    /// period of the tighter per-IP limit on /login, /register, /ws/ticket, the
    /// password-reset and email-verification routes and POST /guest-carts
    throttler_auth_ttl: Duration = secs(60),
        bare Millis, check at_least(millis(1)), read by "gateway";
    /// requests per period to each of those routes, per IP
    throttler_auth_limit: u32 = 10, unit "requests", check at_least(1), read by "gateway";
    /// other browser origins allowed to call the API and open sockets (same-origin pages always
    /// may)
    cors_origins: String = String::new(),
        unit "comma list of origins", shown "(none)", read by "gateway";
    /// peers whose X-Forwarded-For is believed
    trusted_proxies: String = String::new(),
        unit "comma list of IPs/CIDRs", shown "(none)", read by "gateway";
    /// largest accepted request body (413 above)
    max_body_bytes: usize = 1024 * 1024, unit "bytes", check at_least(1), read by ALL;
    /// OTLP/HTTP collector for traces (e.g. http://otel-collector:4318); unset: no export
    otel_exporter_otlp_endpoint: Option<String> = None, unit "URL", read by ALL;
    /// Prometheus `/metrics` listener, separate from the service port; never published
    metrics_addr: String = "127.0.0.1:9464".into(), unit "host:port (empty = off)", read by ALL;
    /// public listener
    gateway_addr: SocketAddr = any(8080),
        unit "host:port", read by "gateway";
    /// listener
    user_addr: SocketAddr = local(8081), unit "host:port", read by "user";
    /// listener
    catalog_addr: SocketAddr = local(8082), unit "host:port", read by "catalog";
    /// listener
    order_addr: SocketAddr = local(8083), unit "host:port", read by "order";
    /// listener
    payment_addr: SocketAddr = local(8084), unit "host:port", read by "payment";
    /// where the user service answers
    user_service_url: String = "http://127.0.0.1:8081".into(),
        check http_url(), read by "gateway";
    /// where the catalog service answers
    catalog_service_url: String = "http://127.0.0.1:8082".into(),
        check http_url(), read by "gateway, order";
    /// where the order service answers
    order_service_url: String = "http://127.0.0.1:8083".into(),
        check http_url(), read by "gateway, payment, user";
    /// where the payment service answers
    payment_service_url: String = "http://127.0.0.1:8084".into(),
        check http_url(), read by "gateway";
    /// HTTP worker threads per server
    http_workers: usize = 0, unit "threads (0 = one per core)", read by ALL;
    /// connect timeout of service-to-service calls
    http_connect_timeout: Duration = secs(1), bare Millis, read by "gateway, order, payment, user";
    /// whole-call timeout of calls to the user service (504 at the gateway)
    user_service_timeout: Duration = secs(5),
        bare Millis, check at_least(millis(1)), read by "gateway";
    /// whole-call timeout of calls to the catalog service
    catalog_service_timeout: Duration = secs(3),
        bare Millis, check at_least(millis(1)), read by "gateway, order";
    /// whole-call timeout of calls to the order service (placing an order calls the catalog)
    order_service_timeout: Duration = secs(10),
        bare Millis, check at_least(millis(1)), read by "gateway, payment, user";
    /// whole-call timeout of calls to the payment service
    payment_service_timeout: Duration = secs(3),
        bare Millis, check at_least(millis(1)), read by "gateway";
    /// retries of idempotent calls, after connection failures only
    http_retries: u32 = 2, unit "retries", read by "gateway, order, payment, user";
    /// concurrent calls per upstream; beyond it, 503 + Retry-After at once
    http_max_in_flight: usize = 512,
        unit "requests", check at_least(1), read by "gateway, order, payment, user";
    /// idle keep-alive connections kept per upstream
    http_pool_max_idle: usize = 64, unit "connections", read by "gateway, order, payment, user";
    /// consecutive failures that open a circuit
    circuit_breaker_threshold: u32 = 5,
        unit "failures", check at_least(1), read by "gateway, order, payment, user";
    /// how long an open circuit fails fast
    circuit_breaker_cooldown: Duration = secs(5), bare Millis, read by "gateway, order, payment, user";
    /// grace period for in-flight requests on SIGTERM
    shutdown_timeout: Duration = secs(30), bare Secs, read by ALL;
    /// currency of every price
    currency: String = "USD".into(), check currency_code(), read by "order, payment";
    /// orders still reserving after this are failed and their stock released
    reserve_timeout: Duration = secs(30), bare Secs, read by "order";
    /// pending orders unpaid after this fail (payment_timeout); must exceed the longest payment
    order_payment_timeout: Duration = mins(30), bare Secs, read by "order";
    /// resend the payment request of a pending order the payment service has not reported on
    payment_request_resend: Option<Duration> = None,
        bare Secs, shown "(twice the longest payment, at least 60s)", read by "order";
    /// how long Idempotency-Key claims are kept
    idempotency_ttl: Duration = hours(24), bare Secs, read by "order";
    /// a claim left unfinished this long (a crashed request) is resumed by a repeat
    idempotency_resume_after: Duration = secs(10), bare Secs, read by "order";
    /// how often the recovery, timeout and resend sweeps run
    worker_interval: Duration = secs(5), bare Secs, read by "order";
    /// outbox polling fallback (a commit wakes its own relay at once, other instances through
    /// Redis)
    outbox_poll_interval: Duration = secs(1), bare Millis, read by "order, payment";
    /// sent outbox rows are deleted after this
    outbox_retention: Duration = hours(1), bare Secs, read by "order, payment";
    /// approximate cap of the notifications stream
    notifications_max_len: u64 = 100_000, unit "entries", read by "order, payment";
    /// approximate cap of each user's notification stream
    user_stream_max_len: u64 = 1000, unit "entries", read by "order, payment";
    /// a user's stream expires this long after its last event
    user_stream_ttl: Duration = days(7), bare Secs, read by "order, payment";
    /// payment retries after the first attempt
    backoff_retries: u32 = 5, unit "retries", read by "payment, order";
    /// first retry delay, doubled each time
    backoff_delay: Duration = secs(1), bare Millis, read by "payment, order";
    /// chance a simulated attempt fails
    payment_failed_probability: u8 = 20, unit "percent", check between(0, 100), read by "payment";
    /// duration of a simulated attempt
    payment_duration: Duration = secs(1), bare Millis, read by "payment, order";
    /// simulated payment attempts running at once per instance
    payment_concurrency: usize = 8, unit "attempts", check at_least(1), read by "payment";
    /// a stream entry delivered this often without being handled goes to payments.dead
    payment_max_deliveries: u32 = 5, unit "deliveries", check at_least(1), read by "payment";
    /// entries pending this long on another consumer are reclaimed (XAUTOCLAIM)
    payment_reclaim_idle: Duration = secs(30), bare Secs, read by "payment";
    /// consumer name in the payments.requests group
    payment_consumer: Option<String> = None,
        unit "string", shown "(hostname + random suffix)", read by "payment";
}

/// Every variable, in the order README shows them: the settings and `SHOP_CONFIG_FILE`.
pub fn variables() -> Vec<Variable> {
    let mut all = Settings::defined();
    let config_file = Variable {
        name: "SHOP_CONFIG_FILE".into(),
        default: "(none)".into(),
        unit: "path".into(),
        binaries: ALL,
        description: "optional TOML file read before the environment".into(),
    };
    all.insert(1, config_file);
    all
}

/// The Markdown table README shows (a test checks README contains exactly this).
pub fn markdown_table() -> String {
    let mut out =
        String::from("| Variable | Default | Unit | Read by | Meaning |\n|---|---|---|---|---|\n");
    for v in variables() {
        out.push_str(&format!(
            "| `{}` | `{}` | {} | {} | {} |\n",
            v.name, v.default, v.unit, v.binaries, v.description
        ));
    }
    out
}
