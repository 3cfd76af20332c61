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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_session_and_token_has_a_key_of_its_own_that_deployments_share() {
        let (a, b) = (SessionId::new(), SessionId::new());
        // Writers and readers of different releases meet on these names: they are fixed.
        assert_eq!(session_key(a), format!("denylist:sid:{a}"));
        assert_ne!(session_key(a), session_key(b));
        let jti = Uuid::now_v7();
        assert_eq!(token_key(jti), format!("denylist:jti:{jti}"));
        assert_ne!(token_key(jti), session_key(SessionId::from(jti)));
    }
}
