//! The second factor: TOTP (RFC 6238: SHA-1, six digits, 30 s steps, one step either side),
//! its secret sealed at rest, each code usable once.

use std::time::{SystemTime, UNIX_EPOCH};

use chacha20poly1305::{
    XChaCha20Poly1305, XNonce,
    aead::{Aead, KeyInit, Payload},
};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use rand::RngCore;
use serde::Serialize;
use sha2::{Digest, Sha256};
use shop_contracts::UserId;
use shop_http::Identity;
use totp_rs::{Builder, Totp};

use crate::{AppState, error::UserError, models::User, repo, schema::users};

const ISSUER: &str = "Shop";
const NONCE_BYTES: usize = 24;

/// Seals and opens second-factor secrets with the key derived from MFA_ENCRYPTION_KEY.
pub struct Sealer {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(..)")
    }
}

impl Sealer {
    /// From the configured key (at least 32 bytes of secret; hashed to the cipher's key).
    pub fn new(key: &str) -> Self {
        let key: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        Self {
            cipher: XChaCha20Poly1305::new(&key.into()),
        }
    }

    /// `nonce || ciphertext`, bound to the account: a sealed secret copied to another row
    /// does not open.
    fn seal(&self, user_id: UserId, secret: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_BYTES];
        rand::rng().fill_bytes(&mut nonce);
        let aad = user_id.uuid();
        let sealed = self
            .cipher
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: secret,
                    aad: aad.as_bytes(),
                },
            )
            .expect("sealing a short secret cannot fail");
        [nonce.as_slice(), &sealed].concat()
    }

    /// The secret, unless the key changed or the bytes were tampered with.
    fn open(&self, user_id: UserId, sealed: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() <= NONCE_BYTES {
            return None;
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_BYTES);
        let nonce: [u8; NONCE_BYTES] = nonce.try_into().ok()?;
        let aad = user_id.uuid();
        self.cipher
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: ciphertext,
                    aad: aad.as_bytes(),
                },
            )
            .ok()
    }
}

fn totp(secret: Vec<u8>, account: &str) -> Result<Totp, UserError> {
    Builder::new()
        .with_secret(secret)
        .with_account_name(account)
        .with_issuer(Some(ISSUER))
        .build()
        .map_err(|e| anyhow::anyhow!("building a TOTP: {e:?}").into())
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The step `code` is valid for at `time` (one step of skew either side), if any.
pub fn matching_step(secret: &[u8], code: &str, time: u64) -> Option<u64> {
    let totp = Builder::new()
        .with_secret(secret.to_vec())
        .build_noncompliant();
    totp.check(code.trim(), time)
}

/// An enrolment: what an authenticator app needs.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Enrolment {
    /// The secret, base32, for typing into an authenticator app.
    #[schema(example = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP")]
    pub secret: String,
    /// The `otpauth://` URI the QR code holds.
    pub otpauth_uri: String,
    /// The QR code of `otpauthUri`, as an SVG document, drawn by the service itself.
    pub qr_svg: String,
}

/// Starts an enrolment: a new secret, pending until a code from it is confirmed.
pub async fn enrol(state: &AppState, identity: &Identity) -> Result<Enrolment, UserError> {
    let mut conn = shop_db::conn(&state.pool).await?;
    let user = repo::find_user(&mut conn, identity.user_id)
        .await?
        .ok_or(UserError::NotFound)?;
    if user.mfa_secret.is_some() {
        return Err(UserError::MfaAlreadyEnabled);
    }
    let mut secret = vec![0u8; 20];
    rand::rng().fill_bytes(&mut secret);
    let sealed = state.sealer.seal(user.id, &secret);
    diesel::update(
        users::table
            .find(user.id)
            .filter(users::mfa_secret.is_null()),
    )
    .set(users::mfa_pending_secret.eq(&sealed))
    .execute(&mut conn)
    .await?;
    let totp = totp(secret, &user.email)?;
    let otpauth_uri = totp
        .to_url()
        .map_err(|e| anyhow::anyhow!("otpauth URI: {e:?}"))?;
    Ok(Enrolment {
        secret: totp.secret().to_base32(),
        qr_svg: qr_svg(&otpauth_uri)?,
        otpauth_uri,
    })
}

/// Confirms the pending enrolment with a code from it: sign-in needs a code from now on.
pub async fn confirm(state: &AppState, identity: &Identity, code: &str) -> Result<(), UserError> {
    let mut conn = shop_db::conn(&state.pool).await?;
    let user = repo::find_user(&mut conn, identity.user_id)
        .await?
        .ok_or(UserError::NotFound)?;
    if user.mfa_secret.is_some() {
        return Err(UserError::MfaAlreadyEnabled);
    }
    let Some(pending) = &user.mfa_pending_secret else {
        return Err(UserError::field(
            "code",
            "no enrolment in progress: POST /me/mfa first",
        ));
    };
    let secret = state
        .sealer
        .open(user.id, pending)
        .ok_or_else(|| UserError::field("code", "the enrolment expired: POST /me/mfa again"))?;
    let step = guarded_check(state, &user, &secret, code).await?;
    let enabled = diesel::update(
        users::table
            .find(user.id)
            .filter(users::mfa_pending_secret.eq(pending))
            .filter(users::mfa_secret.is_null()),
    )
    .set((
        users::mfa_secret.eq(pending),
        users::mfa_pending_secret.eq(None::<Vec<u8>>),
        users::mfa_last_step.eq(step),
    ))
    .execute(&mut conn)
    .await?;
    if enabled == 0 {
        return Err(UserError::field(
            "code",
            "the enrolment changed meanwhile: start again",
        ));
    }
    tracing::info!(user.id = %user.id, "second factor enabled");
    Ok(())
}

/// Removes the second factor, given a current code.
pub async fn remove(state: &AppState, identity: &Identity, code: &str) -> Result<(), UserError> {
    let mut conn = shop_db::conn(&state.pool).await?;
    let user = repo::find_user(&mut conn, identity.user_id)
        .await?
        .ok_or(UserError::NotFound)?;
    let Some(sealed) = &user.mfa_secret else {
        return Err(UserError::NotFound);
    };
    let secret = state.sealer.open(user.id, sealed).ok_or_else(unreadable)?;
    let step = guarded_check(state, &user, &secret, code).await?;
    // One guarded statement: the code's step claimed and the factor removed together, so a
    // code used meanwhile (a sign-in) cannot also remove it.
    let removed = diesel::update(
        users::table
            .find(user.id)
            .filter(users::mfa_secret.is_not_null())
            .filter(
                users::mfa_last_step
                    .is_null()
                    .or(users::mfa_last_step.lt(step)),
            ),
    )
    .set((
        users::mfa_secret.eq(None::<Vec<u8>>),
        users::mfa_pending_secret.eq(None::<Vec<u8>>),
        users::mfa_last_step.eq(None::<i64>),
    ))
    .execute(&mut conn)
    .await?;
    if removed == 0 {
        return Err(UserError::field("code", "this code was used already"));
    }
    tracing::info!(user.id = %user.id, "second factor removed");
    Ok(())
}

fn unreadable() -> UserError {
    anyhow::anyhow!("the second factor's secret does not open: MFA_ENCRYPTION_KEY changed?").into()
}

/// Checks a code for enrolment and removal, counted like password guesses per account.
async fn guarded_check(
    state: &AppState,
    user: &User,
    secret: &[u8],
    code: &str,
) -> Result<i64, UserError> {
    let key = user.id.to_string();
    let attempt = state
        .code_failures
        .attempt_within(&key, state.login_limit)
        .await
        .map_err(|retry_after| UserError::Throttled { retry_after })?;
    match matching_step(secret, code, now()) {
        Some(step) => {
            attempt.give_back().await;
            Ok(i64::try_from(step).unwrap_or(i64::MAX))
        }
        None => {
            attempt.keep();
            Err(UserError::field("code", "is not the current code"))
        }
    }
}

/// At sign-in: the step of a valid code for this account, not yet claimed. A wrong code is a
/// failed credential, also counted per account (whatever the client IP) like codes given at
/// enrolment and removal.
pub async fn check_login_code(state: &AppState, user: &User, code: &str) -> Result<i64, UserError> {
    let sealed = user
        .mfa_secret
        .as_ref()
        .ok_or(UserError::InvalidCredentials)?;
    let secret = state.sealer.open(user.id, sealed).ok_or_else(unreadable)?;
    guarded_check(state, user, &secret, code)
        .await
        .map_err(|error| match error {
            UserError::Validation(_) => UserError::InvalidCredentials,
            other => other,
        })
}

/// Records that `step`'s code was used; false when it (or a later one) was used already, so
/// of two concurrent uses of one code exactly one wins.
pub async fn claim_step(
    conn: &mut AsyncPgConnection,
    user_id: UserId,
    step: i64,
) -> Result<bool, UserError> {
    let claimed = diesel::update(
        users::table.find(user_id).filter(
            users::mfa_last_step
                .is_null()
                .or(users::mfa_last_step.lt(step)),
        ),
    )
    .set(users::mfa_last_step.eq(step))
    .execute(conn)
    .await?;
    Ok(claimed == 1)
}

/// The QR code of `text` as a small SVG document.
fn qr_svg(text: &str) -> Result<String, UserError> {
    use qrcodegen::{QrCode, QrCodeEcc};
    let qr = QrCode::encode_text(text, QrCodeEcc::Medium)
        .map_err(|e| anyhow::anyhow!("QR code: {e:?}"))?;
    let border = 4;
    let size = qr.size() + border * 2;
    let mut path = String::new();
    for y in 0..qr.size() {
        for x in 0..qr.size() {
            if qr.get_module(x, y) {
                path.push_str(&format!("M{},{}h1v1h-1z", x + border, y + border));
            }
        }
    }
    Ok(format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {size} {size}\" \
         shape-rendering=\"crispEdges\"><rect width=\"100%\" height=\"100%\" fill=\"#fff\"/>\
         <path d=\"{path}\" fill=\"#000\"/></svg>"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238's SHA-1 test secret (appendix B).
    const SECRET: &[u8] = b"12345678901234567890";

    fn code_at(time: u64) -> String {
        Builder::new()
            .with_secret(SECRET.to_vec())
            .with_digits(6)
            .build_noncompliant()
            .generate(time)
            .to_string()
    }

    #[test]
    fn a_code_is_valid_for_its_step_and_one_step_either_side_only() {
        let time = 1_111_111_109; // RFC 6238: 07081804 (8 digits) → 081804 at 6.
        assert_eq!(code_at(time), "081804");
        let step = time / 30;
        assert_eq!(matching_step(SECRET, "081804", time), Some(step));
        assert_eq!(matching_step(SECRET, "081804", time + 30), Some(step));
        assert_eq!(matching_step(SECRET, "081804", time - 30), Some(step));
        assert_eq!(matching_step(SECRET, "081804", time + 60), None);
        assert_eq!(matching_step(SECRET, "081804", time - 60), None);
        assert_eq!(matching_step(SECRET, "000000", time), None);
        assert_eq!(matching_step(SECRET, "not a code", time), None);
    }

    #[test]
    fn sealed_secrets_open_only_for_their_account_and_key() {
        let sealer = Sealer::new("a key of at least thirty-two bytes, for tests");
        let user = UserId::new();
        let sealed = sealer.seal(user, SECRET);
        assert_eq!(sealer.open(user, &sealed).as_deref(), Some(SECRET));
        assert_eq!(sealer.open(UserId::new(), &sealed), None);
        let other = Sealer::new("another key of at least thirty-two bytes, too");
        assert_eq!(other.open(user, &sealed), None);
        let mut tampered = sealed.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert_eq!(sealer.open(user, &tampered), None);
        assert_ne!(
            sealer.seal(user, SECRET),
            sealed,
            "a fresh nonce every time"
        );
    }

    #[test]
    fn the_qr_code_is_an_svg_drawing() {
        let svg = qr_svg("otpauth://totp/Shop:ann%40example.com?secret=ABC&issuer=Shop")
            .expect("a short URI fits a QR code");
        assert!(svg.starts_with("<svg "));
        assert!(svg.contains("<path d=\"M"));
    }
}
