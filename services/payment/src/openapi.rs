//! The payment service's API documents, generated from the handlers. It has no internal HTTP
//! API: its input is the `payments.requests` stream (see proto-docs/asyncapi.yaml).

use utoipa::{
    Modify, OpenApi,
    openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
};

use crate::routes;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Shop payments", description = "Payments of orders, as clients see them through the gateway."),
    paths(routes::get_payment),
    modifiers(&BearerAuth),
    tags((name = "payments", description = "Simulated payments and their attempts"))
)]
struct PublicApi;

/// The public document, as pretty JSON.
pub fn public_json() -> String {
    let mut doc = PublicApi::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").into();
    doc.to_pretty_json().unwrap_or_default()
}

#[derive(OpenApi)]
#[openapi(info(
    title = "Shop payments (internal)",
    description = "The payment service serves no internal HTTP API: it takes its work from the payments.requests stream (proto-docs/asyncapi.yaml) and reports to the order service's internal API."
))]
struct InternalApi;

/// The internal document (no operations), as pretty JSON.
pub fn internal_json() -> String {
    let mut doc = InternalApi::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").into();
    doc.to_pretty_json().unwrap_or_default()
}
