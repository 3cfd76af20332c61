//! Opaque tokens: 256 random bits, URL-safe base64, stored only as their SHA-256 digest (refresh
//! tokens, mailed reset and verification tokens, guest carts). Whoever reads the table cannot
//! use what it holds.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use rand::RngCore;
use sha2::{Digest, Sha256};

/// A new token and the digest to store for it.
pub fn new_token() -> (String, [u8; 32]) {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let token = URL_SAFE_NO_PAD.encode(bytes);
    let digest = digest(&token);
    (token, digest)
}

/// The digest a token is stored and looked up as.
pub fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_fresh_url_safe_and_found_by_their_digest() {
        let (token, stored) = new_token();
        assert_eq!(token.len(), 43);
        assert!(
            token
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
        assert_eq!(digest(&token), stored);
        assert_ne!(new_token().0, token);
    }
}
