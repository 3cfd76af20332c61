//! User service tests. Accounts and sessions are exercised end to end through the gateway in
//! `gateway/tests`; here, the service's API documents.

mod openapi;
