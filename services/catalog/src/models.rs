//! Rows of the `catalog` schema and their API forms.

use chrono::{DateTime, Utc};
use diesel::{pg::Pg, prelude::*};
use serde::{Deserialize, Serialize};
use shop_contracts::{OrderId, ProductId, UserId};

use crate::schema::{products, stock_movements};

/// A product as stored.
#[derive(Debug, Clone, Queryable, Selectable, QueryableByName)]
#[diesel(table_name = products, check_for_backend(Pg))]
pub struct Product {
    pub id: ProductId,
    pub name: String,
    pub description: String,
    pub price_cents: i64,
    pub stock: i32,
    pub version: i32,
    pub revision: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
}

/// A product as the API shows it (and as the cache keeps it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProductResponse {
    pub id: ProductId,
    pub name: String,
    pub description: String,
    pub price_cents: i64,
    pub stock: i32,
    /// Covers the editable fields only; send it back with `PUT` to guard an edit.
    pub version: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<&Product> for ProductResponse {
    fn from(p: &Product) -> Self {
        Self {
            id: p.id,
            name: p.name.clone(),
            description: p.description.clone(),
            price_cents: p.price_cents,
            stock: p.stock,
            version: p.version,
            created_at: p.created_at,
            updated_at: p.updated_at,
        }
    }
}

/// A product's representation with the revision its ETag is made of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Versioned {
    pub revision: i64,
    pub product: ProductResponse,
}

impl Versioned {
    /// The strong ETag of the whole representation (stock included).
    pub fn etag(&self) -> String {
        etag(self.revision)
    }
}

/// The ETag for a revision.
pub fn etag(revision: i64) -> String {
    format!("\"r{revision}\"")
}

impl From<&Product> for Versioned {
    fn from(p: &Product) -> Self {
        Self {
            revision: p.revision,
            product: p.into(),
        }
    }
}

/// A new product.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = products)]
pub struct NewProduct {
    pub id: ProductId,
    pub name: String,
    pub description: String,
    pub price_cents: i64,
    pub stock: i32,
}

/// Kinds of stock movement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MovementKind {
    Initial,
    Adjust,
    Reserve,
    Release,
}

impl MovementKind {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            MovementKind::Initial => "initial",
            MovementKind::Adjust => "adjust",
            MovementKind::Reserve => "reserve",
            MovementKind::Release => "release",
        }
    }
}

/// A ledger entry to write.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = stock_movements)]
pub struct NewMovement {
    pub product_id: ProductId,
    pub kind: &'static str,
    pub delta: i32,
    pub order_id: Option<OrderId>,
    pub reason: Option<String>,
    pub actor_id: Option<UserId>,
}

impl NewMovement {
    /// A movement of `kind` by `delta`.
    pub fn new(product_id: ProductId, kind: MovementKind, delta: i32) -> Self {
        Self {
            product_id,
            kind: kind.as_str(),
            delta,
            order_id: None,
            reason: None,
            actor_id: None,
        }
    }
}
