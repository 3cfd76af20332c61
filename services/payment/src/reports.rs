//! Reports to the order service, run by the outbox relay until accepted: a relay batch of
//! reports goes in one call, recorded there in one transaction, with an answer per report.
//! When an order is no longer pending (409 `order-not-pending`), a success is refunded
//! (simulated) and reported as such, and a payment still retrying stops.

use diesel_async::{AsyncConnection, AsyncPgConnection};
use futures_util::future::BoxFuture;
use shop_client::{Idempotency, ServiceClient, reqwest::Method};
use shop_contracts::events::{
    PaymentEvent, PaymentOutcome, PaymentReport, PaymentReportAnswers, PaymentReports,
    PaymentSettled, types,
};
use shop_db::Pool;
use shop_http::RequestContext;
use shop_outbox::{Command, CommandHandler, Outcome, RelayHandle};
use uuid::Uuid;

use crate::{
    events,
    models::{NewAttempt, status},
    repo,
};

/// Sends `payment.report` commands.
#[derive(Debug)]
pub struct Reporter {
    pub order: ServiceClient,
    pub pool: Pool,
    /// This service's relay, for the refunds a refused success writes.
    pub relay: std::sync::OnceLock<RelayHandle>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Report {
    order_id: Uuid,
    /// The trace the payment belongs to (absent in reports queued before it was recorded).
    #[serde(default)]
    traceparent: Option<String>,
    payment_id: Uuid,
    event: PaymentEvent,
}

impl CommandHandler for Reporter {
    fn run<'a>(
        &'a self,
        conn: &'a mut AsyncPgConnection,
        commands: &'a [Command],
    ) -> BoxFuture<'a, Vec<Outcome>> {
        Box::pin(self.report(conn, commands))
    }
}

impl Reporter {
    async fn report(&self, conn: &mut AsyncPgConnection, commands: &[Command]) -> Vec<Outcome> {
        let mut outcomes = vec![Outcome::Skipped; commands.len()];
        let mut reports: Vec<(usize, Report)> = Vec::with_capacity(commands.len());
        for (index, command) in commands.iter().enumerate() {
            if command.topic != events::REPORT {
                outcomes[index] = Outcome::Failed(format!("unknown command {}", command.topic));
                continue;
            }
            match serde_json::from_value::<Report>(command.payload.clone()) {
                Ok(report) => reports.push((index, report)),
                Err(error) => outcomes[index] = Outcome::Failed(format!("bad report: {error}")),
            }
        }
        if reports.is_empty() {
            return outcomes;
        }
        let body = PaymentReports {
            reports: reports
                .iter()
                .map(|(_, r)| PaymentReport {
                    order_id: r.order_id,
                    event: r.event.clone(),
                    traceparent: r.traceparent.clone(),
                })
                .collect(),
        };
        let answers = match self.send(&body).await {
            Ok(answers) if answers.answers.len() == reports.len() => answers.answers,
            Ok(answers) => {
                let error = format!(
                    "the order service answered {} of {} reports",
                    answers.answers.len(),
                    reports.len()
                );
                for (index, _) in &reports {
                    outcomes[*index] = Outcome::Failed(error.clone());
                }
                return outcomes;
            }
            Err(error) => {
                for (index, _) in &reports {
                    outcomes[*index] = Outcome::Failed(error.clone());
                }
                return outcomes;
            }
        };
        let mut reported = Vec::with_capacity(reports.len());
        for ((index, report), answer) in reports.iter().zip(answers) {
            let outcome = match answer.status {
                200 => Outcome::Done,
                409 => match self.order_moved_on(report).await {
                    Ok(()) => Outcome::Done,
                    Err(error) => Outcome::Failed(error.to_string()),
                },
                404 => {
                    tracing::warn!(
                        order.id = %report.order_id,
                        "the order service does not know this order"
                    );
                    Outcome::Done
                }
                other => Outcome::Failed(format!("order service answered {other}")),
            };
            if outcome == Outcome::Done {
                reported.push((
                    report.payment_id,
                    report.event.attempt_no,
                    report.event.outcome.as_str(),
                ));
            }
            outcomes[*index] = outcome;
        }
        // Bookkeeping in the relay's transaction: lost with it, the reports go again and the
        // order service answers them as before.
        if let Err(error) = repo::mark_reported(conn, &reported).await {
            tracing::warn!(%error, "reports not marked; they will be sent again");
            return vec![Outcome::Failed(error.to_string()); commands.len()];
        }
        outcomes
    }

    /// One call with every report.
    async fn send(&self, body: &PaymentReports) -> Result<PaymentReportAnswers, String> {
        let reply = self
            .order
            .call(
                Method::POST,
                "/internal/payment-reports",
                Some(body),
                Idempotency::Idempotent,
                &RequestContext::background(),
            )
            .await
            .map_err(|e| e.to_string())?;
        if reply.status != 200 {
            return Err(format!("order service answered {}", reply.status));
        }
        reply
            .json()
            .map_err(|e| format!("unreadable answer to the reports: {e}"))
    }

    /// The order is no longer pending: refund a success, stop a payment still retrying.
    async fn order_moved_on(&self, report: &Report) -> Result<(), shop_db::DbError> {
        let mut conn = shop_db::conn(&self.pool).await?;
        let written = conn
            .transaction::<_, shop_db::DbError, _>(async |conn| {
                let Some(payment) = repo::lock(conn, report.payment_id).await? else {
                    return Ok(shop_outbox::Written::NOTHING);
                };
                match (report.event.outcome, payment.status.as_str()) {
                    (PaymentOutcome::Succeeded, status::SUCCEEDED) => {
                        let payment = repo::set_status(conn, payment.id, status::REFUNDED).await?;
                        let attempt_no = report.event.attempt_no;
                        repo::insert_attempt(
                            conn,
                            &NewAttempt {
                                payment_id: payment.id,
                                attempt_no,
                                outcome: PaymentOutcome::Refunded.as_str(),
                                idempotency_key: format!("{}:{attempt_no}:refund", payment.id),
                                error: None,
                                next_retry_at: None,
                                is_final: true,
                            },
                        )
                        .await?;
                        let seq = repo::next_seq(conn, payment.id).await?;
                        let data = PaymentSettled {
                            attempt_no,
                            amount_cents: payment.amount_cents,
                            currency: payment.currency.clone(),
                        };
                        let refund = PaymentEvent {
                            attempt_no,
                            outcome: PaymentOutcome::Refunded,
                            error: None,
                            next_retry_at: None,
                            is_final: true,
                        };
                        let notification =
                            events::notification(&payment, seq, types::PAYMENT_REFUNDED, data)
                                .map_err(events::unserialisable)?;
                        let messages = [notification, events::report(&payment, &refund)];
                        tracing::warn!(
                            order.id = %payment.order_id,
                            "success for an order no longer pending: refunded"
                        );
                        Ok(shop_outbox::enqueue(conn, &messages).await?)
                    }
                    (PaymentOutcome::Failed, status::PROCESSING) => {
                        repo::cancel(conn, payment.order_id).await?;
                        Ok(shop_outbox::Written::NOTHING)
                    }
                    _ => Ok(shop_outbox::Written::NOTHING),
                }
            })
            .await?;
        if let Some(relay) = self.relay.get() {
            relay.wake(written);
        }
        Ok(())
    }
}
