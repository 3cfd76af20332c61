//! The public API document and its Swagger UI.
//!
//! Each service generates its public document from its handlers (utoipa); the checked-in
//! copies under `proto-docs/openapi/` are kept equal to the code by each service's drift test.
//! The gateway merges them with its own operations into one document, adds what the edge
//! itself can answer (429 with its headers, 503/504 when a service is away or slow), and
//! serves it at `GET /api/openapi.json`, with Swagger UI at `GET /api`. Swagger UI is compiled
//! into the binary and configured to fetch nothing but that document.

use std::sync::{Arc, LazyLock};

use actix_web::{HttpResponse, http::header, web};
use serde_json::{Map, Value, json};
use shop_http::{ApiError, openapi::BearerAuth};
use utoipa::OpenApi;
use utoipa_swagger_ui::Config;

use crate::ws;

/// The services' public documents, as checked in.
const SERVICE_DOCUMENTS: [(&str, &str); 4] = [
    ("user", include_str!("../../proto-docs/openapi/user.json")),
    (
        "catalog",
        include_str!("../../proto-docs/openapi/catalog.json"),
    ),
    ("order", include_str!("../../proto-docs/openapi/order.json")),
    (
        "payment",
        include_str!("../../proto-docs/openapi/payment.json"),
    ),
];

const DOCUMENT_PATH: &str = "/api/openapi.json";

/// The API docs page may load its own scripts and styles from `/api/` and nothing else.
const DOCS_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Shop API",
        description = "The public API of the Shop platform, served by the gateway. \
            Errors are `application/problem+json` (RFC 9457) with a stable `code`. \
            Every route is rate limited (per user with a token, per address without; tighter on \
            `/login`, `/register`, `/ws/ticket`, `/password-reset`, `/password-reset/confirm`, \
            `/email-verification/confirm` and `/guest-carts`): answers carry `RateLimit-Limit`, \
            `RateLimit-Remaining` and `RateLimit-Reset`, and a refusal is 429 with `Retry-After`."
    ),
    servers((url = "/", description = "The gateway that serves this document")),
    paths(
        crate::storefront::index,
        crate::storefront::asset,
        api_page,
        api_document,
        ws::create_ticket,
        ws::connect,
        shop_http::health::healthz,
        shop_http::health::readyz,
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "accounts", description = "Registration and profiles"),
        (name = "sessions", description = "Tokens: log in, refresh, log out"),
        (name = "users", description = "Administration of accounts"),
        (name = "products", description = "The product catalogue"),
        (name = "cart", description = "The cart and checkout"),
        (name = "orders", description = "Orders and their lifecycle"),
        (name = "payments", description = "Payments and their attempts"),
        (name = "notifications", description = "Live order and payment updates over WebSocket"),
        (name = "storefront", description = "The web storefront and live order tracker"),
        (name = "documentation", description = "This document and its viewer"),
        (name = "operations", description = "Probes for orchestrators"),
    )
)]
struct GatewayApi;

/// Why the parts could not be merged (a test turns this into a failure).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct MergeError(String);

fn object(value: &mut Value) -> &mut Map<String, Value> {
    if !value.is_object() {
        *value = Value::Object(Map::new());
    }
    value.as_object_mut().expect("an object")
}

fn problem(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    })
}

fn seconds_header(description: &str) -> Value {
    json!({"description": description, "schema": {"type": "integer", "minimum": 0}})
}

const HTTP_METHODS: &[&str] = &[
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// 429 as the gateway answers it, keeping what a service says of its own limits.
fn rate_limited(service: Option<&Value>) -> Value {
    let gateway = "Rate limited (`rate-limited`): wait the number of seconds in Retry-After";
    let description = match service.and_then(|r| r["description"].as_str()) {
        Some(own) if !own.starts_with("Rate limited") => format!("{gateway}. Also: {own}"),
        _ => gateway.to_owned(),
    };
    let mut response = problem(&description);
    response["headers"] = json!({
        "Retry-After": seconds_header("Seconds until a request will be accepted"),
        "RateLimit-Limit": seconds_header("Requests allowed per period"),
        "RateLimit-Remaining": seconds_header("Requests left now"),
        "RateLimit-Reset": seconds_header("Seconds until the quota is whole again"),
    });
    response["content"]["application/problem+json"]["example"] = json!({
        "type": "https://shop.example/problems/rate-limited",
        "title": "Too many requests",
        "status": 429,
        "detail": "too many requests; retry after the number of seconds in Retry-After",
        "code": "rate-limited"
    });
    response
}

/// Merges `part` into `merged`; the same operation or a different schema under the same name
/// in two parts is an error.
fn absorb(merged: &mut Value, name: &str, part: &Value) -> Result<(), MergeError> {
    for (path, operations) in part["paths"].as_object().into_iter().flatten() {
        let target = object(
            object(&mut merged["paths"])
                .entry(path.clone())
                .or_insert_with(|| json!({})),
        );
        let methods = operations.as_object().into_iter().flatten();
        for (method, operation) in methods.filter(|(m, _)| HTTP_METHODS.contains(&m.as_str())) {
            if target.contains_key(method) {
                return Err(MergeError(format!(
                    "{} {path} is documented twice ({name})",
                    method.to_uppercase()
                )));
            }
            let mut operation = operation.clone();
            // The gateway can answer these for any service it proxies to.
            let responses = object(&mut operation["responses"]);
            if path.contains('{') {
                // The gateway matches ids by their spelling before any service sees them.
                responses.entry("404").or_insert_with(|| {
                    problem("No such route: a path segment is not spelled as an id ever is (`not-found`)")
                });
            }
            responses.entry("503").or_insert_with(|| {
                problem("A dependency is unavailable (`dependency-unavailable`); see Retry-After")
            });
            responses.insert(
                "504".into(),
                problem("The service did not answer in time (`upstream-timeout`)"),
            );
            target.insert(method.clone(), operation);
        }
    }
    for section in ["schemas", "securitySchemes"] {
        let into = object(
            object(&mut merged["components"])
                .entry(section)
                .or_insert_with(|| json!({})),
        );
        for (key, value) in part["components"][section]
            .as_object()
            .into_iter()
            .flatten()
        {
            match into.get(key) {
                Some(existing) if existing != value => {
                    return Err(MergeError(format!(
                        "components.{section}.{key} differs between documents ({name})"
                    )));
                }
                _ => {
                    into.insert(key.clone(), value.clone());
                }
            }
        }
    }
    Ok(())
}

/// The merged public document.
pub fn public_document() -> Result<Value, MergeError> {
    let mut gateway = GatewayApi::openapi();
    gateway.info.version = env!("CARGO_PKG_VERSION").into();
    let mut merged =
        serde_json::to_value(gateway).map_err(|e| MergeError(format!("gateway document: {e}")))?;
    for (name, text) in SERVICE_DOCUMENTS {
        let part: Value = serde_json::from_str(text)
            .map_err(|e| MergeError(format!("proto-docs/openapi/{name}.json: {e}")))?;
        absorb(&mut merged, name, &part)?;
    }
    // Every rate-limited answer is documented the same way (probes are never limited).
    for (path, operations) in object(&mut merged["paths"]).iter_mut() {
        if matches!(path.as_str(), "/healthz" | "/readyz") {
            continue;
        }
        for (method, operation) in object(operations).iter_mut() {
            if !HTTP_METHODS.contains(&method.as_str()) {
                continue;
            }
            let responses = object(&mut operation["responses"]);
            let merged = rate_limited(responses.get("429"));
            responses.insert("429".into(), merged);
        }
    }
    Ok(merged)
}

/// The merged public document as the checked-in pretty JSON.
pub fn public_json() -> Result<String, MergeError> {
    serde_json::to_string_pretty(&public_document()?)
        .map_err(|e| MergeError(format!("serialising: {e}")))
}

/// What `/api` serves, built once.
struct Docs {
    document: String,
    config: Arc<Config<'static>>,
}

static DOCS: LazyLock<Result<Docs, String>> = LazyLock::new(|| {
    let document = public_json().map_err(|e| e.to_string())?;
    let config = Config::new([DOCUMENT_PATH])
        // Swagger UI would otherwise send the document to an online validator.
        .validator_url("none")
        .try_it_out_enabled(true);
    Ok(Docs {
        document,
        config: Arc::new(config),
    })
});

fn docs() -> Result<&'static Docs, ApiError> {
    DOCS.as_ref()
        .map_err(|e| ApiError::internal(anyhow::anyhow!("API document: {e}")))
}

/// A file of the Swagger UI build, from the binary.
fn swagger_file(name: &str) -> Result<HttpResponse, ApiError> {
    let docs = docs()?;
    let file = utoipa_swagger_ui::serve(name, docs.config.clone())
        .map_err(|e| ApiError::internal(anyhow::anyhow!("swagger ui: {e}")))?
        .ok_or_else(ApiError::not_found)?;
    let mut bytes = file.bytes.into_owned();
    if name == "index.html" {
        bytes = absolute_links(&String::from_utf8_lossy(&bytes)).into_bytes();
    }
    Ok(HttpResponse::Ok()
        .content_type(file.content_type)
        .insert_header((header::CONTENT_SECURITY_POLICY, DOCS_CSP))
        .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
        .body(bytes))
}

/// The page is served at `/api` (no trailing slash), where its relative links (`./x.js`,
/// `index.css`) would resolve to the root: point them at `/api/`.
fn absolute_links(page: &str) -> String {
    const ATTRIBUTES: [&str; 2] = ["src=\"", "href=\""];
    let mut out = String::with_capacity(page.len() + 64);
    let mut rest = page;
    // Copy up to each attribute's value, and prefix the value when it is relative.
    while let Some(start) = ATTRIBUTES
        .iter()
        .filter_map(|attribute| rest.find(attribute).map(|at| at + attribute.len()))
        .min()
    {
        let (head, tail) = rest.split_at(start);
        out.push_str(head);
        let value = &tail[..tail.find('"').unwrap_or(tail.len())];
        let relative = !value.is_empty()
            && !value.starts_with('/')
            && !value.starts_with('#')
            && !value.contains(':');
        rest = if relative {
            out.push_str("/api/");
            tail.strip_prefix("./").unwrap_or(tail)
        } else {
            tail
        };
    }
    out.push_str(rest);
    out
}

/// Swagger UI for this API.
///
/// Served entirely by the gateway (no external assets), reading `GET /api/openapi.json`.
#[utoipa::path(get, path = "/api", tag = "documentation",
    responses((status = 200, description = "Swagger UI", content_type = "text/html")))]
pub async fn api_page() -> Result<HttpResponse, ApiError> {
    swagger_file("index.html")
}

/// The files Swagger UI loads (scripts, styles, icons, its configuration).
pub async fn api_asset(file: web::Path<String>) -> Result<HttpResponse, ApiError> {
    if file.as_str() == "index.html" {
        return Err(ApiError::not_found());
    }
    swagger_file(&file)
}

/// This document.
///
/// The public API as one OpenAPI 3.1 document: the gateway's own routes merged with the public
/// routes of the user, catalog, order and payment services.
#[utoipa::path(get, path = "/api/openapi.json", tag = "documentation",
    responses((status = 200, description = "The OpenAPI 3.1 document of the public API", body = serde_json::Value)))]
pub async fn api_document() -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(docs()?.document.as_str()))
}

/// The routes above.
pub fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/api", web::get().to(api_page))
        .route(DOCUMENT_PATH, web::get().to(api_document))
        .route("/api/{file}", web::get().to(api_asset));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_links_point_under_api() {
        let page = r#"<link href="./a.css" /><link href="index.css"><script src="./b.js" charset="UTF-8"></script><a href="/x">x</a><a href="https://example.com/">e</a>"#;
        assert_eq!(
            absolute_links(page),
            r#"<link href="/api/a.css" /><link href="/api/index.css"><script src="/api/b.js" charset="UTF-8"></script><a href="/x">x</a><a href="https://example.com/">e</a>"#
        );
    }
}
