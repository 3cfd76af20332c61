//! Logins, refresh-token rotation with reuse detection, logout and session status.

use std::{net::IpAddr, time::Duration};

use chrono::Utc;
use diesel_async::AsyncConnection;
use sha2::{Digest, Sha256};
use shop_auth::{SignIn, opaque};
use shop_contracts::{SessionId, SessionStatus, TokenResponse};
use shop_http::Identity;

use crate::{
    AppState,
    error::UserError,
    mfa,
    models::{RevokeReason, User},
    repo,
    validate::{self, normalise_email},
};

/// A Redis counter key for `text` (an email, an address): hashed, so no address sits in Redis.
pub(crate) fn counter_key(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// The failed-login counter key: client IP and email.
fn throttle_key(ip: Option<IpAddr>, email: &str) -> String {
    let ip = ip.map(|ip| ip.to_string()).unwrap_or_default();
    counter_key(&format!("{ip}|{email}"))
}

fn token_response(
    state: &AppState,
    user: &User,
    session_id: SessionId,
    second_factor: bool,
    refresh_token: String,
) -> Result<TokenResponse, UserError> {
    let sign_in = SignIn {
        second_factor,
        email_verified: user.email_verified_at.is_some(),
    };
    let issued = state
        .keys
        .issue(user.id, user.role(), session_id, sign_in)
        .map_err(|e| anyhow::anyhow!("signing an access token: {e}"))?;
    Ok(TokenResponse {
        access_token: issued.token,
        token_type: "Bearer".into(),
        expires_in: issued.expires_in.as_secs(),
        refresh_token,
    })
}

/// Verifies credentials and opens a session. Attempts per (client IP, email) are counted
/// before the password is checked, so concurrent guesses cannot overshoot the limit; only a
/// wrong guess keeps its count, a success clears it, and an attempt that ends any other way
/// (refused by the limit, bcrypt busy, a database error, the client gone) is given back, so a
/// burst of logins cannot lock out the owner who typed the right password. Every failure
/// looks the same to the client. An account with a second factor also needs `otp`: without
/// it the answer is `MfaRequired` (the password was right: no guess is counted); a wrong or
/// already used code is a wrong guess.
pub async fn login(
    state: &AppState,
    email: &str,
    password: String,
    otp: Option<&str>,
    client_ip: Option<IpAddr>,
) -> Result<TokenResponse, UserError> {
    let email = normalise_email(email);
    let key = throttle_key(client_ip, &email);
    let attempt = state
        .login_failures
        .attempt_within(&key, state.login_limit)
        .await
        .map_err(|retry_after| UserError::Throttled { retry_after })?;
    match open_session(state, &email, password, otp).await {
        Ok(tokens) => {
            attempt.keep();
            state.login_failures.reset(&key).await;
            Ok(tokens)
        }
        Err(UserError::InvalidCredentials) => {
            attempt.keep();
            Err(UserError::InvalidCredentials)
        }
        Err(other) => {
            attempt.give_back().await;
            Err(other)
        }
    }
}

/// The credentials checked and a session opened: `InvalidCredentials` for a wrong guess.
async fn open_session(
    state: &AppState,
    email: &str,
    password: String,
    otp: Option<&str>,
) -> Result<TokenResponse, UserError> {
    // An address that cannot exist is never looked up, but costs the same time.
    let mut problems = Vec::new();
    validate::email(email, &mut problems);
    let user = if problems.is_empty() {
        let mut conn = shop_db::conn(&state.pool).await?;
        repo::find_user_by_email(&mut conn, email).await?
    } else {
        None
    };
    let hash = user.as_ref().map(|u| u.password_hash.clone());
    let matched = state.passwords.verify(password, hash).await?;
    let user = match user {
        Some(user) if matched && !user.disabled => user,
        _ => return Err(UserError::InvalidCredentials),
    };
    let step = match (&user.mfa_secret, otp) {
        (None, _) => None,
        (Some(_), None) => return Err(UserError::MfaRequired),
        (Some(_), Some(code)) => Some(mfa::check_login_code(state, &user, code).await?),
    };

    let session_id = SessionId::new();
    let (refresh_token, refresh_digest) = opaque::new_token();
    let expires_at = Utc::now() + state.refresh_lifetime;
    let mut conn = shop_db::conn(&state.pool).await?;
    conn.transaction::<_, UserError, _>(async |conn| {
        // A code is usable once: of two sign-ins with it, one wins. Claimed first, so the
        // row lock it takes is the only lock this transaction asks for on the account: two
        // sign-ins that share-locked the row first would deadlock upgrading it.
        if let Some(step) = step
            && !mfa::claim_step(conn, user.id, step).await?
        {
            return Err(UserError::InvalidCredentials);
        }
        // bcrypt took a while: a password change or a disable that committed meanwhile
        // refuses this login, and one still to come waits for this transaction, so its
        // revocation sees the new session.
        match repo::lock_user_credentials(conn, user.id).await? {
            Some((hash, disabled)) if hash == user.password_hash && !disabled => {}
            _ => return Err(UserError::InvalidCredentials),
        }
        repo::insert_session(conn, session_id, user.id, expires_at, step.is_some()).await?;
        repo::insert_refresh_token(conn, &refresh_digest, session_id).await?;
        Ok(())
    })
    .await?;
    tracing::info!(
        user.id = %user.id,
        session.id = %session_id,
        second_factor = step.is_some(),
        "logged in"
    );
    token_response(state, &user, session_id, step.is_some(), refresh_token)
}

enum Rotation {
    Rotated {
        user: User,
        session_id: SessionId,
        second_factor: bool,
    },
    Reused {
        session_id: SessionId,
    },
}

/// Exchanges a refresh token for a new pair. The old token dies; presenting a token that was
/// already exchanged revokes its whole session (it was stolen, or the client is confused).
pub async fn refresh(state: &AppState, refresh_token: &str) -> Result<TokenResponse, UserError> {
    let presented = opaque::digest(refresh_token);
    let (next_token, next_digest) = opaque::new_token();
    let mut conn = shop_db::conn(&state.pool).await?;
    let rotation = conn
        .transaction::<_, UserError, _>(async |conn| {
            let Some(session_id) = repo::consume_refresh_token(conn, &presented).await? else {
                return match repo::refresh_token_session(conn, &presented).await? {
                    Some(session_id) => {
                        repo::revoke_session(conn, session_id, RevokeReason::RefreshTokenReused)
                            .await?;
                        Ok(Rotation::Reused { session_id })
                    }
                    None => Err(UserError::InvalidCredentials),
                };
            };
            let session = repo::find_session(conn, session_id)
                .await?
                .filter(|s| s.is_active(Utc::now()))
                .ok_or(UserError::InvalidCredentials)?;
            let user = repo::find_user(conn, session.user_id)
                .await?
                .filter(|u| !u.disabled)
                .ok_or(UserError::InvalidCredentials)?;
            repo::insert_refresh_token(conn, &next_digest, session_id).await?;
            Ok(Rotation::Rotated {
                user,
                session_id,
                second_factor: session.second_factor,
            })
        })
        .await?;
    match rotation {
        Rotation::Rotated {
            user,
            session_id,
            second_factor,
        } => token_response(state, &user, session_id, second_factor, next_token),
        Rotation::Reused { session_id } => {
            tracing::warn!(session.id = %session_id, "refresh token reused; session revoked");
            state.denylist.deny_sessions(&[session_id]).await;
            Err(UserError::InvalidCredentials)
        }
    }
}

/// Ends the caller's session: its refresh token dies and its access tokens are denied.
pub async fn logout(state: &AppState, identity: &Identity) -> Result<(), UserError> {
    let mut conn = shop_db::conn(&state.pool).await?;
    let session = repo::find_session(&mut conn, identity.session_id).await?;
    if session.is_some_and(|s| s.user_id == identity.user_id) {
        repo::revoke_session(&mut conn, identity.session_id, RevokeReason::Logout).await?;
    }
    drop(conn);
    state.denylist.deny_sessions(&[identity.session_id]).await;
    Ok(())
}

/// Whether a session is live, for the gateway when Redis is away.
pub async fn status(state: &AppState, session_id: SessionId) -> Result<SessionStatus, UserError> {
    let mut conn = shop_db::conn(&state.pool).await?;
    let session = repo::find_session(&mut conn, session_id)
        .await?
        .ok_or(UserError::NotFound)?;
    Ok(SessionStatus {
        id: session.id,
        user_id: session.user_id,
        active: session.is_active(Utc::now()),
    })
}

/// Re-publishes recent revocations to Redis until cancelled.
pub async fn republish_denylist(state: AppState, cancel: tokio_util::sync::CancellationToken) {
    let period = Duration::from_secs(5);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(period) => {}
        }
        let since = Utc::now() - state.denylist.ttl();
        let revoked = match shop_db::conn(&state.pool).await {
            Ok(mut conn) => repo::sessions_revoked_since(&mut conn, since)
                .await
                .map_err(|e| e.to_string()),
            Err(error) => Err(error.to_string()),
        };
        match revoked {
            Ok(revoked) => {
                if let Err(error) = state.denylist.republish(&revoked).await {
                    tracing::debug!(%error, "denylist republish skipped: redis away");
                }
            }
            Err(error) => tracing::warn!(%error, "denylist republish skipped: postgres away"),
        }
    }
}
