//! Access tokens (HS256 JWT with a `kid` for rotation) and the internal service credential.

pub mod denylist;
mod internal;
mod jwt;

pub use internal::InternalTokens;
pub use jwt::{AccessClaims, IssuedToken, JwtKeys, SignIn, TokenError};
