//! Shipping addresses: validated field by field (DESIGN.md, "Fulfilment and refunds"), and the
//! user's default address (`GET`/`PUT /me/address`), kept beside the orders that use it.

use diesel::{
    OptionalExtension,
    sql_types::{Jsonb, Uuid as SqlUuid},
};
use diesel_async::RunQueryDsl;
use shop_contracts::{ShippingAddress, UserId};
use shop_db::prepared;
use shop_http::FieldError;

use crate::{AppState, error::OrderError};

/// The longest a name, street line or city may be (characters).
const MAX_LINE: usize = 200;
/// The longest a postal code may be.
const MAX_POSTAL_CODE: usize = 16;
/// The longest a phone number may be.
const MAX_PHONE: usize = 32;

/// Every problem of `address`, each on its field under `prefix` (`shippingAddress.` for an
/// order, nothing for `/me/address`).
pub fn problems(address: &ShippingAddress, prefix: &str) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let mut check = |field: &str, message: Option<String>| {
        if let Some(message) = message {
            errors.push(FieldError::new(format!("{prefix}{field}"), message));
        }
    };
    check("name", text(&address.name, MAX_LINE));
    check("line1", text(&address.line1, MAX_LINE));
    if let Some(line2) = &address.line2 {
        check("line2", optional_text(line2, MAX_LINE));
    }
    check("city", text(&address.city, MAX_LINE));
    if let Some(region) = &address.region {
        check("region", optional_text(region, MAX_LINE));
    }
    check("postalCode", postal_code(&address.postal_code));
    check("country", country(&address.country));
    if let Some(phone) = &address.phone {
        check("phone", phone_number(phone));
    }
    errors
}

/// `address` as stored: valid, or every problem at once.
pub fn validated(address: &ShippingAddress, prefix: &str) -> Result<serde_json::Value, OrderError> {
    let errors = problems(address, prefix);
    if !errors.is_empty() {
        return Err(OrderError::Validation(errors));
    }
    serde_json::to_value(address)
        .map_err(|e| OrderError::Unexpected(anyhow::anyhow!("an address as JSON: {e}")))
}

fn text(value: &str, max: usize) -> Option<String> {
    if value.trim().is_empty() {
        Some("is required".into())
    } else {
        optional_text(value, max)
    }
}

fn optional_text(value: &str, max: usize) -> Option<String> {
    if value.chars().count() > max {
        Some(format!("must be at most {max} characters"))
    } else if value.chars().any(char::is_control) {
        Some("must not contain control characters".into())
    } else {
        None
    }
}

fn postal_code(value: &str) -> Option<String> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        Some("is required".into())
    } else if trimmed.len() > MAX_POSTAL_CODE
        || !trimmed
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == ' ' || c == '-')
    {
        Some(format!(
            "must be 1 to {MAX_POSTAL_CODE} letters, digits, spaces or hyphens"
        ))
    } else {
        None
    }
}

fn country(value: &str) -> Option<String> {
    let known = value.len() == 2
        && value.chars().all(|c| c.is_ascii_uppercase())
        && isocountry::CountryCode::for_alpha2(value).is_ok();
    (!known).then(|| "must be an ISO 3166-1 alpha-2 code in upper case, such as FR or US".into())
}

fn phone_number(value: &str) -> Option<String> {
    let digits = value.chars().filter(char::is_ascii_digit).count();
    let allowed = value
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, ' ' | '+' | '-' | '(' | ')' | '.'));
    (!allowed || !(4..=MAX_PHONE).contains(&digits) || value.len() > MAX_PHONE).then(|| {
        format!("must be a phone number: digits, spaces and + - ( ) ., at most {MAX_PHONE}")
    })
}

const FIND_DEFAULT: &str = "SELECT address FROM default_addresses WHERE user_id = $1";

#[derive(diesel::QueryableByName)]
struct Stored {
    #[diesel(sql_type = Jsonb)]
    address: serde_json::Value,
}

/// The user's default address, if they set one.
pub async fn default_for(
    state: &AppState,
    user: UserId,
) -> Result<Option<ShippingAddress>, OrderError> {
    let mut conn = shop_db::conn(&state.pool).await?;
    let stored: Option<Stored> = prepared(FIND_DEFAULT)
        .bind::<SqlUuid, _>(user)
        .get_result(&mut conn)
        .await
        .optional()?;
    Ok(stored.and_then(|s| serde_json::from_value(s.address).ok()))
}

const SET_DEFAULT: &str = "
INSERT INTO default_addresses (user_id, address) VALUES ($1, $2)
ON CONFLICT (user_id) DO UPDATE SET address = EXCLUDED.address, updated_at = now()";

/// Validates and stores the user's default address.
pub async fn set_default(
    state: &AppState,
    user: UserId,
    address: &ShippingAddress,
) -> Result<(), OrderError> {
    let value = validated(address, "")?;
    let mut conn = shop_db::conn(&state.pool).await?;
    prepared(SET_DEFAULT)
        .bind::<SqlUuid, _>(user)
        .bind::<Jsonb, _>(value)
        .execute(&mut conn)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address() -> ShippingAddress {
        ShippingAddress {
            name: "Ada Lovelace".into(),
            line1: "12 rue des Lilas".into(),
            line2: None,
            city: "Lyon".into(),
            region: None,
            postal_code: "69003".into(),
            country: "FR".into(),
            phone: Some("+33 4 78 00 00 00".into()),
        }
    }

    fn fields(address: &ShippingAddress) -> Vec<String> {
        problems(address, "shippingAddress.")
            .into_iter()
            .map(|e| e.field)
            .collect()
    }

    #[test]
    fn a_complete_address_is_valid() {
        assert!(fields(&address()).is_empty());
        let mut us = address();
        us.country = "US".into();
        us.region = Some("NY".into());
        us.postal_code = "10001-1234".into();
        us.phone = None;
        assert!(fields(&us).is_empty());
    }

    #[test]
    fn each_problem_names_its_field() {
        let bad = ShippingAddress {
            name: " ".into(),
            line1: String::new(),
            line2: Some("x".repeat(201)),
            city: "Lyon\u{7}".into(),
            region: None,
            postal_code: "69003!".into(),
            country: "fr".into(),
            phone: Some("call me".into()),
        };
        assert_eq!(
            fields(&bad),
            [
                "shippingAddress.name",
                "shippingAddress.line1",
                "shippingAddress.line2",
                "shippingAddress.city",
                "shippingAddress.postalCode",
                "shippingAddress.country",
                "shippingAddress.phone",
            ]
        );
    }

    #[test]
    fn a_country_is_an_assigned_alpha_2_code() {
        for code in ["FR", "US", "DE", "JP", "BR"] {
            assert_eq!(country(code), None, "{code}");
        }
        for code in ["ZZ", "XX", "FRA", "F", "fr", "", "U1"] {
            assert!(country(code).is_some(), "{code}");
        }
    }
}
