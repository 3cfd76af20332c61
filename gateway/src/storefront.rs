//! The storefront and live order tracker: plain HTML, CSS and ES modules from `gateway/web/`,
//! compiled into the binary and served at `/` and `/assets/{file}`.
//!
//! The page talks to nothing but this gateway. Its Content-Security-Policy allows scripts,
//! styles and connections from this origin only, no inline code of either kind, and enforces
//! Trusted Types: the app builds its DOM with `createElement` and `textContent`, never from
//! markup strings, so an API value can never become script.

use std::sync::LazyLock;

use actix_web::{
    HttpRequest, HttpResponse,
    http::header::{self, HeaderValue},
    web,
};
use sha2::{Digest, Sha256};
use shop_http::{ApiError, conditional::not_modified};

/// Everything the storefront may load or reach; `'self'` covers its WebSocket too.
pub const STOREFRONT_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self'; connect-src 'self'; manifest-src 'self'; base-uri 'none'; \
    form-action 'self'; frame-ancestors 'none'; require-trusted-types-for 'script'; \
    trusted-types 'none'";

/// One file of the app.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

macro_rules! asset {
    ($name:literal, $content_type:literal) => {
        Asset {
            name: $name,
            content_type: $content_type,
            body: include_bytes!(concat!("../web/", $name)),
        }
    };
}

/// Every file under `gateway/web/` (a test keeps this list and the folder equal).
const ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("app.css", "text/css; charset=utf-8"),
    asset!("favicon.svg", "image/svg+xml"),
    asset!("main.js", "text/javascript; charset=utf-8"),
    asset!("api.js", "text/javascript; charset=utf-8"),
    asset!("live.js", "text/javascript; charset=utf-8"),
    asset!("dom.js", "text/javascript; charset=utf-8"),
    asset!("words.js", "text/javascript; charset=utf-8"),
    asset!("catalogue.js", "text/javascript; charset=utf-8"),
    asset!("account.js", "text/javascript; charset=utf-8"),
    asset!("cart.js", "text/javascript; charset=utf-8"),
    asset!("orders.js", "text/javascript; charset=utf-8"),
    asset!("admin.js", "text/javascript; charset=utf-8"),
];

/// A strong validator per file: the files change only with the binary.
static ETAGS: LazyLock<Vec<String>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .map(|asset| {
            let digest = Sha256::digest(asset.body);
            let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
            format!("\"{hex}\"")
        })
        .collect()
});

fn serve(req: &HttpRequest, name: &str) -> Result<HttpResponse, ApiError> {
    let (index, asset) = ASSETS
        .iter()
        .enumerate()
        .find(|(_, asset)| asset.name == name)
        .ok_or_else(ApiError::not_found)?;
    let etag = &ETAGS[index];
    let fresh = not_modified(req, etag);
    let mut response = if fresh {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    response
        .insert_header((
            header::ETAG,
            HeaderValue::from_str(etag).map_err(anyhow::Error::from)?,
        ))
        // Names carry no hash, so every use revalidates (a 304 is a few bytes).
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::CONTENT_SECURITY_POLICY, STOREFRONT_CSP));
    Ok(if fresh {
        response.finish()
    } else {
        response.content_type(asset.content_type).body(asset.body)
    })
}

/// The storefront and live order tracker.
///
/// One HTML page, served by the gateway with its scripts and styles from `/assets/`: browse the
/// catalogue, fill a cart, place an order and watch its status change live over `GET /ws`.
#[utoipa::path(get, path = "/", tag = "storefront",
    responses(
        (status = 200, description = "The storefront page", content_type = "text/html"),
        (status = 304, description = "Unchanged since the `ETag` sent in `If-None-Match`"),
    ))]
pub async fn index(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    serve(&req, "index.html")
}

/// A script, style sheet or icon of the storefront.
///
/// Files are built into the gateway; each answer carries an ETag and asks to be revalidated
/// (`If-None-Match` gets a 304), and an unknown name is 404.
#[utoipa::path(get, path = "/assets/{file}", tag = "storefront",
    params(("file" = String, Path, description = "A file name, such as `main.js`")),
    responses(
        (status = 200, description = "The file"),
        (status = 304, description = "Unchanged since the `ETag` sent in `If-None-Match`"),
        (status = 404, description = "No such file", content_type = "application/problem+json", body = shop_http::Problem),
    ))]
pub async fn asset(req: HttpRequest, file: web::Path<String>) -> Result<HttpResponse, ApiError> {
    serve(&req, &file)
}

/// The routes above.
pub fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/", web::get().to(index))
        .route("/assets/{file}", web::get().to(asset));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_of_the_app_is_served_and_nothing_else() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("web");
        let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
            .expect("gateway/web is readable")
            .map(|entry| {
                entry
                    .expect("a readable entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        on_disk.sort();
        let mut listed: Vec<String> = ASSETS.iter().map(|a| a.name.to_owned()).collect();
        listed.sort();
        assert_eq!(listed, on_disk);
    }

    #[test]
    fn markup_and_scripts_carry_nothing_inline() {
        for asset in ASSETS {
            // The SVG namespace is a name, not an address anything is fetched from.
            let text =
                String::from_utf8_lossy(asset.body).replace("http://www.w3.org/2000/svg", "");
            // Inline handlers, inline styles and markup sinks would all need a weaker policy.
            for forbidden in [
                " onclick=",
                " onload=",
                " style=\"",
                "<style",
                "innerHTML",
                "outerHTML",
                "insertAdjacentHTML",
                "document.write",
                "eval(",
                "new Function",
                "http://",
                "https://",
            ] {
                assert!(
                    !text.contains(forbidden),
                    "{} contains {forbidden}",
                    asset.name
                );
            }
            if asset.name == "index.html" {
                assert!(!text.contains("<script>"), "inline script in index.html");
            }
        }
    }
}
