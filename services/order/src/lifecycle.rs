//! The order lifecycle (DESIGN.md, the saga): every status change is a [`Transition`] (the
//! statuses it may leave, the one it reaches, who makes it and why, and the outbox messages it
//! writes), applied by [`apply`] as one guarded statement (`UPDATE … WHERE status = ANY(…)
//! RETURNING`) plus its history and outbox rows, inside the caller's transaction.
//!
//! ```text
//! reserving ──reserved──> pending ──paid──> paid ──shipped──> shipped ──delivered──> delivered
//!     │                      │               └──────────────────┴───────────────────────┴──
//!     │                      │                  every captured cent refunded──> refunded
//!     ├─refused──> failed    ├─payment failed / timed out──> failed   (stock released)
//!     ├─catalog unavailable / abandoned──> failed (stock released)
//!                            └─cancelled by its owner──> cancelled    (stock released)
//! ```

use std::collections::HashMap;

use diesel::{
    OptionalExtension,
    sql_types::{Array, BigInt, Bool, Integer, Nullable, Text, Uuid as SqlUuid},
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use shop_contracts::{OrderId, PaymentStatus, UserId};
use shop_db::prepared;
use shop_http::RequestContext;
use shop_outbox::{NewMessage, Written};

use crate::{
    error::OrderError,
    events,
    models::{Order, Status},
};

use Status::{Cancelled, Delivered, Failed, Paid, Pending, Refunded, Reserving, Shipped};

/// Who changes an order (`actor` in the timeline).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    /// The order's owner.
    User(UserId),
    /// An administrator.
    Admin(UserId),
    /// The payment service's report.
    Payment,
    /// The service itself (the saga's own steps, its sweeps).
    System,
}

impl Actor {
    /// The timeline's spelling: `user:<id>`, `admin:<id>`, `payment`, `system`.
    pub fn label(self) -> String {
        match self {
            Actor::User(id) => format!("user:{id}"),
            Actor::Admin(id) => format!("admin:{id}"),
            Actor::Payment => "payment".into(),
            Actor::System => "system".into(),
        }
    }
}

/// Why an order changed (`cause` in the timeline and in `order.*` events).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    Placed,
    Reserved,
    InsufficientStock,
    ProductUnavailable,
    UnknownProduct,
    ReservationRefused,
    CatalogUnavailable,
    ReservationAbandoned,
    PaymentSucceeded,
    PaymentFailed,
    PaymentTimeout,
    PaymentRefunded,
    CancelledByUser,
    Fulfilment,
    /// A refund was carried out; captured money remains.
    PartiallyRefunded,
    /// A refund was carried out and nothing captured remains.
    Refunded,
}

impl Cause {
    /// The timeline's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::Placed => "placed",
            Cause::Reserved => "reserved",
            Cause::InsufficientStock => "insufficient_stock",
            Cause::ProductUnavailable => "product_unavailable",
            Cause::UnknownProduct => "unknown_product",
            Cause::ReservationRefused => "reservation_refused",
            Cause::CatalogUnavailable => "catalog_unavailable",
            Cause::ReservationAbandoned => "reservation_abandoned",
            Cause::PaymentSucceeded => "payment_succeeded",
            Cause::PaymentFailed => "payment_failed",
            Cause::PaymentTimeout => "payment_timeout",
            Cause::PaymentRefunded => "payment_refunded",
            Cause::CancelledByUser => "cancelled_by_user",
            Cause::Fulfilment => "fulfilment",
            Cause::PartiallyRefunded => "partially_refunded",
            Cause::Refunded => "refunded",
        }
    }
}

/// An outbox message a transition writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message {
    /// `payment.requested` to the payment service.
    PaymentRequested,
    /// `payment.cancel`: the payment service stops.
    PaymentCancel,
    /// The `stock.release` command: the catalog gives the stock back.
    ReleaseStock,
    /// `order.<status>` of the status reached, on the user's notifications.
    Notify,
}

impl Message {
    /// Events take a number of the order's event sequence; commands do not.
    fn is_event(self) -> bool {
        !matches!(self, Message::ReleaseStock)
    }
}

/// What the payment service last said, kept on the order (`payment` in the API).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentSummary {
    pub status: PaymentStatus,
    /// Attempts made (the highest reported; a late report never lowers it).
    pub attempts: i32,
    pub last_error: Option<String>,
}

/// One status change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// The statuses it applies to; from any other it does nothing.
    pub from: &'static [Status],
    pub to: Status,
    pub actor: Actor,
    pub cause: Cause,
    /// Written with the change, in this order.
    pub messages: &'static [Message],
    /// The total, once the reservation has priced the lines.
    pub total_cents: Option<i64>,
    /// What the payment service reported with it.
    pub payment: Option<PaymentSummary>,
    /// Shipping: how the parcel travels. A transition with one applies only to an order that
    /// has an address.
    pub shipment: Option<Shipment>,
}

/// How a parcel travels, as the administrator who ships it says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Shipment {
    pub carrier: Option<String>,
    pub tracking_number: Option<String>,
}

impl Transition {
    const fn new(
        from: &'static [Status],
        to: Status,
        actor: Actor,
        cause: Cause,
        messages: &'static [Message],
    ) -> Self {
        Self {
            from,
            to,
            actor,
            cause,
            messages,
            total_cents: None,
            payment: None,
            shipment: None,
        }
    }

    /// Step 1: the catalog reserved every line at these prices; the payment is requested.
    pub fn reserved(total_cents: i64) -> Self {
        Self {
            total_cents: Some(total_cents),
            ..Self::new(
                &[Reserving],
                Pending,
                Actor::System,
                Cause::Reserved,
                &[Message::PaymentRequested, Message::Notify],
            )
        }
    }

    /// Step 1: the catalog refused (short stock, a deleted or unknown product); nothing held.
    pub fn refused(cause: Cause) -> Self {
        Self::new(&[Reserving], Failed, Actor::System, cause, &[])
    }

    /// Step 1: the catalog could not be asked; it may have reserved, so release.
    pub fn catalog_unavailable() -> Self {
        Self::new(
            &[Reserving],
            Failed,
            Actor::System,
            Cause::CatalogUnavailable,
            &[Message::ReleaseStock],
        )
    }

    /// Step 1, recovery: left `reserving` past `RESERVE_TIMEOUT`.
    pub fn abandoned() -> Self {
        Self::new(
            &[Reserving],
            Failed,
            Actor::System,
            Cause::ReservationAbandoned,
            &[Message::ReleaseStock],
        )
    }

    /// Step 5: the payment succeeded.
    pub fn paid(attempts: i32) -> Self {
        Self {
            payment: Some(PaymentSummary {
                status: PaymentStatus::Succeeded,
                attempts,
                last_error: None,
            }),
            ..Self::new(
                &[Pending],
                Paid,
                Actor::Payment,
                Cause::PaymentSucceeded,
                &[Message::Notify],
            )
        }
    }

    /// Step 5: the last attempt failed; the stock goes back.
    pub fn payment_failed(attempts: i32, error: Option<String>) -> Self {
        Self {
            payment: Some(PaymentSummary {
                status: PaymentStatus::Failed,
                attempts,
                last_error: error,
            }),
            ..Self::new(
                &[Pending],
                Failed,
                Actor::Payment,
                Cause::PaymentFailed,
                &[Message::ReleaseStock, Message::Notify],
            )
        }
    }

    /// Step 6: the owner cancels; the stock goes back and the payment service stops.
    pub fn cancelled_by(user: UserId) -> Self {
        Self::new(
            &[Pending],
            Cancelled,
            Actor::User(user),
            Cause::CancelledByUser,
            &[
                Message::ReleaseStock,
                Message::PaymentCancel,
                Message::Notify,
            ],
        )
    }

    /// Step 6: pending past `ORDER_PAYMENT_TIMEOUT`.
    pub fn payment_timeout() -> Self {
        Self::new(
            &[Pending],
            Failed,
            Actor::System,
            Cause::PaymentTimeout,
            &[
                Message::ReleaseStock,
                Message::PaymentCancel,
                Message::Notify,
            ],
        )
    }

    /// Fulfilment: an administrator ships a paid order that has an address.
    pub fn shipped(admin: UserId, shipment: Shipment) -> Self {
        Self {
            shipment: Some(shipment),
            ..Self::new(
                &[Paid],
                Shipped,
                Actor::Admin(admin),
                Cause::Fulfilment,
                &[Message::Notify],
            )
        }
    }

    /// Refunds: the last captured cent was given back (the stock stays sold).
    pub fn refunded() -> Self {
        Self::new(
            &[Paid, Shipped, Delivered],
            Refunded,
            Actor::Payment,
            Cause::Refunded,
            &[Message::Notify],
        )
    }

    /// Fulfilment: an administrator marks a shipped order delivered.
    pub fn delivered(admin: UserId) -> Self {
        Self::new(
            &[Shipped],
            Delivered,
            Actor::Admin(admin),
            Cause::Fulfilment,
            &[Message::Notify],
        )
    }

    /// The administrator's move to `to`, if there is one (`PUT /orders/{id}/status`); a
    /// shipment goes only with `shipped`.
    pub fn fulfilment(to: Status, admin: UserId, shipment: Shipment) -> Option<Self> {
        match to {
            Shipped => Some(Self::shipped(admin, shipment)),
            Delivered if shipment == Shipment::default() => Some(Self::delivered(admin)),
            _ => None,
        }
    }

    fn events(&self) -> i32 {
        let events = self.messages.iter().filter(|m| m.is_event()).count();
        i32::try_from(events).unwrap_or(i32::MAX)
    }
}

/// The guarded change: nothing happens unless the order is in one of `from` (and belongs to
/// the given owner, when one is given). One statement text for every transition, so it stays
/// prepared.
const TRANSITION: &str = concat!(
    "
UPDATE orders SET
    status = $2,
    status_changed_at = now(),
    updated_at = now(),
    event_seq = event_seq + $4,
    total_cents = COALESCE($5, total_cents),
    payment_requested_at = CASE WHEN $6 THEN now() ELSE payment_requested_at END,
    payment_status = COALESCE($7, payment_status),
    payment_attempts = GREATEST(payment_attempts, $8),
    payment_last_error = CASE WHEN $7::text IS NULL THEN payment_last_error ELSE $9 END,
    shipment = CASE WHEN $11 THEN jsonb_build_object(
        'carrier', $12::text, 'trackingNumber', $13::text, 'shippedAt', now()) ELSE shipment END
WHERE id = $1 AND status = ANY($3) AND ($10::uuid IS NULL OR user_id = $10)
    AND (NOT $11 OR shipping_address IS NOT NULL)
RETURNING ",
    crate::models::order_columns!()
);

const HISTORY: &str = "INSERT INTO order_status_history (order_id, status, actor, cause) \
     VALUES ($1, $2, $3, $4)";

/// A transition that took place.
#[derive(Debug, Clone)]
pub struct Applied {
    /// The order as it is now.
    pub order: Order,
    /// What went into the outbox: wake the relay with it after the commit.
    pub written: Written,
}

/// Applies `transition` to the order, if it is in one of the transition's `from` statuses (and,
/// with `owner`, belongs to that user): the status change, its timeline entry and its outbox
/// messages, in the caller's transaction. `None` when the order is not there to change.
pub async fn apply(
    conn: &mut AsyncPgConnection,
    order_id: OrderId,
    owner: Option<UserId>,
    transition: &Transition,
    context: &RequestContext,
) -> Result<Option<Applied>, OrderError> {
    let payment = transition.payment.as_ref();
    let order: Option<Order> = prepared(TRANSITION)
        .bind::<SqlUuid, _>(order_id)
        .bind::<Text, _>(transition.to)
        .bind::<Array<Text>, _>(transition.from)
        .bind::<Integer, _>(transition.events())
        .bind::<Nullable<BigInt>, _>(transition.total_cents)
        .bind::<Bool, _>(transition.messages.contains(&Message::PaymentRequested))
        .bind::<Nullable<Text>, _>(payment.map(|p| p.status))
        .bind::<Integer, _>(payment.map_or(0, |p| p.attempts))
        .bind::<Nullable<Text>, _>(payment.and_then(|p| p.last_error.as_deref()))
        .bind::<Nullable<SqlUuid>, _>(owner)
        .bind::<Bool, _>(transition.shipment.is_some())
        .bind::<Nullable<Text>, _>(
            transition
                .shipment
                .as_ref()
                .and_then(|s| s.carrier.as_deref()),
        )
        .bind::<Nullable<Text>, _>(
            transition
                .shipment
                .as_ref()
                .and_then(|s| s.tracking_number.as_deref()),
        )
        .get_result(conn)
        .await
        .optional()?;
    let Some(order) = order else {
        return Ok(None);
    };
    let messages = messages(&order, transition, context)?;
    let conn: &AsyncPgConnection = conn;
    let history = prepared(HISTORY)
        .bind::<SqlUuid, _>(order.id)
        .bind::<Text, _>(transition.to)
        .bind::<Text, _>(transition.actor.label())
        .bind::<Text, _>(transition.cause.as_str())
        .execute(&mut &*conn);
    // Independent of each other: sent together, one round trip.
    let (_, written) =
        futures_util::future::try_join(history, shop_outbox::enqueue(conn, &messages)).await?;
    Ok(Some(Applied { order, written }))
}

/// The sweeper's resend: `payment.requested` again for a pending order the payment service
/// never reported on (the order's status does not change).
const REQUEST_AGAIN: &str = concat!(
    "
UPDATE orders SET payment_requested_at = now(), event_seq = event_seq + 1
WHERE id = $1 AND status = $2
RETURNING ",
    crate::models::order_columns!()
);

pub async fn request_payment_again(
    conn: &mut AsyncPgConnection,
    order_id: OrderId,
    context: &RequestContext,
) -> Result<Option<Written>, OrderError> {
    let order: Option<Order> = prepared(REQUEST_AGAIN)
        .bind::<SqlUuid, _>(order_id)
        .bind::<Text, _>(Pending)
        .get_result(conn)
        .await
        .optional()?;
    let Some(order) = order else {
        return Ok(None);
    };
    let message = events::payment_requested(&order, order.event_seq, context)
        .map_err(|e| unserialisable(&order, e))?;
    Ok(Some(shop_outbox::enqueue(conn, &[message]).await?))
}

/// Many orders changed in one transaction (a batch of payment reports): each is read and
/// locked first, changed in memory transition by transition, and then every change is written
/// at once: one guarded statement for all the orders (each only if it is still as it was
/// read), one for their timeline entries, one for their outbox messages.
#[derive(Debug)]
pub struct Batch {
    orders: HashMap<OrderId, Planned>,
    history: Vec<(OrderId, Status, String, &'static str)>,
    messages: Vec<NewMessage>,
}

#[derive(Debug)]
struct Planned {
    /// As read (and locked).
    read: (Status, i32),
    /// As it will be written.
    order: Order,
    changed: bool,
    /// A transition asked for the payment (`payment_requested_at` is set).
    requested: bool,
}

const LOCK_ORDERS: &str = concat!(
    "SELECT ",
    crate::models::order_columns!(),
    " FROM orders WHERE id = ANY($1) ORDER BY id FOR UPDATE"
);

/// Everything [`TRANSITION`] sets, for many orders, each only if it is still as it was read.
const WRITE_BATCH: &str = "
UPDATE orders o SET status = v.status,
    status_changed_at = CASE WHEN v.status <> o.status THEN now() ELSE o.status_changed_at END,
    updated_at = now(), event_seq = v.event_seq, total_cents = v.total_cents,
    payment_requested_at = CASE WHEN v.requested THEN now() ELSE o.payment_requested_at END,
    payment_status = v.payment_status, payment_attempts = v.payment_attempts,
    payment_last_error = v.payment_last_error, refunded_cents = v.refunded_cents,
    refund_pending_cents = v.refund_pending_cents
FROM unnest($1::uuid[], $2::text[], $3::int4[], $4::int8[], $5::bool[], $6::text[], $7::int4[],
    $8::text[], $9::text[], $10::int4[], $11::int8[], $12::int8[])
    AS v(id, status, event_seq, total_cents, requested, payment_status, payment_attempts,
        payment_last_error, was, was_seq, refunded_cents, refund_pending_cents)
WHERE o.id = v.id AND o.status = v.was AND o.event_seq = v.was_seq";

const HISTORY_BATCH: &str = "INSERT INTO order_status_history (order_id, status, actor, cause) \
     SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[])";

impl Batch {
    /// Reads and locks the orders (in id order, so batches cannot deadlock).
    pub async fn lock(conn: &AsyncPgConnection, ids: &[OrderId]) -> Result<Self, OrderError> {
        let mut ids = ids.to_vec();
        ids.sort_unstable();
        ids.dedup();
        let read: Vec<Order> = prepared(LOCK_ORDERS)
            .bind::<Array<SqlUuid>, _>(ids)
            .load(&mut &*conn)
            .await?;
        Ok(Self {
            orders: read
                .into_iter()
                .map(|order| {
                    let planned = Planned {
                        read: (order.status, order.event_seq),
                        order,
                        changed: false,
                        requested: false,
                    };
                    (planned.order.id, planned)
                })
                .collect(),
            history: Vec::new(),
            messages: Vec::new(),
        })
    }

    /// The order's status as the batch has it (`None`: no such order).
    pub fn status(&self, id: OrderId) -> Option<Status> {
        self.orders.get(&id).map(|p| p.order.status)
    }

    /// Applies `transition` to the order if it is in one of its `from` statuses; the order as
    /// it now is, or `None` if it was not there to change.
    pub fn apply(
        &mut self,
        id: OrderId,
        transition: &Transition,
        context: &RequestContext,
    ) -> Result<Option<Status>, OrderError> {
        let Some(planned) = self.orders.get_mut(&id) else {
            return Ok(None);
        };
        if !transition.from.contains(&planned.order.status) {
            return Ok(None);
        }
        let order = &mut planned.order;
        order.status = transition.to;
        order.event_seq += transition.events();
        if let Some(total) = transition.total_cents {
            order.total_cents = Some(total);
        }
        if let Some(payment) = &transition.payment {
            note_payment(order, payment);
        }
        planned.changed = true;
        planned.requested |= transition.messages.contains(&Message::PaymentRequested);
        self.history.push((
            id,
            transition.to,
            transition.actor.label(),
            transition.cause.as_str(),
        ));
        self.messages
            .extend(messages(&planned.order, transition, context)?);
        Ok(Some(transition.to))
    }

    /// A payment report that changes no status: the summary, if the order is in `while_in`
    /// (any status without it), and with `noted` a timeline entry at its status. The order's
    /// status, or `None` if it is not there (or not in `while_in`).
    pub fn record_payment(
        &mut self,
        id: OrderId,
        while_in: Option<&[Status]>,
        summary: &PaymentSummary,
        noted: Option<(Actor, Cause)>,
    ) -> Option<Status> {
        let planned = self.orders.get_mut(&id)?;
        let status = planned.order.status;
        if while_in.is_some_and(|w| !w.contains(&status)) {
            return None;
        }
        note_payment(&mut planned.order, summary);
        planned.changed = true;
        if let Some((actor, cause)) = noted {
            self.history
                .push((id, status, actor.label(), cause.as_str()));
        }
        Some(status)
    }

    /// A refund the payment service finished: it leaves the pending amount and, carried out,
    /// joins the refunded amount, with a timeline entry; the last captured cent refunded moves
    /// the order to `refunded`. `None` if the order is not in the batch.
    pub fn record_refund(
        &mut self,
        id: OrderId,
        amount_cents: i64,
        carried_out: bool,
        context: &RequestContext,
    ) -> Result<Option<Status>, OrderError> {
        let Some(planned) = self.orders.get_mut(&id) else {
            return Ok(None);
        };
        let order = &mut planned.order;
        order.refund_pending_cents = (order.refund_pending_cents - amount_cents).max(0);
        planned.changed = true;
        if !carried_out {
            return Ok(Some(order.status));
        }
        order.refunded_cents += amount_cents;
        let status = order.status;
        if order.refunded_cents < order.total_cents.unwrap_or(0) {
            self.history.push((
                id,
                status,
                Actor::Payment.label(),
                Cause::PartiallyRefunded.as_str(),
            ));
            return Ok(Some(status));
        }
        Ok(Some(
            self.apply(id, &Transition::refunded(), context)?
                .unwrap_or(status),
        ))
    }

    /// Writes every change, the three statements sent together. What was written to the
    /// outbox, to wake the relay with after the commit.
    pub async fn write(self, conn: &AsyncPgConnection) -> Result<Written, OrderError> {
        let changed: Vec<&Planned> = self.orders.values().filter(|p| p.changed).collect();
        let orders = async {
            if changed.is_empty() {
                return Ok(());
            }
            let updated = prepared(WRITE_BATCH)
                .bind::<Array<SqlUuid>, _>(changed.iter().map(|p| p.order.id).collect::<Vec<_>>())
                .bind::<Array<Text>, _>(changed.iter().map(|p| p.order.status).collect::<Vec<_>>())
                .bind::<Array<Integer>, _>(
                    changed
                        .iter()
                        .map(|p| p.order.event_seq)
                        .collect::<Vec<_>>(),
                )
                .bind::<Array<Nullable<BigInt>>, _>(
                    changed
                        .iter()
                        .map(|p| p.order.total_cents)
                        .collect::<Vec<_>>(),
                )
                .bind::<Array<Bool>, _>(changed.iter().map(|p| p.requested).collect::<Vec<_>>())
                .bind::<Array<Nullable<Text>>, _>(
                    changed
                        .iter()
                        .map(|p| p.order.payment_status)
                        .collect::<Vec<_>>(),
                )
                .bind::<Array<Integer>, _>(
                    changed
                        .iter()
                        .map(|p| p.order.payment_attempts)
                        .collect::<Vec<_>>(),
                )
                .bind::<Array<Nullable<Text>>, _>(
                    changed
                        .iter()
                        .map(|p| p.order.payment_last_error.as_deref())
                        .collect::<Vec<_>>(),
                )
                .bind::<Array<Text>, _>(changed.iter().map(|p| p.read.0).collect::<Vec<_>>())
                .bind::<Array<Integer>, _>(changed.iter().map(|p| p.read.1).collect::<Vec<_>>())
                .bind::<Array<BigInt>, _>(
                    changed
                        .iter()
                        .map(|p| p.order.refunded_cents)
                        .collect::<Vec<_>>(),
                )
                .bind::<Array<BigInt>, _>(
                    changed
                        .iter()
                        .map(|p| p.order.refund_pending_cents)
                        .collect::<Vec<_>>(),
                )
                .execute(&mut &*conn)
                .await?;
            if updated == changed.len() {
                Ok(())
            } else {
                Err(OrderError::Unexpected(anyhow::anyhow!(
                    "{} of {} locked orders changed under their locks",
                    changed.len() - updated,
                    changed.len()
                )))
            }
        };
        let history = async {
            if self.history.is_empty() {
                return Ok(());
            }
            prepared(HISTORY_BATCH)
                .bind::<Array<SqlUuid>, _>(self.history.iter().map(|h| h.0).collect::<Vec<_>>())
                .bind::<Array<Text>, _>(self.history.iter().map(|h| h.1).collect::<Vec<_>>())
                .bind::<Array<Text>, _>(
                    self.history
                        .iter()
                        .map(|h| h.2.as_str())
                        .collect::<Vec<_>>(),
                )
                .bind::<Array<Text>, _>(self.history.iter().map(|h| h.3).collect::<Vec<_>>())
                .execute(&mut &*conn)
                .await?;
            Ok::<_, OrderError>(())
        };
        let messages = async { Ok(shop_outbox::enqueue(conn, &self.messages).await?) };
        let ((), (), written) = futures_util::future::try_join3(orders, history, messages).await?;
        Ok(written)
    }
}

/// What a report says of the payment, kept on the order; a late report never lowers the
/// attempts.
fn note_payment(order: &mut Order, payment: &PaymentSummary) {
    order.payment_status = Some(payment.status);
    order.payment_attempts = order.payment_attempts.max(payment.attempts);
    order.payment_last_error = payment.last_error.clone();
}

/// The outbox messages of a transition just applied: its events numbered with the sequence
/// numbers the change took (the last is the order's `event_seq` now).
fn messages(
    order: &Order,
    transition: &Transition,
    context: &RequestContext,
) -> Result<Vec<NewMessage>, OrderError> {
    let mut seq = order.event_seq - transition.events();
    let cause = Some(transition.cause.as_str());
    transition
        .messages
        .iter()
        .map(|message| {
            if message.is_event() {
                seq += 1;
            }
            let message = match message {
                Message::PaymentRequested => events::payment_requested(order, seq, context),
                Message::PaymentCancel => events::payment_cancel(order, seq, context),
                Message::ReleaseStock => events::release(order.id),
                Message::Notify => events::status_changed(
                    order,
                    seq,
                    cause.filter(|_| notify_with_cause(transition.cause)),
                    context,
                ),
            };
            message.map_err(|e| unserialisable(order, e))
        })
        .collect()
}

/// An event that would not serialise: a bug, never bad input.
fn unserialisable(order: &Order, error: serde_json::Error) -> OrderError {
    OrderError::Unexpected(anyhow::anyhow!("an event of {}: {error}", order.id))
}

/// Which `order.*` events say why: failures and cancellations do, the happy path does not.
fn notify_with_cause(cause: Cause) -> bool {
    matches!(
        cause,
        Cause::PaymentFailed | Cause::PaymentTimeout | Cause::CancelledByUser
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A transition in words: `from → to, by whom (cause): what it writes`.
    fn describe(transition: &Transition) -> String {
        let from: Vec<&str> = transition.from.iter().map(|s| s.as_str()).collect();
        let actor = match transition.actor {
            Actor::User(_) => "the owner",
            Actor::Admin(_) => "an administrator",
            Actor::Payment => "the payment service",
            Actor::System => "the system",
        };
        let messages: Vec<&str> = transition
            .messages
            .iter()
            .map(|m| match m {
                Message::PaymentRequested => "payment.requested",
                Message::PaymentCancel => "payment.cancel",
                Message::ReleaseStock => "stock.release",
                Message::Notify => {
                    let data = shop_contracts::events::OrderStatusChanged {
                        status: transition.to.as_str().to_owned(),
                        cause: None,
                        total_cents: None,
                        currency: None,
                        carrier: None,
                        tracking_number: None,
                        refunded_cents: None,
                    };
                    events::announcing(transition.to, data)
                        .map_or("nothing announced", |e| e.name())
                }
            })
            .collect();
        format!(
            "{} → {}, by {actor} ({}): {}",
            from.join(" or "),
            transition.to.as_str(),
            transition.cause.as_str(),
            if messages.is_empty() {
                "nothing".to_owned()
            } else {
                messages.join(", ")
            }
        )
    }

    /// DESIGN.md's saga, step by step: what may become what, who does it, why, and what it
    /// tells the rest of the system.
    #[test]
    fn the_transitions_are_the_saga() {
        let (user, admin) = (UserId::new(), UserId::new());
        let saga = [
            // 1. Place: reserved, the payment is requested and the user told.
            (
                Transition::reserved(900),
                "reserving → pending, by the system (reserved): payment.requested, order.created",
            ),
            // 1. Short stock or a bad product: nothing held, nothing published.
            (
                Transition::refused(Cause::InsufficientStock),
                "reserving → failed, by the system (insufficient_stock): nothing",
            ),
            // 1. The catalog unreachable: released, in case it did reserve.
            (
                Transition::catalog_unavailable(),
                "reserving → failed, by the system (catalog_unavailable): stock.release",
            ),
            // 1. Recovery: left reserving past RESERVE_TIMEOUT.
            (
                Transition::abandoned(),
                "reserving → failed, by the system (reservation_abandoned): stock.release",
            ),
            // 5. Paid, only from pending.
            (
                Transition::paid(1),
                "pending → paid, by the payment service (payment_succeeded): order.paid",
            ),
            // 5. The last attempt failed, only from pending: the stock goes back.
            (
                Transition::payment_failed(3, None),
                "pending → failed, by the payment service (payment_failed): \
                 stock.release, order.failed",
            ),
            // 6. Cancel, only while pending: the stock back, the payment told to stop.
            (
                Transition::cancelled_by(user),
                "pending → cancelled, by the owner (cancelled_by_user): \
                 stock.release, payment.cancel, order.cancelled",
            ),
            // 6. Pending past ORDER_PAYMENT_TIMEOUT: as a cancel, by the system.
            (
                Transition::payment_timeout(),
                "pending → failed, by the system (payment_timeout): \
                 stock.release, payment.cancel, order.failed",
            ),
            // Fulfilment: paid → shipped → delivered, by an administrator.
            (
                Transition::shipped(admin, Shipment::default()),
                "paid → shipped, by an administrator (fulfilment): order.shipped",
            ),
            (
                Transition::delivered(admin),
                "shipped → delivered, by an administrator (fulfilment): order.delivered",
            ),
            // Refunds: the last captured cent given back, from any status after paid.
            (
                Transition::refunded(),
                "paid or shipped or delivered → refunded, by the payment service (refunded): \
                 order.refunded",
            ),
        ];
        for (transition, expected) in &saga {
            assert_eq!(describe(transition), *expected);
        }
        assert_eq!(
            Transition::cancelled_by(user).actor.label(),
            format!("user:{user}")
        );
        assert_eq!(
            Transition::shipped(admin, Shipment::default())
                .actor
                .label(),
            format!("admin:{admin}")
        );
    }

    #[test]
    fn final_statuses_are_final_and_reserving_is_left_only_by_the_saga() {
        let (user, admin) = (UserId::new(), UserId::new());
        let all = [
            Transition::reserved(1),
            Transition::refused(Cause::UnknownProduct),
            Transition::catalog_unavailable(),
            Transition::abandoned(),
            Transition::paid(1),
            Transition::payment_failed(1, None),
            Transition::cancelled_by(user),
            Transition::payment_timeout(),
            Transition::shipped(admin, Shipment::default()),
            Transition::delivered(admin),
            Transition::refunded(),
        ];
        for end in [Failed, Cancelled, Refunded] {
            assert!(
                all.iter().all(|t| !t.from.contains(&end)),
                "{end:?} is final"
            );
        }
        assert!(
            all.iter().all(|t| t.to != Reserving),
            "nothing goes back to reserving"
        );
        let into_paid: Vec<_> = all.iter().filter(|t| t.to == Paid).collect();
        assert_eq!(into_paid.len(), 1);
        assert_eq!(into_paid[0].from, [Pending], "only a pending order is paid");
        // Every way out of pending but payment releases the stock.
        for t in all.iter().filter(|t| t.from == [Pending] && t.to != Paid) {
            assert!(t.messages.contains(&Message::ReleaseStock), "{:?}", t.cause);
        }
        assert_eq!(
            Transition::fulfilment(Paid, admin, Shipment::default()),
            None
        );
        assert_eq!(
            Transition::fulfilment(Refunded, admin, Shipment::default()),
            None
        );
        let tracked = Shipment {
            carrier: Some("La Poste".into()),
            tracking_number: None,
        };
        assert_eq!(
            Transition::fulfilment(Delivered, admin, tracked.clone()),
            None,
            "a shipment goes only with shipped"
        );
        assert_eq!(
            Transition::fulfilment(Shipped, admin, tracked.clone()).and_then(|t| t.shipment),
            Some(tracked)
        );
        assert_eq!(
            Transition::fulfilment(Shipped, admin, Shipment::default()),
            Some(Transition::shipped(admin, Shipment::default()))
        );
    }

    #[test]
    fn a_transition_numbers_only_its_events() {
        assert_eq!(Transition::cancelled_by(UserId::new()).events(), 2);
        assert_eq!(Transition::catalog_unavailable().events(), 0);
        assert_eq!(Transition::reserved(1).events(), 2);
    }
}
