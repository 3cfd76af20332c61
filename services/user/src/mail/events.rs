//! Order mail: the user service reads `notifications` in a consumer group of its own and queues
//! a message for each `order.paid`, `order.failed` and refund (`payment.refunded`). A batch is one transaction that records
//! the events' ids and queues their mail, acknowledged after it commits; an event delivered
//! again (a redelivery, a restart mid-batch, a reclaim) finds its id recorded and mails
//! nothing.

use diesel::sql_types::{Array, Uuid as SqlUuid};
use diesel_async::{AsyncConnection, RunQueryDsl};
use shop_contracts::events::{Envelope, Event};
use shop_db::Pool;
use shop_outbox::{NewMessage, RelayHandle};
use shop_redis::{BatchError, EntryHandler};
use uuid::Uuid;

use super::{Mail, queue};

/// The consumer group on `notifications`.
pub const GROUP: &str = "user-mail";

const RECORD: &str = "INSERT INTO mailed_events (event_id) SELECT unnest($1::uuid[]) \
     ON CONFLICT DO NOTHING RETURNING event_id";

#[derive(diesel::QueryableByName)]
struct Recorded {
    #[diesel(sql_type = SqlUuid)]
    event_id: Uuid,
}

/// Turns order events into queued mail.
#[derive(Debug, Clone)]
pub struct OrderMail {
    pub pool: Pool,
    pub relay: RelayHandle,
}

/// An event of the stream, and the mail it asks for, if any.
#[derive(Debug)]
pub struct Item {
    envelope: Envelope,
    mail: Option<Mail>,
}

impl EntryHandler for OrderMail {
    type Item = Item;

    fn parse(&self, raw: Option<&str>) -> Result<Item, String> {
        let raw = raw.ok_or("no `event` field")?;
        let envelope: Envelope = serde_json::from_str(raw).map_err(|e| e.to_string())?;
        let mail = match &envelope.event {
            Event::OrderPaid(_) => Some(Mail::OrderPaid {
                order_id: envelope.order_id,
            }),
            Event::OrderFailed(changed) => Some(Mail::OrderFailed {
                order_id: envelope.order_id,
                cause: changed.cause.clone(),
            }),
            // Every refund, the automatic one of a success that came too late included.
            Event::PaymentRefunded(refunded) => Some(Mail::Refunded {
                order_id: envelope.order_id,
                amount_cents: refunded.amount_cents,
                currency: refunded.currency.clone(),
            }),
            _ => None,
        };
        Ok(Item { envelope, mail })
    }

    fn span(&self, item: &Item) -> tracing::Span {
        let span = tracing::info_span!(
            "mail.order_event",
            event.id = %item.envelope.id,
            event.type = item.envelope.event.name(),
            order.id = %item.envelope.order_id,
        );
        shop_http::continue_trace(&span, item.envelope.traceparent.as_deref());
        span
    }

    async fn handle(&self, items: &[&Item]) -> Result<(), BatchError> {
        let wanted: Vec<&Item> = items.iter().copied().filter(|i| i.mail.is_some()).collect();
        if wanted.is_empty() {
            return Ok(());
        }
        let ids: Vec<Uuid> = wanted.iter().map(|i| i.envelope.id).collect();
        let mut conn = shop_db::conn(&self.pool)
            .await
            .map_err(|e| BatchError::Unavailable(e.to_string()))?;
        let queued = conn
            .transaction::<_, diesel::result::Error, _>(async |conn| {
                let recorded: Vec<Recorded> = shop_db::prepared(RECORD)
                    .bind::<Array<SqlUuid>, _>(&ids)
                    .get_results(conn)
                    .await?;
                let messages: Vec<NewMessage> = wanted
                    .iter()
                    .filter(|i| recorded.iter().any(|r| r.event_id == i.envelope.id))
                    .filter_map(|i| Some(queue(i.envelope.user_id, i.mail.clone()?)))
                    .collect();
                shop_outbox::enqueue(conn, &messages).await
            })
            .await
            .map_err(|e| match shop_db::DbError::from(e) {
                shop_db::DbError::Query(error) => BatchError::Data(error.to_string()),
                other => BatchError::Unavailable(other.to_string()),
            })?;
        self.relay.wake(queued);
        Ok(())
    }
}
