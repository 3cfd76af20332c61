//! What the payment service reports (DESIGN.md saga step 5): each attempt and the final
//! outcome, idempotent on (order, attempt, outcome), many reports per call and one transaction
//! per call. `paid` and `failed` apply only to a pending order; otherwise the answer is 409
//! `order-not-pending` with the order's status, and a success is then refunded by the payment
//! service.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use diesel::{
    QueryableByName,
    sql_types::{Array, Bool, Int2, Int4, Nullable, Text, Timestamptz, Uuid as SqlUuid},
};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use shop_contracts::OrderId;
use shop_contracts::{
    PaymentStatus,
    events::{PaymentEvent, PaymentOutcome, PaymentReport, RefundReport, RefundReportAnswer},
};
use shop_db::prepared;
use shop_http::{FieldError, RequestContext};

use crate::{
    AppState,
    error::OrderError,
    lifecycle::{Actor, Batch, Cause, PaymentSummary, Transition},
    models::Status,
    refunds,
};

/// The answer to one report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// Recorded (200), with the order's status after it.
    Accepted(Status),
    /// The order is no longer pending (409), with its status.
    NotPending(Status),
    /// No such order (404).
    Unknown,
}

impl Reply {
    /// The HTTP status the report is answered with.
    pub fn code(self) -> u16 {
        match self {
            Reply::Accepted(_) => 200,
            Reply::NotPending(_) => 409,
            Reply::Unknown => 404,
        }
    }

    /// [`Reply::code`] as `payment_events.answer_status` stores it.
    fn stored_code(self) -> i16 {
        match self {
            Reply::Accepted(_) => 200,
            Reply::NotPending(_) => 409,
            Reply::Unknown => 404,
        }
    }

    /// The order's status, when there is an order.
    pub fn status(self) -> Option<Status> {
        match self {
            Reply::Accepted(status) | Reply::NotPending(status) => Some(status),
            Reply::Unknown => None,
        }
    }
}

/// Records one report; a repeat gets the first answer.
pub async fn report(
    state: &AppState,
    order_id: OrderId,
    event: &PaymentEvent,
    context: &RequestContext,
) -> Result<Reply, OrderError> {
    if event.attempt_no < 1 {
        return Err(OrderError::field("attemptNo", "must be at least 1"));
    }
    let report = PaymentReport {
        order_id,
        event: event.clone(),
        traceparent: Some(context.traceparent.header_value()),
    };
    let (replies, _) = record(state, std::slice::from_ref(&report), &[], context).await?;
    Ok(replies.into_iter().next().unwrap_or(Reply::Unknown))
}

/// Records a batch of reports and refund reports, in order, in one transaction; one reply per
/// report and one answer per refund report.
pub async fn report_many(
    state: &AppState,
    reports: &[PaymentReport],
    refunds: &[RefundReport],
    context: &RequestContext,
) -> Result<(Vec<Reply>, Vec<RefundReportAnswer>), OrderError> {
    let invalid: Vec<FieldError> = reports
        .iter()
        .enumerate()
        .filter(|(_, r)| r.event.attempt_no < 1)
        .map(|(i, _)| {
            FieldError::new(
                format!("reports[{i}].event.attemptNo"),
                "must be at least 1",
            )
        })
        .collect();
    if !invalid.is_empty() {
        return Err(OrderError::Validation(invalid));
    }
    record(state, reports, refunds, context).await
}

const ANSWERED: &str = "
SELECT e.order_id, e.attempt_no, e.outcome, e.answer_status FROM payment_events e
JOIN unnest($1::uuid[], $2::int4[], $3::text[]) AS r(order_id, attempt_no, outcome)
  ON e.order_id = r.order_id AND e.attempt_no = r.attempt_no AND e.outcome = r.outcome";

#[derive(QueryableByName)]
struct Answered {
    #[diesel(sql_type = SqlUuid)]
    order_id: OrderId,
    #[diesel(sql_type = Int4)]
    attempt_no: i32,
    #[diesel(sql_type = Text)]
    outcome: PaymentOutcome,
    #[diesel(sql_type = Int2)]
    answer_status: i16,
}

const RECORD_ANSWERS: &str = "
INSERT INTO payment_events
    (order_id, attempt_no, outcome, error, next_retry_at, is_final, answer_status)
SELECT * FROM unnest($1::uuid[], $2::int4[], $3::text[], $4::text[], $5::timestamptz[],
    $6::bool[], $7::int2[])";

type Key = (OrderId, i32, PaymentOutcome);

fn key(report: &PaymentReport) -> Key {
    (
        report.order_id,
        report.event.attempt_no,
        report.event.outcome,
    )
}

async fn record(
    state: &AppState,
    reports: &[PaymentReport],
    refunds: &[RefundReport],
    context: &RequestContext,
) -> Result<(Vec<Reply>, Vec<RefundReportAnswer>), OrderError> {
    let ids: Vec<OrderId> = reports
        .iter()
        .map(|r| r.order_id)
        .chain(refunds.iter().map(|r| r.order_id))
        .collect();
    let mut conn = shop_db::conn(&state.pool).await?;
    let (replies, refunded, written) = conn
        .transaction::<_, OrderError, _>(async |conn| {
            let conn: &AsyncPgConnection = conn;
            // Independent of each other: sent together.
            let (mut answered, mut batch) =
                futures_util::future::try_join(answered(conn, reports), Batch::lock(conn, &ids))
                    .await?;
            let mut replies = Vec::with_capacity(reports.len());
            let mut recorded: Vec<(&PaymentReport, Reply)> = Vec::new();
            for report in reports {
                let reply = match answered.get(&key(report)) {
                    // A repeat gets the first answer, with the order's status now.
                    Some(code) => match batch.status(report.order_id) {
                        Some(status) if *code == 200 => Reply::Accepted(status),
                        Some(status) => Reply::NotPending(status),
                        None => Reply::Unknown,
                    },
                    None => {
                        let span = tracing::info_span!(
                            "payment report",
                            order.id = %report.order_id,
                            payment.attempt_no = report.event.attempt_no,
                            payment.outcome = report.event.outcome.as_str(),
                        );
                        shop_http::continue_trace(&span, report.traceparent.as_deref());
                        let _entered = span.enter();
                        let context = RequestContext {
                            traceparent: report
                                .traceparent
                                .as_deref()
                                .and_then(shop_http::TraceParent::parse)
                                .map(|trace| trace.within(&span))
                                .unwrap_or_else(|| context.traceparent),
                            ..context.clone()
                        };
                        let reply = apply(&mut batch, report.order_id, &report.event, &context)?;
                        if reply != Reply::Unknown {
                            // A repeat later in this batch gets this answer.
                            answered.insert(key(report), reply.stored_code());
                            recorded.push((report, reply));
                        }
                        reply
                    }
                };
                replies.push(reply);
            }
            let refunded = refunds::record_reports(conn, &mut batch, refunds, context).await?;
            let (written, ()) =
                futures_util::future::try_join(batch.write(conn), record_answers(conn, &recorded))
                    .await?;
            Ok((replies, refunded, written))
        })
        .await?;
    state.relay.wake(written);
    Ok((replies, refunded))
}

/// The answers given before to any of these reports.
async fn answered(
    conn: &AsyncPgConnection,
    reports: &[PaymentReport],
) -> Result<HashMap<Key, i16>, OrderError> {
    let rows: Vec<Answered> = prepared(ANSWERED)
        .bind::<Array<SqlUuid>, _>(reports.iter().map(|r| r.order_id).collect::<Vec<_>>())
        .bind::<Array<Int4>, _>(
            reports
                .iter()
                .map(|r| r.event.attempt_no)
                .collect::<Vec<_>>(),
        )
        .bind::<Array<Text>, _>(reports.iter().map(|r| r.event.outcome).collect::<Vec<_>>())
        .load(&mut &*conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(|row| {
            (
                (row.order_id, row.attempt_no, row.outcome),
                row.answer_status,
            )
        })
        .collect())
}

/// What a first report does to its order, in the batch.
fn apply(
    batch: &mut Batch,
    order_id: OrderId,
    event: &PaymentEvent,
    context: &RequestContext,
) -> Result<Reply, OrderError> {
    let Some(status) = batch.status(order_id) else {
        return Ok(Reply::Unknown);
    };
    let error = event.error.clone();
    let transition = match (event.outcome, event.is_final) {
        (PaymentOutcome::Refunded, _) => {
            let summary = PaymentSummary {
                status: PaymentStatus::Refunded,
                attempts: event.attempt_no,
                last_error: error,
            };
            let noted = Some((Actor::Payment, Cause::PaymentRefunded));
            batch.record_payment(order_id, None, &summary, noted);
            return Ok(Reply::Accepted(status));
        }
        (PaymentOutcome::Failed, false) => {
            let summary = PaymentSummary {
                status: PaymentStatus::Processing,
                attempts: event.attempt_no,
                last_error: error,
            };
            return Ok(
                match batch.record_payment(order_id, Some(&[Status::Pending]), &summary, None) {
                    Some(status) => Reply::Accepted(status),
                    None => Reply::NotPending(status),
                },
            );
        }
        (PaymentOutcome::Failed, true) => Transition::payment_failed(event.attempt_no, error),
        (PaymentOutcome::Succeeded, _) => Transition::paid(event.attempt_no),
    };
    Ok(match batch.apply(order_id, &transition, context)? {
        Some(status) => Reply::Accepted(status),
        None => Reply::NotPending(status),
    })
}

/// Stores the answers of a batch's first reports, in one statement.
async fn record_answers(
    conn: &AsyncPgConnection,
    recorded: &[(&PaymentReport, Reply)],
) -> Result<(), OrderError> {
    if recorded.is_empty() {
        return Ok(());
    }
    let next_retry: Vec<Option<DateTime<Utc>>> = recorded
        .iter()
        .map(|(r, _)| r.event.next_retry_at)
        .collect();
    prepared(RECORD_ANSWERS)
        .bind::<Array<SqlUuid>, _>(recorded.iter().map(|(r, _)| r.order_id).collect::<Vec<_>>())
        .bind::<Array<Int4>, _>(
            recorded
                .iter()
                .map(|(r, _)| r.event.attempt_no)
                .collect::<Vec<_>>(),
        )
        .bind::<Array<Text>, _>(
            recorded
                .iter()
                .map(|(r, _)| r.event.outcome)
                .collect::<Vec<_>>(),
        )
        .bind::<Array<Nullable<Text>>, _>(
            recorded
                .iter()
                .map(|(r, _)| r.event.error.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind::<Array<Nullable<Timestamptz>>, _>(next_retry)
        .bind::<Array<Bool>, _>(
            recorded
                .iter()
                .map(|(r, _)| r.event.is_final)
                .collect::<Vec<_>>(),
        )
        .bind::<Array<Int2>, _>(
            recorded
                .iter()
                .map(|(_, reply)| reply.stored_code())
                .collect::<Vec<_>>(),
        )
        .execute(&mut &*conn)
        .await?;
    Ok(())
}
