//! Redis key names of the session denylist, shared by its writer (user) and reader (gateway).
//! Callers add their Redis key prefix.

use shop_contracts::SessionId;
use uuid::Uuid;

/// The key that marks every token of a session revoked.
pub fn session_key(sid: SessionId) -> String {
    format!("denylist:sid:{sid}")
}

/// The key that marks one token revoked.
pub fn token_key(jti: Uuid) -> String {
    format!("denylist:jti:{jti}")
}
