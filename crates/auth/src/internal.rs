//! The credential every service requires on every route but health (`X-Internal-Token`).

use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use shop_settings::Settings;
use subtle::ConstantTimeEq;

/// Accepted internal credentials: the current one and, during rotation, the previous one.
#[derive(Clone)]
pub struct InternalTokens {
    current: [u8; 32],
    previous: Option<[u8; 32]>,
}

impl std::fmt::Debug for InternalTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InternalTokens(..)")
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl InternalTokens {
    /// From `INTERNAL_TOKEN` and `INTERNAL_TOKEN_PREVIOUS`.
    pub fn from_settings(settings: &Settings) -> Self {
        Self {
            current: digest(settings.internal_token()),
            previous: settings
                .internal_token_previous
                .as_ref()
                .map(|t| digest(t.expose_secret())),
        }
    }

    /// Whether `presented` is an accepted credential. Compares fixed-size digests in constant
    /// time, so neither the content nor the length of the secret leaks through timing.
    pub fn verify(&self, presented: &str) -> bool {
        let presented = digest(presented);
        let current: bool = presented.ct_eq(&self.current).into();
        let previous: bool = self
            .previous
            .is_some_and(|previous| presented.ct_eq(&previous).into());
        current | previous
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_current_and_previous_only() {
        let settings = Settings {
            internal_token: Some("current-token-with-at-least-32-bytes!!".into()),
            internal_token_previous: Some("previous-token-with-at-least-32-bytes!".into()),
            ..Settings::default()
        };
        let tokens = InternalTokens::from_settings(&settings);
        assert!(tokens.verify("current-token-with-at-least-32-bytes!!"));
        assert!(tokens.verify("previous-token-with-at-least-32-bytes!"));
        assert!(!tokens.verify("current-token-with-at-least-32-bytes!"));
        assert!(!tokens.verify(""));
    }
}
