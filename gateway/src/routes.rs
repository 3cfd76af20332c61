//! The allowlist of (method, path template) the gateway proxies, and strict path
//! normalisation: anything not listed, or spelled unusually, is 404.

use actix_web::http::Method;

/// Where a route is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upstream {
    User,
    Catalog,
    Order,
    Payment,
}

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone; no identity is forwarded.
    Public,
    /// A valid access token.
    User,
    /// A valid access token, or else a guest cart's `Cart-Token` (forwarded for the service
    /// to check).
    UserOrCart,
    /// A valid access token with role `admin` (the service checks again).
    Admin,
}

/// One allowed route.
#[derive(Debug, Clone)]
pub struct Route {
    pub method: Method,
    pub template: &'static str,
    pub upstream: Upstream,
    pub access: Access,
}

const fn route(
    method: Method,
    template: &'static str,
    upstream: Upstream,
    access: Access,
) -> Route {
    Route {
        method,
        template,
        upstream,
        access,
    }
}

use Access::{Admin, Public, User as Auth, UserOrCart};
use Upstream::{Catalog, Order, Payment, User};

/// DESIGN.md's public API table. `/internal/...` never appears here.
pub const ROUTES: &[Route] = &[
    route(Method::POST, "/register", User, Public),
    route(Method::POST, "/login", User, Public),
    route(Method::POST, "/refresh", User, Public),
    route(Method::POST, "/logout", User, Auth),
    route(Method::GET, "/me", User, Auth),
    route(Method::PATCH, "/me", User, Auth),
    route(Method::POST, "/me/password", User, Auth),
    route(Method::POST, "/me/email-verification", User, Auth),
    route(Method::POST, "/me/mfa", User, Auth),
    route(Method::DELETE, "/me/mfa", User, Auth),
    route(Method::POST, "/me/mfa/confirm", User, Auth),
    // The default shipping address lives beside the orders that use it.
    route(Method::GET, "/me/address", Order, Auth),
    route(Method::PUT, "/me/address", Order, Auth),
    route(Method::POST, "/email-verification/confirm", User, Public),
    route(Method::POST, "/password-reset", User, Public),
    route(Method::POST, "/password-reset/confirm", User, Public),
    route(Method::GET, "/users", User, Admin),
    route(Method::PATCH, "/users/{id}", User, Admin),
    route(Method::GET, "/products", Catalog, Public),
    route(Method::POST, "/products", Catalog, Admin),
    route(Method::GET, "/products/{id}", Catalog, Public),
    route(Method::PUT, "/products/{id}", Catalog, Admin),
    route(Method::DELETE, "/products/{id}", Catalog, Admin),
    route(
        Method::POST,
        "/products/{id}/stock-adjustments",
        Catalog,
        Admin,
    ),
    route(Method::POST, "/orders", Order, Auth),
    route(Method::GET, "/orders", Order, Auth),
    route(Method::GET, "/orders/{id}", Order, Auth),
    route(Method::GET, "/orders/{id}/timeline", Order, Auth),
    route(Method::GET, "/orders/{id}/payment", Payment, Auth),
    route(Method::POST, "/orders/{id}/cancel", Order, Auth),
    route(Method::PUT, "/orders/{id}/status", Order, Admin),
    route(Method::POST, "/orders/{id}/refunds", Order, Admin),
    route(Method::GET, "/orders/{id}/refunds", Order, Auth),
    route(Method::GET, "/cart", Order, UserOrCart),
    route(Method::PUT, "/cart", Order, UserOrCart),
    route(Method::DELETE, "/cart", Order, UserOrCart),
    route(Method::GET, "/cart/items/{productId}", Order, UserOrCart),
    route(Method::PUT, "/cart/items/{productId}", Order, UserOrCart),
    route(Method::DELETE, "/cart/items/{productId}", Order, UserOrCart),
    route(Method::POST, "/cart/checkout", Order, Auth),
    route(Method::POST, "/cart/merge", Order, Auth),
    route(Method::POST, "/guest-carts", Order, Public),
];

/// A path segment of the unreserved characters only (RFC 3986), never `.` or `..`.
fn plain_segment(segment: &str) -> bool {
    !segment.is_empty()
        && segment != "."
        && segment != ".."
        && segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// The route for a raw (still percent-encoded) request path, if it is allowed. Percent
/// escapes, empty segments (`//`), dot segments and trailing slashes never match, so
/// `%2Finternal`, `//internal` and `/me/../internal` all stay outside.
pub fn find(method: &Method, raw_path: &str) -> Option<&'static Route> {
    let rest = raw_path.strip_prefix('/')?;
    let segments: Vec<&str> = rest.split('/').collect();
    if !segments.iter().all(|s| plain_segment(s)) {
        return None;
    }
    ROUTES.iter().find(|route| {
        route.method == *method && {
            let template: Vec<&str> = route.template[1..].split('/').collect();
            template.len() == segments.len()
                && template
                    .iter()
                    .zip(&segments)
                    .all(|(t, s)| (t.starts_with('{') && t.ends_with('}')) || t == s)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_routes_match_with_their_upstream() {
        let route = find(
            &Method::GET,
            "/orders/0193f0b2-7c1e-7aa0-9d6b-4a1b2c3d4e5f/payment",
        )
        .expect("allowed");
        assert_eq!(route.upstream, Upstream::Payment);
        assert_eq!(
            find(&Method::GET, "/products").map(|r| r.access),
            Some(Access::Public)
        );
        assert_eq!(
            find(&Method::POST, "/products").map(|r| r.access),
            Some(Access::Admin)
        );
        assert_eq!(
            find(&Method::POST, "/login").map(|r| r.upstream),
            Some(Upstream::User)
        );
    }

    #[test]
    fn everything_else_is_refused() {
        for (method, path) in [
            (Method::GET, "/internal/sessions/x"),
            (Method::GET, "//internal/sessions/x"),
            (Method::GET, "/%2Finternal/sessions/x"),
            (Method::GET, "/me/%2E%2E/internal"),
            (Method::GET, "/me/../internal/sessions/x"),
            (Method::GET, "/products/"),
            (Method::GET, "/products//x"),
            (Method::GET, "/products/./x"),
            (Method::GET, "/Products"),
            (Method::GET, "products"),
            (Method::GET, "/"),
            (Method::DELETE, "/orders/x"),
            (Method::GET, "/login"),
            (Method::POST, "/orders/x/payment"),
            (Method::GET, "/products/a%20b"),
        ] {
            assert!(find(&method, path).is_none(), "{method} {path} allowed");
        }
    }

    #[test]
    fn templates_are_well_formed() {
        for route in ROUTES {
            assert!(route.template.starts_with('/'));
            assert!(!route.template.contains("internal"));
            for segment in route.template[1..].split('/') {
                assert!(
                    plain_segment(segment) || (segment.starts_with('{') && segment.ends_with('}')),
                    "{}",
                    route.template
                );
            }
        }
    }
}
