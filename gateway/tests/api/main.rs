//! End-to-end tests: every service and the gateway in-process, spoken to over HTTP through
//! the gateway as a client would.

#![allow(clippy::unwrap_used)]

mod accounts;
mod docs;
mod edge;
mod hardening;
mod resilience;
mod scenarios;
mod sessions;
mod tokens;
mod ws;

pub use shop_testkit::expect_problem;
