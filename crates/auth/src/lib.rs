//! Access tokens (HS256 JWT with a `kid` for rotation), the internal service credential, and
//! the opaque tokens stored as digests.

pub mod denylist;
mod internal;
mod jwt;
pub mod opaque;

pub use internal::InternalTokens;
pub use jwt::{AccessClaims, IssuedToken, JwtKeys, SignIn, TokenError};
