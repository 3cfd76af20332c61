//! The test harness (a dev-dependency only).
//!
//! - [`TestDb`]: a database per test, cloned from a template named by a hash of every
//!   migration and the bootstrap SQL, dropped `WITH (FORCE)` afterwards; stale ones swept.
//! - [`TestApp`]: every service and the gateway in-process on port 0, sharing one test
//!   database and a random Redis key prefix; any component can be stopped and started again.
//! - [`TcpProxy`]: a link that can be cut, restored or slowed.
//! - [`PrivateRedis`]: a `redis-server` of the test's own on a free port.
//! - [`SmtpServer`]: a real SMTP server on loopback that keeps what it receives.
//!
//! Nothing here stops or flushes the machine's shared Postgres or Redis.

#![allow(clippy::unwrap_used)] // A harness failure should fail the test loudly.

mod app;
mod db;
mod documents;
mod invariant;
mod proxy;
mod shop;
mod smtp;
pub use shop::{expect_problem, sample_address};
mod test_redis;
pub mod wait;

pub use app::{
    ADMIN_EMAIL, ADMIN_PASSWORD, Component, Instance, TestApp, TestAppBuilder, TestUser,
};
pub use db::TestDb;
pub use documents::{assert_document, operations};
pub use invariant::{
    assert_holds_match_orders, assert_ledger_invariant, assert_refunds_consistent,
};
pub use proxy::TcpProxy;
pub use shop_proof::PrivateRedis;
pub use smtp::{ReceivedMail, SmtpServer};
pub use test_redis::{SHARED_REDIS, TestRedis};
