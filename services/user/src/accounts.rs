//! Registration, profiles, password changes and administration of accounts.

use diesel_async::AsyncConnection;
use shop_contracts::{Role, UserId};
use shop_http::{FieldError, Identity};

use crate::{
    AppState,
    error::UserError,
    mail::{self, Mail},
    models::{DbRole, NewUser, RevokeReason, User, UserAdminChangeset},
    recovery, repo, validate,
};

/// Creates an account with role `user`.
pub async fn register(
    state: &AppState,
    email: &str,
    password: String,
    name: Option<&str>,
) -> Result<User, UserError> {
    let email = validate::normalise_email(email);
    let mut errors = Vec::new();
    validate::email(&email, &mut errors);
    validate::password("password", &password, &mut errors);
    let name = validate::name(name, &mut errors);
    if !errors.is_empty() {
        return Err(UserError::Validation(errors));
    }
    let password_hash = state.passwords.hash(password).await?;
    let new = NewUser {
        id: UserId::new(),
        email,
        password_hash,
        name,
        role: DbRole(Role::User),
    };
    let mut conn = shop_db::conn(&state.pool).await?;
    // The account, its verification token and its mail commit together.
    let (user, written) = conn
        .transaction::<_, UserError, _>(async |conn| {
            let user = repo::insert_user(conn, &new).await?;
            let written = recovery::queue_verification(conn, state, user.id).await?;
            Ok((user, written))
        })
        .await?;
    state.relay.wake(written);
    tracing::info!(user.id = %user.id, "registered");
    Ok(user)
}

/// Creates an administrator unless the email exists (start-up, idempotent).
pub async fn ensure_admin(
    state: &AppState,
    email: &str,
    password: String,
) -> Result<(), UserError> {
    let email = validate::normalise_email(email);
    let mut conn = shop_db::conn(&state.pool).await?;
    if repo::find_user_by_email(&mut conn, &email).await?.is_some() {
        return Ok(());
    }
    drop(conn);
    let new = NewUser {
        id: UserId::new(),
        email,
        password_hash: state.passwords.hash(password).await?,
        name: Some("Administrator".into()),
        role: DbRole(Role::Admin),
    };
    let mut conn = shop_db::conn(&state.pool).await?;
    if repo::insert_user_if_missing(&mut conn, &new).await? {
        tracing::info!(user.id = %new.id, "created the first administrator");
    }
    Ok(())
}

/// The caller's own account.
pub async fn me(state: &AppState, identity: &Identity) -> Result<User, UserError> {
    let mut conn = shop_db::conn(&state.pool).await?;
    repo::find_user(&mut conn, identity.user_id)
        .await?
        .ok_or(UserError::NotFound)
}

/// Changes the caller's display name (`None` clears it).
pub async fn update_me(
    state: &AppState,
    identity: &Identity,
    name: Option<&str>,
) -> Result<User, UserError> {
    let mut errors = Vec::new();
    let name = validate::name(name, &mut errors);
    if !errors.is_empty() {
        return Err(UserError::Validation(errors));
    }
    let mut conn = shop_db::conn(&state.pool).await?;
    Ok(repo::update_name(&mut conn, identity.user_id, name.as_deref()).await?)
}

/// Changes the caller's password after checking the current one, and ends every other session.
pub async fn change_password(
    state: &AppState,
    identity: &Identity,
    current: String,
    new: String,
) -> Result<(), UserError> {
    let mut errors = Vec::new();
    validate::password("newPassword", &new, &mut errors);
    if !errors.is_empty() {
        return Err(UserError::Validation(errors));
    }
    // A stolen access token must not become a fast oracle for the password.
    // Counted first, so concurrent guesses cannot overshoot; kept only for a wrong password
    // (as at login: busy, a database error or a cancelled request is no guess).
    let key = identity.user_id.to_string();
    let attempt = state
        .password_failures
        .attempt_within(&key, state.login_limit)
        .await
        .map_err(|retry_after| UserError::Throttled { retry_after })?;
    let user = me(state, identity).await?;
    match state
        .passwords
        .verify(current, Some(user.password_hash))
        .await
    {
        Ok(true) => {
            attempt.keep();
            state.password_failures.reset(&key).await;
        }
        Ok(false) => {
            attempt.keep();
            return Err(UserError::field(
                "currentPassword",
                "is not the account's current password",
            ));
        }
        Err(error) => {
            attempt.give_back().await;
            return Err(error);
        }
    }
    let hash = state.passwords.hash(new).await?;
    let mut conn = shop_db::conn(&state.pool).await?;
    let (revoked, written) = conn
        .transaction::<_, UserError, _>(async |conn| {
            repo::update_password_hash(conn, user.id, &hash).await?;
            let revoked = repo::revoke_user_sessions(
                conn,
                user.id,
                Some(identity.session_id),
                RevokeReason::PasswordChanged,
            )
            .await?;
            let notice = mail::queue(user.id, Mail::PasswordChanged);
            Ok((revoked, shop_outbox::enqueue(conn, &[notice]).await?))
        })
        .await?;
    state.denylist.deny_sessions(&revoked).await;
    state.relay.wake(written);
    tracing::info!(user.id = %user.id, sessions.revoked = revoked.len(), "password changed");
    Ok(())
}

/// A page of accounts, newest first.
pub async fn list(state: &AppState, page: u32, limit: u32) -> Result<(Vec<User>, u64), UserError> {
    let mut conn = shop_db::conn(&state.pool).await?;
    let offset = i64::from(page.saturating_sub(1)) * i64::from(limit);
    let (users, total) = repo::list_users(&mut conn, offset, i64::from(limit)).await?;
    Ok((users, u64::try_from(total).unwrap_or_default()))
}

/// An administrator changes a role or disables an account; the account's sessions end.
pub async fn update_by_admin(
    state: &AppState,
    id: UserId,
    role: Option<Role>,
    disabled: Option<bool>,
) -> Result<User, UserError> {
    if role.is_none() && disabled.is_none() {
        return Err(UserError::Validation(vec![FieldError::new(
            "body",
            "give role, disabled or both",
        )]));
    }
    let changes = UserAdminChangeset {
        role: role.map(DbRole),
        disabled,
    };
    let mut conn = shop_db::conn(&state.pool).await?;
    let (user, revoked) = conn
        .transaction::<_, UserError, _>(async |conn| {
            let user = repo::update_by_admin(conn, id, &changes)
                .await?
                .ok_or(UserError::NotFound)?;
            let revoked =
                repo::revoke_user_sessions(conn, id, None, RevokeReason::AccountChanged).await?;
            Ok((user, revoked))
        })
        .await?;
    state.denylist.deny_sessions(&revoked).await;
    tracing::info!(
        user.id = %id,
        ?role,
        ?disabled,
        sessions.revoked = revoked.len(),
        "account changed by an administrator"
    );
    Ok(user)
}
