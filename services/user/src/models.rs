//! Rows of the `users` schema and their API forms.

use chrono::{DateTime, Utc};
use diesel::{
    deserialize::{self, FromSql, FromSqlRow},
    expression::AsExpression,
    pg::{Pg, PgValue},
    prelude::*,
    serialize::{self, Output, ToSql},
    sql_types::Text,
};
use shop_contracts::{Role, SessionId, UserId, UserResponse};

use crate::schema::{sessions, users};

/// A role as stored in a `text` column (the table's CHECK admits `user` and `admin`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromSqlRow, AsExpression)]
#[diesel(sql_type = Text)]
pub struct DbRole(pub Role);

impl FromSql<Text, Pg> for DbRole {
    fn from_sql(bytes: PgValue<'_>) -> deserialize::Result<Self> {
        let text = <String as FromSql<Text, Pg>>::from_sql(bytes)?;
        text.parse()
            .map(DbRole)
            .map_err(|_| format!("unknown role `{text}`").into())
    }
}

impl ToSql<Text, Pg> for DbRole {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        <str as ToSql<Text, Pg>>::to_sql(self.0.as_str(), &mut out.reborrow())
    }
}

/// An account.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = users, check_for_backend(Pg))]
pub struct User {
    pub id: UserId,
    pub email: String,
    pub password_hash: String,
    pub name: Option<String>,
    pub role: DbRole,
    pub disabled: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub email_verified_at: Option<DateTime<Utc>>,
    /// The active second factor's secret, sealed.
    pub mfa_secret: Option<Vec<u8>>,
    /// A secret enrolled but not yet confirmed with a code, sealed.
    pub mfa_pending_secret: Option<Vec<u8>>,
    /// The last TOTP step a code was accepted for.
    pub mfa_last_step: Option<i64>,
}

impl User {
    /// The user's role.
    pub fn role(&self) -> Role {
        self.role.0
    }
}

impl From<User> for UserResponse {
    fn from(user: User) -> Self {
        UserResponse {
            id: user.id,
            email: user.email,
            name: user.name,
            role: user.role.0,
            disabled: user.disabled,
            email_verified: user.email_verified_at.is_some(),
            mfa_enabled: user.mfa_secret.is_some(),
            created_at: user.created_at,
            updated_at: user.updated_at,
        }
    }
}

/// A new account.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = users)]
pub struct NewUser {
    pub id: UserId,
    pub email: String,
    pub password_hash: String,
    pub name: Option<String>,
    pub role: DbRole,
}

/// An administrator's change to an account.
#[derive(Debug, Clone, Default, AsChangeset)]
#[diesel(table_name = users)]
pub struct UserAdminChangeset {
    pub role: Option<DbRole>,
    pub disabled: Option<bool>,
}

/// A login session.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = sessions, check_for_backend(Pg))]
pub struct Session {
    pub id: SessionId,
    pub user_id: UserId,
    pub expires_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub second_factor: bool,
}

impl Session {
    /// Neither revoked nor expired.
    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && self.expires_at > now
    }
}

/// Why a session ended (stored in `revoked_reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevokeReason {
    Logout,
    PasswordChanged,
    RefreshTokenReused,
    AccountChanged,
    PasswordReset,
}

impl RevokeReason {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            RevokeReason::Logout => "logout",
            RevokeReason::PasswordChanged => "password_changed",
            RevokeReason::RefreshTokenReused => "refresh_token_reused",
            RevokeReason::AccountChanged => "account_changed",
            RevokeReason::PasswordReset => "password_reset",
        }
    }
}
