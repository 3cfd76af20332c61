//! End-to-end tests: every service and the gateway in-process, spoken to over HTTP through
//! the gateway as a client would.

#![allow(clippy::unwrap_used)]

mod accounts;
mod edge;
mod resilience;
mod sessions;
mod tokens;
mod ws;

use reqwest::Response;
use serde_json::Value;

/// Asserts a problem+json answer with `status` and `code`; returns the body.
pub async fn expect_problem(response: Response, status: u16, code: &str) -> Value {
    assert_eq!(response.status(), status, "status of {}", response.url());
    assert_eq!(
        response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/problem+json")
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["status"], status, "{body}");
    body
}
