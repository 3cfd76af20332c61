//! The documented configuration variables; README's table is generated from this list and a
//! test keeps both in step with [`crate::Settings`].

/// One documented environment variable.
#[derive(Debug, Clone, Copy)]
pub struct Variable {
    /// Environment variable name.
    pub name: &'static str,
    /// Default value as written in the environment.
    pub default: &'static str,
    /// Unit or format of the value.
    pub unit: &'static str,
    /// The binaries that read it.
    pub binaries: &'static str,
    /// What it does.
    pub description: &'static str,
}

const fn var(
    name: &'static str,
    default: &'static str,
    unit: &'static str,
    binaries: &'static str,
    description: &'static str,
) -> Variable {
    Variable {
        name,
        default,
        unit,
        binaries,
        description,
    }
}

const ALL: &str = "all";
const SERVICES: &str = "user, catalog, order, payment";

/// Every variable, in the order README shows them.
pub const VARIABLES: &[Variable] = &[
    var(
        "APP_ENV",
        "development",
        "development, test, production",
        ALL,
        "production refuses default or missing secrets; images default to production",
    ),
    var(
        "SHOP_CONFIG_FILE",
        "(none)",
        "path",
        ALL,
        "optional TOML file read before the environment",
    ),
    var(
        "LOG_FORMAT",
        "pretty",
        "pretty, json",
        ALL,
        "log line format",
    ),
    var(
        "RUST_LOG",
        "info",
        "filter",
        ALL,
        "log filter, e.g. `info,user_service=debug`",
    ),
    var(
        "DATABASE_URL",
        "postgres://postgres:postgres@127.0.0.1:5432/shop",
        "URL",
        SERVICES,
        "Postgres for every service unless overridden below",
    ),
    var(
        "USER_DATABASE_URL",
        "(DATABASE_URL)",
        "URL",
        "user",
        "the user service's own database",
    ),
    var(
        "CATALOG_DATABASE_URL",
        "(DATABASE_URL)",
        "URL",
        "catalog",
        "the catalog service's own database",
    ),
    var(
        "ORDER_DATABASE_URL",
        "(DATABASE_URL)",
        "URL",
        "order",
        "the order service's own database",
    ),
    var(
        "PAYMENT_DATABASE_URL",
        "(DATABASE_URL)",
        "URL",
        "payment",
        "the payment service's own database",
    ),
    var(
        "DATABASE_POOL_SIZE",
        "10",
        "connections",
        SERVICES,
        "Postgres pool size per service",
    ),
    var(
        "DATABASE_ACQUIRE_TIMEOUT",
        "5000",
        "ms",
        SERVICES,
        "wait for a pooled connection before answering 503",
    ),
    var(
        "RUN_MIGRATIONS_ON_START",
        "true",
        "bool",
        SERVICES,
        "apply migrations at start (images: false, use the `migrate` subcommand)",
    ),
    var(
        "REDIS_URL",
        "redis://127.0.0.1:6379",
        "URL",
        ALL,
        "Redis; when unset it is built from the three below",
    ),
    var(
        "REDIS_HOST",
        "127.0.0.1",
        "host",
        ALL,
        "Redis host (when REDIS_URL is unset)",
    ),
    var(
        "REDIS_PORT",
        "6379",
        "port",
        ALL,
        "Redis port (when REDIS_URL is unset)",
    ),
    var(
        "REDIS_PASSWORD",
        "(none)",
        "secret",
        ALL,
        "Redis password (when REDIS_URL is unset)",
    ),
    var(
        "REDIS_KEY_PREFIX",
        "shop:",
        "string",
        ALL,
        "prefix of every Redis key and stream",
    ),
    var(
        "REDIS_POOL_SIZE",
        "16",
        "connections",
        ALL,
        "Redis pool size per binary",
    ),
    var(
        "CACHE_REDIS_URL",
        "(REDIS_URL)",
        "URL",
        "catalog",
        "Redis for the product cache, if it should be another instance (it may evict)",
    ),
    var(
        "PRODUCT_CACHE_TTL",
        "300s",
        "duration (bare number: s)",
        "catalog",
        "lifetime of a cached product (writes replace it at once)",
    ),
    var(
        "LIST_CACHE_TTL",
        "30s",
        "duration (bare number: s)",
        "catalog",
        "lifetime of a cached list page; the most that stock shown in listings can lag",
    ),
    var(
        "REDIS_ACQUIRE_TIMEOUT",
        "500",
        "ms",
        ALL,
        "wait for a Redis connection before falling back",
    ),
    var(
        "JWT_SECRET",
        "(development default)",
        "secret, >= 32 bytes",
        "user, gateway",
        "HS256 signing key of access tokens",
    ),
    var(
        "JWT_KEY_ID",
        "k1",
        "string",
        "user, gateway",
        "`kid` header of tokens signed with JWT_SECRET",
    ),
    var(
        "JWT_PREVIOUS_SECRET",
        "(none)",
        "secret, >= 32 bytes",
        "gateway",
        "still-accepted key during rotation",
    ),
    var(
        "JWT_PREVIOUS_KEY_ID",
        "(none)",
        "string",
        "gateway",
        "`kid` of JWT_PREVIOUS_SECRET",
    ),
    var(
        "JWT_EXPIRES_IN",
        "15m",
        "duration (bare number: s)",
        "user, gateway",
        "access token lifetime",
    ),
    var(
        "REFRESH_EXPIRES_IN",
        "30d",
        "duration (bare number: s)",
        "user",
        "session (refresh token) lifetime",
    ),
    var(
        "JWT_ISSUER",
        "shop",
        "string",
        "user, gateway",
        "`iss` claim",
    ),
    var(
        "JWT_AUDIENCE",
        "shop-api",
        "string",
        "user, gateway",
        "`aud` claim",
    ),
    var(
        "INTERNAL_TOKEN",
        "(development default)",
        "secret, >= 32 bytes",
        ALL,
        "credential on every call to a service",
    ),
    var(
        "INTERNAL_TOKEN_PREVIOUS",
        "(none)",
        "secret, >= 32 bytes",
        SERVICES,
        "also accepted during rotation",
    ),
    var("BCRYPT_COST", "12", "4-31", "user", "password hashing cost"),
    var(
        "BCRYPT_QUEUE",
        "32",
        "requests",
        "user",
        "hash jobs allowed to wait before 503 + Retry-After",
    ),
    var(
        "LOGIN_THROTTLE_LIMIT",
        "5",
        "attempts",
        "user",
        "login attempts per (client IP, email) per window (a success clears the count); also password-change attempts per user",
    ),
    var(
        "LOGIN_THROTTLE_WINDOW",
        "15m",
        "duration (bare number: s)",
        "user",
        "window of both attempt limits",
    ),
    var(
        "DENYLIST_GRACE",
        "60s",
        "duration (bare number: s)",
        "gateway",
        "how long revocation answers are served from memory while Redis is away",
    ),
    var(
        "ADMIN_EMAIL",
        "(none; admin@shop.local in development)",
        "email",
        "user",
        "first administrator, created idempotently",
    ),
    var(
        "ADMIN_PASSWORD",
        "(none; see README in development)",
        "secret, 8-72 bytes",
        "user",
        "its password",
    ),
    var(
        "THROTTLER_TTL",
        "60000",
        "ms",
        "gateway",
        "rate-limit window (validated; not enforced yet)",
    ),
    var(
        "THROTTLER_LIMIT",
        "600",
        "requests",
        "gateway",
        "requests per window, per IP anonymous, per user authenticated (not enforced yet)",
    ),
    var(
        "CORS_ORIGINS",
        "http://localhost:8080,http://127.0.0.1:8080",
        "comma list",
        "gateway",
        "browser origins allowed (not enforced yet)",
    ),
    var(
        "TRUSTED_PROXIES",
        "(none)",
        "comma list of IPs/CIDRs",
        "gateway",
        "peers whose X-Forwarded-For is believed",
    ),
    var(
        "MAX_BODY_BYTES",
        "1048576",
        "bytes",
        ALL,
        "largest accepted request body (413 above)",
    ),
    var(
        "GATEWAY_ADDR",
        "0.0.0.0:8080",
        "host:port",
        "gateway",
        "public listener",
    ),
    var(
        "USER_ADDR",
        "127.0.0.1:8081",
        "host:port",
        "user",
        "listener",
    ),
    var(
        "CATALOG_ADDR",
        "127.0.0.1:8082",
        "host:port",
        "catalog",
        "listener",
    ),
    var(
        "ORDER_ADDR",
        "127.0.0.1:8083",
        "host:port",
        "order",
        "listener",
    ),
    var(
        "PAYMENT_ADDR",
        "127.0.0.1:8084",
        "host:port",
        "payment",
        "listener",
    ),
    var(
        "USER_SERVICE_URL",
        "http://127.0.0.1:8081",
        "URL",
        "gateway",
        "where the user service answers",
    ),
    var(
        "CATALOG_SERVICE_URL",
        "http://127.0.0.1:8082",
        "URL",
        "gateway, order",
        "where the catalog service answers",
    ),
    var(
        "ORDER_SERVICE_URL",
        "http://127.0.0.1:8083",
        "URL",
        "gateway, payment",
        "where the order service answers",
    ),
    var(
        "PAYMENT_SERVICE_URL",
        "http://127.0.0.1:8084",
        "URL",
        "gateway",
        "where the payment service answers",
    ),
    var(
        "HTTP_WORKERS",
        "0",
        "threads (0 = one per core)",
        ALL,
        "HTTP worker threads per server",
    ),
    var(
        "HTTP_CONNECT_TIMEOUT",
        "1000",
        "ms",
        "gateway, order, payment",
        "connect timeout of service-to-service calls",
    ),
    var(
        "HTTP_REQUEST_TIMEOUT",
        "10000",
        "ms",
        "gateway, order, payment",
        "whole-call timeout of service-to-service calls (504 at the gateway)",
    ),
    var(
        "HTTP_RETRIES",
        "2",
        "retries",
        "gateway, order, payment",
        "retries of idempotent calls",
    ),
    var(
        "CIRCUIT_BREAKER_THRESHOLD",
        "5",
        "failures",
        "gateway, order, payment",
        "consecutive failures that open a circuit",
    ),
    var(
        "CIRCUIT_BREAKER_COOLDOWN",
        "5000",
        "ms",
        "gateway, order, payment",
        "how long an open circuit fails fast",
    ),
    var(
        "SHUTDOWN_TIMEOUT",
        "30s",
        "duration (bare number: s)",
        ALL,
        "grace period for in-flight requests on SIGTERM",
    ),
    var(
        "CURRENCY",
        "USD",
        "ISO 4217",
        "order, payment",
        "currency of every price",
    ),
    var(
        "BACKOFF_RETRIES",
        "5",
        "retries",
        "payment",
        "payment retries after the first attempt",
    ),
    var(
        "BACKOFF_DELAY",
        "1000",
        "ms",
        "payment",
        "first retry delay, doubled each time",
    ),
    var(
        "PAYMENT_FAILED_PROBABILITY",
        "20",
        "percent",
        "payment",
        "chance a simulated attempt fails",
    ),
    var(
        "PAYMENT_DURATION",
        "1000",
        "ms",
        "payment",
        "duration of a simulated attempt",
    ),
];

/// The Markdown table README shows (a test checks README contains exactly this).
pub fn markdown_table() -> String {
    let mut out =
        String::from("| Variable | Default | Unit | Read by | Meaning |\n|---|---|---|---|---|\n");
    for v in VARIABLES {
        out.push_str(&format!(
            "| `{}` | `{}` | {} | {} | {} |\n",
            v.name, v.default, v.unit, v.binaries, v.description
        ));
    }
    out
}
