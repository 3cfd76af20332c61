//! Password reset and email verification: single-use tokens, mailed through the outbox.

use std::net::IpAddr;

use chrono::Utc;
use diesel_async::AsyncConnection;
use shop_contracts::UserId;
use shop_http::Identity;

use crate::{
    AppState,
    error::UserError,
    mail::{self, Mail},
    models::RevokeReason,
    repo,
    sessions::counter_key,
    tokens::{self, Purpose},
    validate,
};

/// Counts one request against a limit; over it, the error to answer.
async fn within(
    counter: &shop_redis::WindowCounter,
    key: &str,
    limit: u32,
) -> Result<(), UserError> {
    let count = counter.hit(key).await;
    if count.hits > u64::from(limit) {
        return Err(UserError::MailLimited {
            retry_after: count.resets_in,
        });
    }
    Ok(())
}

/// `POST /password-reset`: mails a reset link if the email names a live account. The answer is
/// the same, and as quick, either way: the limits are counted per client IP and per email
/// whether or not the account exists, and the lookup and the mail happen after the answer.
pub async fn request_reset(
    state: &AppState,
    email: &str,
    client_ip: Option<IpAddr>,
) -> Result<(), UserError> {
    let email = validate::normalise_email(email);
    let ip = client_ip.map(|ip| ip.to_string()).unwrap_or_default();
    within(
        &state.limits.reset_by_ip,
        &counter_key(&ip),
        state.limits.per_ip,
    )
    .await?;
    within(
        &state.limits.reset_by_email,
        &counter_key(&email),
        state.limits.per_email,
    )
    .await?;
    let state = state.clone();
    tokio::spawn(async move {
        if let Err(error) = mail_reset(&state, &email).await {
            tracing::warn!(%error, "password reset not mailed; the owner can ask again");
        }
    });
    Ok(())
}

async fn mail_reset(state: &AppState, email: &str) -> Result<(), UserError> {
    let mut conn = shop_db::conn(&state.pool).await?;
    let Some(user) = repo::find_user_by_email(&mut conn, email).await? else {
        return Ok(());
    };
    if user.disabled {
        return Ok(());
    }
    let expires_at = Utc::now() + state.limits.reset_ttl;
    let written = conn
        .transaction::<_, UserError, _>(async |conn| {
            let token = tokens::issue(conn, user.id, Purpose::PasswordReset, expires_at).await?;
            let message = mail::queue(user.id, Mail::PasswordReset { token });
            Ok(shop_outbox::enqueue(conn, &[message]).await?)
        })
        .await?;
    state.relay.wake(written);
    tracing::info!(user.id = %user.id, "password reset mailed");
    Ok(())
}

/// `POST /password-reset/confirm`: sets the password named by a live reset token, ends every
/// session of the account, and mails a notice. The token dies, and so do its siblings.
pub async fn confirm_reset(
    state: &AppState,
    token: &str,
    new_password: String,
) -> Result<(), UserError> {
    let mut errors = Vec::new();
    validate::password("newPassword", &new_password, &mut errors);
    if !errors.is_empty() {
        return Err(UserError::Validation(errors));
    }
    let mut conn = shop_db::conn(&state.pool).await?;
    // No bcrypt work for a dead token.
    if !tokens::is_live(&mut conn, token, Purpose::PasswordReset).await? {
        return Err(UserError::InvalidToken);
    }
    drop(conn);
    let hash = state.passwords.hash(new_password).await?;
    let mut conn = shop_db::conn(&state.pool).await?;
    let (user_id, revoked, written) = conn
        .transaction::<_, UserError, _>(async |conn| {
            let user_id = tokens::consume(conn, token, Purpose::PasswordReset)
                .await?
                .ok_or(UserError::InvalidToken)?;
            repo::update_password_hash(conn, user_id, &hash).await?;
            // The link came to the address: it is the owner's.
            tokens::mark_email_verified(conn, user_id).await?;
            tokens::revoke(conn, user_id, Purpose::PasswordReset).await?;
            let revoked =
                repo::revoke_user_sessions(conn, user_id, None, RevokeReason::PasswordReset)
                    .await?;
            let message = mail::queue(user_id, Mail::PasswordChanged);
            let written = shop_outbox::enqueue(conn, &[message]).await?;
            Ok((user_id, revoked, written))
        })
        .await?;
    state.denylist.deny_sessions(&revoked).await;
    state.relay.wake(written);
    tracing::info!(user.id = %user_id, sessions.revoked = revoked.len(), "password reset");
    Ok(())
}

/// Queues the verification mail of a new or unverified account, in the caller's transaction.
pub async fn queue_verification(
    conn: &mut diesel_async::AsyncPgConnection,
    state: &AppState,
    user_id: UserId,
) -> Result<shop_outbox::Written, UserError> {
    let expires_at = Utc::now() + state.limits.verification_ttl;
    let token = tokens::issue(conn, user_id, Purpose::EmailVerification, expires_at).await?;
    let message = mail::queue(user_id, Mail::VerifyEmail { token });
    Ok(shop_outbox::enqueue(conn, &[message]).await?)
}

/// `POST /me/email-verification`: mails a new verification link, unless the address is
/// verified already (then nothing is sent). Limited per account.
pub async fn resend_verification(state: &AppState, identity: &Identity) -> Result<(), UserError> {
    let mut conn = shop_db::conn(&state.pool).await?;
    let user = repo::find_user(&mut conn, identity.user_id)
        .await?
        .ok_or(UserError::NotFound)?;
    if user.email_verified_at.is_some() {
        return Ok(());
    }
    within(
        &state.limits.verification_by_user,
        &user.id.to_string(),
        state.limits.per_email,
    )
    .await?;
    let written = conn
        .transaction::<_, UserError, _>(async |conn| queue_verification(conn, state, user.id).await)
        .await?;
    state.relay.wake(written);
    Ok(())
}

/// `POST /email-verification/confirm`: marks the token's account verified; the token dies.
pub async fn confirm_email(state: &AppState, token: &str) -> Result<(), UserError> {
    let mut conn = shop_db::conn(&state.pool).await?;
    let user_id = conn
        .transaction::<_, UserError, _>(async |conn| {
            let user_id = tokens::consume(conn, token, Purpose::EmailVerification)
                .await?
                .ok_or(UserError::InvalidToken)?;
            tokens::mark_email_verified(conn, user_id).await?;
            Ok(user_id)
        })
        .await?;
    tracing::info!(user.id = %user_id, "email verified");
    Ok(())
}

/// Deletes tokens a day past their expiry, and the ids of order events mailed a month ago (no
/// stream keeps an entry that long); run hourly.
pub async fn sweep(pool: &shop_db::Pool) {
    let swept = async {
        let mut conn = shop_db::conn(pool).await?;
        let tokens = tokens::purge_expired(&mut conn).await?;
        let events = mail::purge_mailed_events(&mut conn).await?;
        Ok::<_, UserError>((tokens, events))
    };
    match swept.await {
        Ok((tokens, events)) => {
            tracing::debug!(tokens, events, "swept old account tokens and mailed events");
        }
        Err(error) => tracing::warn!(%error, "account token sweep failed; next hour"),
    }
}
