//! Typed ids: an order id cannot be passed where a product id is meant.
//!
//! Each is a UUID on the wire (serde `transparent`), in OpenAPI (feature `openapi`) and in
//! Postgres `uuid` columns (feature `diesel`).

use std::{fmt, str::FromStr};

use uuid::Uuid;

/// Declares a UUID newtype with its conversions, serde, OpenAPI and diesel support.
macro_rules! uuid_id {
    ($( $(#[$meta:meta])* $name:ident; )+) => {$(
        $(#[$meta])*
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        #[cfg_attr(
            feature = "diesel",
            derive(diesel::expression::AsExpression, diesel::deserialize::FromSqlRow),
            diesel(sql_type = diesel::sql_types::Uuid)
        )]
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord,
            serde::Serialize, serde::Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A new id, time-ordered (UUID v7) so that new rows go to the end of an index.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }

            /// The UUID inside.
            pub fn uuid(self) -> Uuid {
                self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl From<Uuid> for $name {
            fn from(id: Uuid) -> Self {
                Self(id)
            }
        }

        impl From<$name> for Uuid {
            fn from(id: $name) -> Self {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;

            fn from_str(text: &str) -> Result<Self, Self::Err> {
                text.parse().map(Self)
            }
        }

        #[cfg(feature = "diesel")]
        impl diesel::serialize::ToSql<diesel::sql_types::Uuid, diesel::pg::Pg> for $name {
            fn to_sql<'b>(
                &'b self,
                out: &mut diesel::serialize::Output<'b, '_, diesel::pg::Pg>,
            ) -> diesel::serialize::Result {
                <Uuid as diesel::serialize::ToSql<diesel::sql_types::Uuid, diesel::pg::Pg>>::to_sql(
                    &self.0, out,
                )
            }
        }

        #[cfg(feature = "diesel")]
        impl diesel::deserialize::FromSql<diesel::sql_types::Uuid, diesel::pg::Pg> for $name {
            fn from_sql(value: diesel::pg::PgValue<'_>) -> diesel::deserialize::Result<Self> {
                <Uuid as diesel::deserialize::FromSql<diesel::sql_types::Uuid, diesel::pg::Pg>>
                    ::from_sql(value)
                    .map(Self)
            }
        }
    )+};
}

uuid_id! {
    /// A user account's id.
    UserId;
    /// A product's id.
    ProductId;
    /// An order's id; also names its reservation and its payment request.
    OrderId;
    /// A payment's id.
    PaymentId;
    /// A session's id: the `sid` of its tokens.
    SessionId;
    /// Whose cart: an account's (the user's id), or a guest cart's (its own id).
    CartId;
    /// A refund's id: named by the order service, kept by the payment service.
    RefundId;
}

impl From<UserId> for CartId {
    fn from(user: UserId) -> Self {
        CartId(user.uuid())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_is_its_uuid_on_the_wire_and_in_text() {
        let uuid = Uuid::now_v7();
        let id = OrderId::from(uuid);
        assert_eq!(
            serde_json::to_value(id).expect("serialises"),
            serde_json::json!(uuid.to_string())
        );
        assert_eq!(
            serde_json::from_value::<OrderId>(serde_json::json!(uuid.to_string()))
                .expect("deserialises"),
            id
        );
        assert_eq!(id.to_string().parse::<OrderId>().expect("parses"), id);
        assert!("not-a-uuid".parse::<OrderId>().is_err());
        assert_ne!(OrderId::new(), OrderId::new());
    }
}
