//! Queries. Each takes a connection, so callers compose them inside one transaction.

use chrono::{DateTime, Utc};
use diesel::{dsl::now, prelude::*};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use shop_contracts::{SessionId, UserId};
use uuid::Uuid;

use crate::{
    models::{NewUser, RevokeReason, Session, User, UserAdminChangeset},
    schema::{refresh_tokens, sessions, users},
};

pub async fn insert_user(conn: &mut AsyncPgConnection, new: &NewUser) -> QueryResult<User> {
    diesel::insert_into(users::table)
        .values(new)
        .returning(User::as_returning())
        .get_result(conn)
        .await
}

/// Inserts unless the email exists; returns whether a row was created.
pub async fn insert_user_if_missing(
    conn: &mut AsyncPgConnection,
    new: &NewUser,
) -> QueryResult<bool> {
    let inserted = diesel::insert_into(users::table)
        .values(new)
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    Ok(inserted == 1)
}

pub async fn find_user(conn: &mut AsyncPgConnection, id: UserId) -> QueryResult<Option<User>> {
    users::table
        .find(id)
        .select(User::as_select())
        .first(conn)
        .await
        .optional()
}

/// The password hash and disabled flag of a user, share-locked until the transaction ends:
/// a concurrent password change or disable waits for it, and one that committed first is seen.
pub async fn lock_user_credentials(
    conn: &mut AsyncPgConnection,
    id: UserId,
) -> QueryResult<Option<(String, bool)>> {
    users::table
        .find(id)
        .select((users::password_hash, users::disabled))
        .for_share()
        .first(conn)
        .await
        .optional()
}

/// The accounts with these ids (missing ones are left out).
pub async fn find_users(conn: &mut AsyncPgConnection, ids: &[UserId]) -> QueryResult<Vec<User>> {
    users::table
        .filter(users::id.eq_any(ids))
        .select(User::as_select())
        .load(conn)
        .await
}

pub async fn find_user_by_email(
    conn: &mut AsyncPgConnection,
    email: &str,
) -> QueryResult<Option<User>> {
    users::table
        .filter(users::email.eq(email))
        .select(User::as_select())
        .first(conn)
        .await
        .optional()
}

pub async fn update_name(
    conn: &mut AsyncPgConnection,
    id: UserId,
    name: Option<&str>,
) -> QueryResult<User> {
    diesel::update(users::table.find(id))
        .set((users::name.eq(name), users::updated_at.eq(now)))
        .returning(User::as_returning())
        .get_result(conn)
        .await
}

pub async fn update_password_hash(
    conn: &mut AsyncPgConnection,
    id: UserId,
    password_hash: &str,
) -> QueryResult<()> {
    diesel::update(users::table.find(id))
        .set((
            users::password_hash.eq(password_hash),
            users::updated_at.eq(now),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn update_by_admin(
    conn: &mut AsyncPgConnection,
    id: UserId,
    changes: &UserAdminChangeset,
) -> QueryResult<Option<User>> {
    diesel::update(users::table.find(id))
        .set((changes, users::updated_at.eq(now)))
        .returning(User::as_returning())
        .get_result(conn)
        .await
        .optional()
}

/// A page of users, newest first, and the total count.
pub async fn list_users(
    conn: &mut AsyncPgConnection,
    offset: i64,
    limit: i64,
) -> QueryResult<(Vec<User>, i64)> {
    let items = users::table
        .order((users::created_at.desc(), users::id.desc()))
        .offset(offset)
        .limit(limit)
        .select(User::as_select())
        .load(conn)
        .await?;
    let total = users::table.count().get_result(conn).await?;
    Ok((items, total))
}

pub async fn insert_session(
    conn: &mut AsyncPgConnection,
    id: SessionId,
    user_id: UserId,
    expires_at: DateTime<Utc>,
    second_factor: bool,
) -> QueryResult<()> {
    diesel::insert_into(sessions::table)
        .values((
            sessions::id.eq(id),
            sessions::user_id.eq(user_id),
            sessions::expires_at.eq(expires_at),
            sessions::second_factor.eq(second_factor),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn find_session(
    conn: &mut AsyncPgConnection,
    id: SessionId,
) -> QueryResult<Option<Session>> {
    sessions::table
        .find(id)
        .select(Session::as_select())
        .first(conn)
        .await
        .optional()
}

/// Revokes one session if it is still live; returns whether it was.
pub async fn revoke_session(
    conn: &mut AsyncPgConnection,
    id: SessionId,
    reason: RevokeReason,
) -> QueryResult<bool> {
    let revoked = diesel::update(
        sessions::table
            .find(id)
            .filter(sessions::revoked_at.is_null()),
    )
    .set((
        sessions::revoked_at.eq(now),
        sessions::revoked_reason.eq(reason.as_str()),
    ))
    .execute(conn)
    .await?;
    Ok(revoked == 1)
}

/// Revokes a user's live sessions, except `keep`; returns the ids revoked.
pub async fn revoke_user_sessions(
    conn: &mut AsyncPgConnection,
    user_id: UserId,
    keep: Option<SessionId>,
    reason: RevokeReason,
) -> QueryResult<Vec<SessionId>> {
    diesel::update(
        sessions::table
            .filter(sessions::user_id.eq(user_id))
            .filter(sessions::revoked_at.is_null())
            .filter(sessions::id.ne(keep.unwrap_or(SessionId(Uuid::nil())))),
    )
    .set((
        sessions::revoked_at.eq(now),
        sessions::revoked_reason.eq(reason.as_str()),
    ))
    .returning(sessions::id)
    .get_results(conn)
    .await
}

/// Sessions revoked since `since` (to re-publish the Redis denylist).
pub async fn sessions_revoked_since(
    conn: &mut AsyncPgConnection,
    since: DateTime<Utc>,
) -> QueryResult<Vec<(SessionId, DateTime<Utc>)>> {
    sessions::table
        .filter(sessions::revoked_at.gt(since))
        .select((sessions::id, sessions::revoked_at.assume_not_null()))
        .load(conn)
        .await
}

pub async fn insert_refresh_token(
    conn: &mut AsyncPgConnection,
    token_hash: &[u8],
    session_id: SessionId,
) -> QueryResult<()> {
    diesel::insert_into(refresh_tokens::table)
        .values((
            refresh_tokens::token_hash.eq(token_hash),
            refresh_tokens::session_id.eq(session_id),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// Marks an unused refresh token used; returns its session, or `None` if the token is unknown
/// or already used. Conditional, so two concurrent refreshes cannot both succeed.
pub async fn consume_refresh_token(
    conn: &mut AsyncPgConnection,
    token_hash: &[u8],
) -> QueryResult<Option<SessionId>> {
    diesel::update(
        refresh_tokens::table
            .find(token_hash)
            .filter(refresh_tokens::used_at.is_null()),
    )
    .set(refresh_tokens::used_at.eq(now))
    .returning(refresh_tokens::session_id)
    .get_result(conn)
    .await
    .optional()
}

/// The session of a refresh token, used or not.
pub async fn refresh_token_session(
    conn: &mut AsyncPgConnection,
    token_hash: &[u8],
) -> QueryResult<Option<SessionId>> {
    refresh_tokens::table
        .find(token_hash)
        .select(refresh_tokens::session_id)
        .first(conn)
        .await
        .optional()
}
