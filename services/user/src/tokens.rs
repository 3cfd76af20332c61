//! The single-use tokens mailed for a password reset or an email verification: issued,
//! checked and used as the digests [`shop_auth::opaque`] makes.

use chrono::{DateTime, Utc};
use diesel::{dsl::now, prelude::*};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use shop_auth::opaque::{digest, new_token};
use shop_contracts::UserId;

use crate::schema::{account_tokens, users};

/// What a mailed token is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    PasswordReset,
    EmailVerification,
}

impl Purpose {
    fn as_str(self) -> &'static str {
        match self {
            Purpose::PasswordReset => "password-reset",
            Purpose::EmailVerification => "email-verification",
        }
    }
}

/// Issues a token for `user_id`, valid until `expires_at`; earlier unused tokens of the same
/// purpose die, so only the newest mail's link works. Returns the token to mail.
pub async fn issue(
    conn: &mut AsyncPgConnection,
    user_id: UserId,
    purpose: Purpose,
    expires_at: DateTime<Utc>,
) -> QueryResult<String> {
    revoke(conn, user_id, purpose).await?;
    let (token, digest) = new_token();
    diesel::insert_into(account_tokens::table)
        .values((
            account_tokens::token_hash.eq(digest.as_slice()),
            account_tokens::user_id.eq(user_id),
            account_tokens::purpose.eq(purpose.as_str()),
            account_tokens::expires_at.eq(expires_at),
        ))
        .execute(conn)
        .await?;
    Ok(token)
}

/// Whether `token` is live (unknown, used and expired tokens are not), without using it: a
/// cheap check before work that should not be done for a dead token (hashing a password).
pub async fn is_live(
    conn: &mut AsyncPgConnection,
    token: &str,
    purpose: Purpose,
) -> QueryResult<bool> {
    let digest = digest(token);
    diesel::select(diesel::dsl::exists(
        account_tokens::table
            .filter(account_tokens::token_hash.eq(digest.as_slice()))
            .filter(account_tokens::purpose.eq(purpose.as_str()))
            .filter(account_tokens::used_at.is_null())
            .filter(account_tokens::expires_at.gt(now)),
    ))
    .get_result(conn)
    .await
}

/// Uses `token` if it is live, returning its account: one guarded statement, so of two
/// concurrent uses exactly one wins.
pub async fn consume(
    conn: &mut AsyncPgConnection,
    token: &str,
    purpose: Purpose,
) -> QueryResult<Option<UserId>> {
    let digest = digest(token);
    diesel::update(
        account_tokens::table
            .filter(account_tokens::token_hash.eq(digest.as_slice()))
            .filter(account_tokens::purpose.eq(purpose.as_str()))
            .filter(account_tokens::used_at.is_null())
            .filter(account_tokens::expires_at.gt(now)),
    )
    .set(account_tokens::used_at.eq(now))
    .returning(account_tokens::user_id)
    .get_result(conn)
    .await
    .optional()
}

/// Ends every unused token of `user_id` for `purpose`.
pub async fn revoke(
    conn: &mut AsyncPgConnection,
    user_id: UserId,
    purpose: Purpose,
) -> QueryResult<usize> {
    diesel::update(
        account_tokens::table
            .filter(account_tokens::user_id.eq(user_id))
            .filter(account_tokens::purpose.eq(purpose.as_str()))
            .filter(account_tokens::used_at.is_null()),
    )
    .set(account_tokens::used_at.eq(now))
    .execute(conn)
    .await
}

/// Marks the account's email verified (kept from the first time).
pub async fn mark_email_verified(conn: &mut AsyncPgConnection, user_id: UserId) -> QueryResult<()> {
    diesel::update(
        users::table
            .find(user_id)
            .filter(users::email_verified_at.is_null()),
    )
    .set(users::email_verified_at.eq(now))
    .execute(conn)
    .await?;
    Ok(())
}

/// Tokens that expired more than a day ago are deleted (the sweep of the mail worker).
pub async fn purge_expired(conn: &mut AsyncPgConnection) -> QueryResult<usize> {
    let cutoff = Utc::now() - chrono::Duration::days(1);
    diesel::delete(account_tokens::table.filter(account_tokens::expires_at.lt(cutoff)))
        .execute(conn)
        .await
}
