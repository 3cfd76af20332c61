//! Pieces every service's API document shares.

use utoipa::{
    Modify,
    openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
};

/// Declares the `bearer` security scheme (the gateway's access tokens, JWT).
#[derive(Debug, Clone, Copy)]
pub struct BearerAuth;

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

/// The `cartToken` scheme: a guest cart's token in the `Cart-Token` header, which the cart
/// routes take instead of a login.
#[derive(Debug)]
pub struct CartTokenAuth;

impl Modify for CartTokenAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "cartToken",
            SecurityScheme::ApiKey(utoipa::openapi::security::ApiKey::Header(
                utoipa::openapi::security::ApiKeyValue::with_description(
                    "Cart-Token",
                    "A guest cart's token (POST /guest-carts), instead of a login",
                ),
            )),
        );
    }
}

/// A document as the checked-in pretty JSON, stamped with the workspace version.
pub fn to_json(mut doc: utoipa::openapi::OpenApi) -> String {
    doc.info.version = env!("CARGO_PKG_VERSION").into();
    doc.to_pretty_json().unwrap_or_default()
}

/// The responses many operations share, for `#[utoipa::path(responses(...))]` beside the
/// operation's own: each is a problem+json answer with the `Problem` schema.
pub mod responses {
    use std::collections::BTreeMap;

    use utoipa::{
        IntoResponses,
        openapi::{ContentBuilder, RefOr, Response, ResponseBuilder, schema::Ref},
    };

    fn problem(description: &str) -> RefOr<Response> {
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/problem+json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("Problem")))
                    .build(),
            )
            .build()
            .into()
    }

    macro_rules! response_set {
        ($(#[$meta:meta])* $name:ident { $($status:literal => $description:literal),+ $(,)? }) => {
            $(#[$meta])*
            #[derive(Debug, Clone, Copy)]
            pub struct $name;

            impl IntoResponses for $name {
                fn responses() -> BTreeMap<String, RefOr<Response>> {
                    BTreeMap::from([$(($status.to_owned(), problem($description))),+])
                }
            }
        };
    }

    response_set! {
        /// 401 for an operation that needs an access token.
        Unauthenticated {
            "401" => "Missing, invalid, expired or revoked access token (`unauthorized`)",
        }
    }

    response_set! {
        /// 413 and 415 for an operation that reads a JSON body.
        JsonBody {
            "413" => "Body too large (`payload-too-large`)",
            "415" => "Body is not application/json (`unsupported-media-type`)",
        }
    }

    response_set! {
        /// 429 from the gateway's rate limits.
        RateLimited {
            "429" => "Rate limited (`rate-limited`); see Retry-After",
        }
    }

    response_set! {
        /// 503 when the database or another service is away.
        Unavailable {
            "503" => "A dependency is unavailable (`dependency-unavailable`); see Retry-After",
        }
    }

    response_set! {
        /// 401 for an internal operation called without the caller's credential.
        InternalCredential {
            "401" => "Missing or wrong internal credential (`unauthorized`)",
        }
    }
}
