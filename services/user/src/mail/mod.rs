//! The user service's mail: messages are queued in its outbox (topic `mail.send`) in the
//! transaction of the change they tell of, and the outbox relay sends them, retrying with
//! backoff, over SMTP (`MAIL_TRANSPORT=smtp`) or as `.eml` files under `MAIL_DIR`.
//!
//! A message is rendered when it is sent, from what its row names (the account, the order),
//! so a row holds no more than it must. Each carries a `Message-ID` fixed when it was queued:
//! if a send succeeded but its sent mark was lost, the copy sent again has the same id.

mod events;
mod templates;

use std::{collections::HashMap, time::Duration};

use anyhow::Context;
use futures_util::future::BoxFuture;
use lettre::{
    AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
    message::{Mailbox, MultiPart},
    transport::smtp::authentication::Credentials,
};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use shop_client::{ClientConfig, Idempotency, ServiceClient, reqwest::Method};
use shop_contracts::{OrderId, OrderSummaries, OrderSummariesRequest, OrderSummary, UserId};
use shop_http::RequestContext;
use shop_outbox::{Command, CommandHandler, NewMessage, Outcome};
use shop_settings::{MailTransport, Settings};
use uuid::Uuid;

pub use events::{GROUP as EVENTS_GROUP, OrderMail};

use crate::{models::User, repo};

/// The outbox topic of every message.
pub const TOPIC: &str = "mail.send";

/// What a message tells its recipient, with what is needed to write it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "template", rename_all = "kebab-case")]
pub enum Mail {
    /// Registration (or a resend): the link that verifies the address.
    VerifyEmail { token: String },
    /// The link that sets a new password.
    PasswordReset { token: String },
    /// The password was changed or reset.
    PasswordChanged,
    /// The order was paid (`order.paid`).
    OrderPaid { order_id: OrderId },
    /// The order failed (`order.failed`), with the timeline's cause.
    OrderFailed {
        order_id: OrderId,
        cause: Option<String>,
    },
    /// Money went back (`payment.refunded`).
    Refunded {
        order_id: OrderId,
        amount_cents: i64,
        currency: String,
    },
}

/// An outbox row's payload.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Queued {
    /// The account the message goes to (its address is read when it is sent).
    pub user_id: UserId,
    /// Fixed when queued: every copy of the message carries it.
    pub message_id: Uuid,
    #[serde(flatten)]
    pub mail: Mail,
}

/// The outbox row for `mail` to `user_id`: write it in the transaction of the change it tells
/// of (the lane is the account, so one person's mails go out in order).
pub fn queue(user_id: UserId, mail: Mail) -> NewMessage {
    let queued = Queued {
        user_id,
        message_id: Uuid::now_v7(),
        mail,
    };
    NewMessage::command(TOPIC, user_id, &queued).expect("a mail payload serialises")
}

/// An SMTP transport from `smtp://[user:password@]host[:port]` (port 25 by default). This
/// build speaks plain SMTP: point it at a relay beside the service (a local MTA or sidecar)
/// that carries mail on over TLS.
fn smtp_transport(url: &str) -> anyhow::Result<AsyncSmtpTransport<Tokio1Executor>> {
    let url = url::Url::parse(url)?;
    anyhow::ensure!(
        url.scheme() == "smtp",
        "only smtp:// is supported (TLS is left to a relay beside the service)"
    );
    let host = url.host_str().context("no host")?;
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
        .port(url.port().unwrap_or(25))
        .timeout(Some(Duration::from_secs(10)));
    if !url.username().is_empty() {
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        };
        builder = builder.credentials(Credentials::new(
            decode(url.username()),
            decode(url.password().unwrap_or_default()),
        ));
    }
    Ok(builder.build())
}

enum Transport {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    File(AsyncFileTransport<Tokio1Executor>),
}

/// Why a message was not sent (kept on its row; retried).
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("smtp: {0}")]
    Smtp(#[from] lettre::transport::smtp::Error),
    #[error("file: {0}")]
    File(#[from] lettre::transport::file::Error),
    #[error("message: {0}")]
    Build(#[from] lettre::error::Error),
    #[error("address: {0}")]
    Address(#[from] lettre::address::AddressError),
    #[error("order service: {0}")]
    Order(String),
    #[error("accounts: {0}")]
    Accounts(String),
    #[error(transparent)]
    Db(#[from] shop_db::DbError),
}

/// Renders and sends queued messages: the relay's command handler.
pub struct Mailer {
    transport: Transport,
    from: Mailbox,
    /// The storefront's address: links in messages start with it.
    public_url: String,
    orders: ServiceClient,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer")
            .field("from", &self.from)
            .field("public_url", &self.public_url)
            .finish_non_exhaustive()
    }
}

impl Mailer {
    /// From the `MAIL_*`, `SMTP_URL` and `PUBLIC_URL` settings.
    pub fn from_settings(settings: &Settings) -> anyhow::Result<Self> {
        let transport = match settings.mail_transport {
            MailTransport::Smtp => {
                let url = settings
                    .smtp_url
                    .as_ref()
                    .context("SMTP_URL must be set when MAIL_TRANSPORT=smtp")?;
                Transport::Smtp(smtp_transport(url.expose_secret()).context("SMTP_URL")?)
            }
            MailTransport::File => {
                std::fs::create_dir_all(&settings.mail_dir)
                    .with_context(|| format!("MAIL_DIR {}", settings.mail_dir))?;
                tracing::info!(dir = %settings.mail_dir, "mail is written as .eml files");
                Transport::File(AsyncFileTransport::<Tokio1Executor>::new(
                    &settings.mail_dir,
                ))
            }
        };
        let from: Mailbox = settings.mail_from.parse().context("MAIL_FROM")?;
        let orders = ServiceClient::new(
            "order",
            &settings.order_service_url,
            ClientConfig::from_settings(
                settings,
                crate::SERVICE.name(),
                settings.order_service_timeout,
            ),
        );
        Ok(Self {
            transport,
            from,
            public_url: settings.public_url.trim_end_matches('/').to_owned(),
            orders,
        })
    }

    /// Renders and sends one message to `user` (None: the account is gone, nothing is sent).
    async fn send(
        &self,
        queued: &Queued,
        user: Option<&User>,
        orders: &Result<HashMap<OrderId, OrderSummary>, String>,
    ) -> Result<(), SendError> {
        let Some(user) = user else {
            tracing::info!(user.id = %queued.user_id, "mail dropped: no such account");
            return Ok(());
        };
        let order = match &queued.mail {
            Mail::OrderPaid { order_id }
            | Mail::OrderFailed { order_id, .. }
            | Mail::Refunded { order_id, .. } => {
                let orders = orders.as_ref().map_err(|e| SendError::Order(e.clone()))?;
                let Some(order) = orders.get(order_id) else {
                    tracing::warn!(order.id = %order_id, "mail dropped: no such order");
                    return Ok(());
                };
                Some(order)
            }
            _ => None,
        };
        let written = templates::write(
            &queued.mail,
            &templates::Context {
                name: user.name.as_deref(),
                public_url: &self.public_url,
                order,
            },
        );
        let to = Mailbox::new(user.name.clone(), user.email.parse()?);
        let domain = self.from.email.domain().to_owned();
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(written.subject)
            .message_id(Some(format!("<{}@{domain}>", queued.message_id)))
            .multipart(MultiPart::alternative_plain_html(
                written.text,
                written.html,
            ))?;
        match &self.transport {
            Transport::Smtp(smtp) => {
                smtp.send(message).await?;
            }
            Transport::File(file) => {
                file.send(message).await?;
            }
        }
        metrics::counter!("shop_mail_sent_total", "template" => queued.mail.name()).increment(1);
        tracing::info!(
            user.id = %queued.user_id,
            template = queued.mail.name(),
            message_id = %queued.message_id,
            "mail sent"
        );
        Ok(())
    }

    /// The orders a batch's messages tell of, in one call (one statement at the order
    /// service); an error is why every order message of the batch waits for a retry.
    async fn orders(&self, ids: &[OrderId]) -> Result<HashMap<OrderId, OrderSummary>, String> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let mut found = HashMap::new();
        for chunk in ids.chunks(shop_contracts::MAX_SUMMARIES) {
            let reply = self
                .orders
                .call(
                    Method::POST,
                    "/internal/order-summaries",
                    Some(&OrderSummariesRequest {
                        order_ids: chunk.to_vec(),
                    }),
                    Idempotency::Idempotent,
                    &RequestContext::background(),
                )
                .await
                .map_err(|e| e.to_string())?;
            if !reply.status.is_success() {
                return Err(format!("order service answered {}", reply.status));
            }
            let summaries: OrderSummaries = reply
                .json()
                .map_err(|e| format!("unreadable orders: {e}"))?;
            found.extend(summaries.orders.into_iter().map(|o| (o.id, o)));
        }
        Ok(found)
    }
}

impl Mail {
    /// The order the message tells of, if any.
    fn order_id(&self) -> Option<OrderId> {
        match self {
            Mail::OrderPaid { order_id }
            | Mail::OrderFailed { order_id, .. }
            | Mail::Refunded { order_id, .. } => Some(*order_id),
            _ => None,
        }
    }

    /// Whether the message holds a single-use token (a link that signs something in).
    fn carries_token(&self) -> bool {
        matches!(self, Mail::VerifyEmail { .. } | Mail::PasswordReset { .. })
    }

    /// The template's name (metrics, logs).
    pub fn name(&self) -> &'static str {
        match self {
            Mail::VerifyEmail { .. } => "verify-email",
            Mail::PasswordReset { .. } => "password-reset",
            Mail::PasswordChanged => "password-changed",
            Mail::OrderPaid { .. } => "order-paid",
            Mail::OrderFailed { .. } => "order-failed",
            Mail::Refunded { .. } => "refunded",
        }
    }
}

impl CommandHandler for Mailer {
    type Command = Queued;
    type Error = SendError;

    fn run<'a>(
        &'a self,
        conn: &'a mut diesel_async::AsyncPgConnection,
        commands: &'a [Command<Queued>],
    ) -> BoxFuture<'a, Vec<Outcome<SendError>>> {
        Box::pin(async move {
            // The accounts, read in the relay's transaction (no round of their own), and the
            // orders, asked for in one call: not one of each per message.
            let mut user_ids: Vec<UserId> = commands.iter().map(|c| c.payload.user_id).collect();
            user_ids.sort_unstable();
            user_ids.dedup();
            let users: HashMap<UserId, User> = match repo::find_users(conn, &user_ids).await {
                Ok(users) => users.into_iter().map(|u| (u.id, u)).collect(),
                Err(error) => {
                    let error = error.to_string();
                    return commands
                        .iter()
                        .map(|_| Outcome::Failed(SendError::Accounts(error.clone())))
                        .collect();
                }
            };
            let mut order_ids: Vec<OrderId> = commands
                .iter()
                .filter_map(|c| c.payload.mail.order_id())
                .collect();
            order_ids.sort_unstable();
            order_ids.dedup();
            let orders = self.orders(&order_ids).await;
            let outcomes = shop_outbox::run_lanes(commands, |command| {
                self.send(
                    &command.payload,
                    users.get(&command.payload.user_id),
                    &orders,
                )
            })
            .await;
            // A sent link's token need not wait for the row's purge in the table: it is
            // dropped from the payload now. This is bookkeeping in the relay's transaction: if
            // it is lost, the token stays until the purge, as before, and nothing else changes.
            let sent: Vec<i64> = commands
                .iter()
                .zip(&outcomes)
                .filter(|(c, o)| matches!(o, Outcome::Done) && c.payload.mail.carries_token())
                .map(|(c, _)| c.id)
                .collect();
            if !sent.is_empty() {
                use diesel_async::{AsyncConnection, RunQueryDsl};
                // In a savepoint: a failure here must not abort the relay's transaction (its
                // sent marks would be lost and the mail sent again).
                let scrubbed = conn
                    .transaction::<_, diesel::result::Error, _>(async |conn| {
                        shop_db::prepared(
                            "UPDATE outbox SET payload = payload - 'token' WHERE id = ANY($1)",
                        )
                        .bind::<diesel::sql_types::Array<diesel::sql_types::BigInt>, _>(&sent)
                        .execute(conn)
                        .await
                    })
                    .await;
                if let Err(error) = scrubbed {
                    tracing::warn!(%error, "sent tokens not scrubbed; the purge removes them");
                }
            }
            outcomes
        })
    }
}

/// Forgets the order events mailed more than 30 days ago.
pub async fn purge_mailed_events(
    conn: &mut diesel_async::AsyncPgConnection,
) -> diesel::QueryResult<usize> {
    use diesel::prelude::*;
    use diesel_async::RunQueryDsl;

    use crate::schema::mailed_events;
    let cutoff = chrono::Utc::now() - chrono::Duration::days(30);
    diesel::delete(mailed_events::table.filter(mailed_events::mailed_at.lt(cutoff)))
        .execute(conn)
        .await
}

/// Registers the mail metrics at zero, so their series exist before the first message.
pub fn register_metrics() {
    for template in [
        "verify-email",
        "password-reset",
        "password-changed",
        "order-paid",
        "order-failed",
    ] {
        metrics::counter!("shop_mail_sent_total", "template" => template).increment(0);
    }
}
