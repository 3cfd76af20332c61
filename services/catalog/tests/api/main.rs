//! Catalog service tests.

#![allow(clippy::unwrap_used)]

mod health;
