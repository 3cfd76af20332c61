//! HS256 access tokens with the claims DESIGN.md lists.

use std::time::Duration;

use chrono::Utc;
use jsonwebtoken::{
    Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, decode_header, encode,
};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use shop_contracts::{Role, SessionId, UserId};
use shop_settings::Settings;
use uuid::Uuid;

const ACCESS: &str = "access";
/// Clock skew tolerated between the user service and the gateway.
const LEEWAY_SECS: u64 = 5;

/// The claims of an access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// The user id.
    pub sub: UserId,
    /// The user's role when the token was issued.
    pub role: Role,
    pub iss: String,
    pub aud: String,
    /// Always `access`; refresh tokens are opaque and never JWTs.
    pub typ: String,
    /// The session this token belongs to (revoking the session revokes the token).
    pub sid: SessionId,
    /// Unique token id.
    pub jti: Uuid,
    pub iat: i64,
    pub exp: i64,
    /// How the session was signed in (RFC 8176): `pwd`, plus `otp` with a one-time code.
    #[serde(default)]
    pub amr: Vec<String>,
    /// Whether the account's email was verified when the token was signed.
    #[serde(default)]
    pub email_verified: bool,
}

impl AccessClaims {
    /// Whether the session was signed in with a second factor.
    pub fn second_factor(&self) -> bool {
        self.amr.iter().any(|m| m == "otp")
    }
}

/// What a token says of its session's sign-in and of its account besides who and which role.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SignIn {
    /// A one-time code was given with the password.
    pub second_factor: bool,
    /// The account's email is verified.
    pub email_verified: bool,
}

/// Why a token was refused. Callers answer 401 for all of them alike.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("token expired")]
    Expired,
    #[error("token signed with an unknown key")]
    UnknownKey,
    #[error("token is not an access token")]
    WrongType,
    #[error("token invalid: {0}")]
    Invalid(String),
}

/// A freshly signed token and its lifetime.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub token: String,
    pub claims: AccessClaims,
    pub expires_in: Duration,
}

struct Key {
    kid: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
}

/// Signing and verification keys; the current key signs, current and previous verify.
pub struct JwtKeys {
    current: Key,
    previous: Option<Key>,
    issuer: String,
    audience: String,
    lifetime: Duration,
    validation: Validation,
}

impl std::fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtKeys")
            .field("kid", &self.current.kid)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

fn key(kid: &str, secret: &str) -> Key {
    Key {
        kid: kid.to_owned(),
        encoding: EncodingKey::from_secret(secret.as_bytes()),
        decoding: DecodingKey::from_secret(secret.as_bytes()),
    }
}

impl JwtKeys {
    /// From the `JWT_*` settings (validated at load: secrets of at least 32 bytes).
    pub fn from_settings(settings: &Settings) -> Self {
        let previous = match (&settings.jwt_previous_secret, &settings.jwt_previous_key_id) {
            (Some(secret), Some(kid)) => Some(key(kid, secret.expose_secret())),
            _ => None,
        };
        // Pinned to HS256: `alg: none` and every other algorithm are refused.
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[&settings.jwt_issuer]);
        validation.set_audience(&[&settings.jwt_audience]);
        validation.set_required_spec_claims(&["exp", "iat", "sub", "iss", "aud"]);
        validation.leeway = LEEWAY_SECS;
        Self {
            current: key(&settings.jwt_key_id, settings.jwt_secret()),
            previous,
            issuer: settings.jwt_issuer.clone(),
            audience: settings.jwt_audience.clone(),
            lifetime: settings.jwt_expires_in,
            validation,
        }
    }

    /// Signs an access token for a user's session.
    pub fn issue(
        &self,
        user_id: UserId,
        role: Role,
        session_id: SessionId,
        sign_in: SignIn,
    ) -> Result<IssuedToken, TokenError> {
        let mut amr = vec!["pwd".to_owned()];
        if sign_in.second_factor {
            amr.push("otp".to_owned());
        }
        let now = Utc::now().timestamp();
        let lifetime = i64::try_from(self.lifetime.as_secs()).unwrap_or(i64::MAX);
        let claims = AccessClaims {
            sub: user_id,
            role,
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            typ: ACCESS.to_owned(),
            sid: session_id,
            jti: Uuid::now_v7(),
            iat: now,
            exp: now.saturating_add(lifetime),
            amr,
            email_verified: sign_in.email_verified,
        };
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(self.current.kid.clone());
        let token = encode(&header, &claims, &self.current.encoding)
            .map_err(|e| TokenError::Invalid(e.to_string()))?;
        Ok(IssuedToken {
            token,
            claims,
            expires_in: self.lifetime,
        })
    }

    /// Verifies signature, algorithm, `iss`, `aud`, expiry and `typ`.
    pub fn verify(&self, token: &str) -> Result<AccessClaims, TokenError> {
        let header = decode_header(token).map_err(|e| TokenError::Invalid(e.to_string()))?;
        let key = match header.kid.as_deref() {
            Some(kid) if kid == self.current.kid => &self.current,
            Some(kid) => self
                .previous
                .as_ref()
                .filter(|k| k.kid == kid)
                .ok_or(TokenError::UnknownKey)?,
            None => return Err(TokenError::UnknownKey),
        };
        let data =
            decode::<AccessClaims>(token, &key.decoding, &self.validation).map_err(|e| match e
                .kind()
            {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid(e.to_string()),
            })?;
        if data.claims.typ != ACCESS {
            return Err(TokenError::WrongType);
        }
        Ok(data.claims)
    }

    /// Access token lifetime.
    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }
}

#[cfg(test)]
mod tests {
    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};

    use super::*;

    fn b64(data: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(data)
    }

    fn settings() -> Settings {
        Settings::default()
    }

    #[test]
    fn the_keys_show_their_id_and_audience_but_never_a_secret() {
        let keys = JwtKeys::from_settings(&settings());
        let shown = format!("{keys:?}");
        assert!(
            shown.starts_with("JwtKeys") && shown.contains("\"k1\"") && shown.contains("shop-api"),
            "{shown}"
        );
        assert!(!shown.contains(settings().jwt_secret()), "{shown}");
    }

    #[test]
    fn the_lifetime_told_to_clients_is_the_configured_one() {
        let settings = Settings {
            jwt_expires_in: Duration::from_secs(120),
            ..settings()
        };
        assert_eq!(
            JwtKeys::from_settings(&settings).lifetime(),
            Duration::from_secs(120)
        );
    }

    fn keys() -> JwtKeys {
        JwtKeys::from_settings(&settings())
    }

    #[test]
    fn issued_tokens_verify_with_all_claims() {
        let keys = keys();
        let (user, session) = (UserId::new(), SessionId::new());
        let issued = keys
            .issue(
                user,
                Role::Admin,
                session,
                SignIn {
                    second_factor: true,
                    email_verified: true,
                },
            )
            .expect("signs");
        let claims = keys.verify(&issued.token).expect("verifies");
        assert_eq!(claims.sub, user);
        assert_eq!(claims.sid, session);
        assert_eq!(claims.role, Role::Admin);
        assert_eq!(claims.typ, "access");
        assert_eq!(claims.iss, "shop");
        assert_eq!(claims.aud, "shop-api");
        assert_eq!(claims.exp - claims.iat, 900);
        assert_eq!(claims.amr, ["pwd", "otp"]);
        assert!(claims.second_factor());
        assert!(claims.email_verified);
    }

    #[test]
    fn tokens_from_another_key_or_tampered_are_refused() {
        let keys = keys();
        let mut other = settings();
        other.jwt_secret = Some("another-secret-that-is-long-enough-1234".into());
        let foreign = JwtKeys::from_settings(&other)
            .issue(
                UserId::new(),
                Role::User,
                SessionId::new(),
                SignIn::default(),
            )
            .expect("signs");
        assert!(matches!(
            keys.verify(&foreign.token),
            Err(TokenError::Invalid(_))
        ));

        let issued = keys
            .issue(
                UserId::new(),
                Role::User,
                SessionId::new(),
                SignIn::default(),
            )
            .expect("signs");
        let parts: Vec<&str> = issued.token.split('.').collect();
        let mut claims = issued.claims.clone();
        claims.role = Role::Admin;
        let body = b64(&serde_json::to_vec(&claims).expect("serialises"));
        let tampered = format!("{}.{}.{}", parts[0], body, parts[2]);
        assert!(keys.verify(&tampered).is_err());
    }

    #[test]
    fn alg_none_and_other_algorithms_are_refused() {
        let keys = keys();
        let issued = keys
            .issue(
                UserId::new(),
                Role::Admin,
                SessionId::new(),
                SignIn::default(),
            )
            .expect("signs");
        let body = issued.token.split('.').nth(1).expect("body");
        for header in [
            r#"{"alg":"none","typ":"JWT","kid":"k1"}"#,
            r#"{"alg":"HS512","typ":"JWT","kid":"k1"}"#,
            r#"{"alg":"RS256","typ":"JWT","kid":"k1"}"#,
        ] {
            let forged = format!("{}.{}.", b64(header.as_bytes()), body);
            assert!(keys.verify(&forged).is_err(), "{header} accepted");
        }
    }

    #[test]
    fn expired_wrong_audience_issuer_and_type_are_refused() {
        let keys = keys();
        let now = Utc::now().timestamp();
        let base = AccessClaims {
            sub: UserId::new(),
            role: Role::User,
            iss: "shop".into(),
            aud: "shop-api".into(),
            typ: "access".into(),
            sid: SessionId::new(),
            jti: Uuid::now_v7(),
            iat: now - 3600,
            exp: now + 600,
            amr: vec!["pwd".into()],
            email_verified: false,
        };
        let sign = |claims: &AccessClaims| {
            let mut header = Header::new(Algorithm::HS256);
            header.kid = Some("k1".into());
            encode(&header, claims, &keys.current.encoding).expect("signs")
        };
        assert!(keys.verify(&sign(&base)).is_ok());
        let expired = AccessClaims {
            exp: now - 60,
            ..base.clone()
        };
        assert_eq!(keys.verify(&sign(&expired)), Err(TokenError::Expired));
        let audience = AccessClaims {
            aud: "other".into(),
            ..base.clone()
        };
        assert!(keys.verify(&sign(&audience)).is_err());
        let issuer = AccessClaims {
            iss: "other".into(),
            ..base.clone()
        };
        assert!(keys.verify(&sign(&issuer)).is_err());
        let refresh = AccessClaims {
            typ: "refresh".into(),
            ..base.clone()
        };
        assert_eq!(keys.verify(&sign(&refresh)), Err(TokenError::WrongType));
        assert!(keys.verify("not-a-jwt").is_err());
    }

    #[test]
    fn previous_key_verifies_during_rotation() {
        let old = keys();
        let token = old
            .issue(
                UserId::new(),
                Role::User,
                SessionId::new(),
                SignIn::default(),
            )
            .expect("signs")
            .token;
        let mut rotated = settings();
        rotated.jwt_secret = Some("the-new-secret-which-is-long-enough-xyz".into());
        rotated.jwt_key_id = "k2".into();
        rotated.jwt_previous_secret = Some(shop_settings::DEV_JWT_SECRET.into());
        rotated.jwt_previous_key_id = Some("k1".into());
        let new = JwtKeys::from_settings(&rotated);
        assert!(new.verify(&token).is_ok());
        rotated.jwt_previous_secret = None;
        rotated.jwt_previous_key_id = None;
        assert_eq!(
            JwtKeys::from_settings(&rotated).verify(&token),
            Err(TokenError::UnknownKey)
        );
    }
}
