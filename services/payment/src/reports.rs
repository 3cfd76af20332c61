//! Reports to the order service, run by the outbox relay until accepted: a relay batch of
//! reports goes in one call, recorded there in one transaction, with an answer per report.
//! When an order is no longer pending (409 `order-not-pending`), a success is refunded
//! (simulated) and reported as such, and a payment still retrying stops.

use std::sync::Arc;

use diesel_async::{AsyncConnection, AsyncPgConnection};
use futures_util::future::BoxFuture;
use shop_client::{Idempotency, ServiceClient, reqwest::Method};
use shop_contracts::PaymentStatus;
use shop_contracts::events::{
    Event, PaymentEvent, PaymentOutcome, PaymentReport, PaymentReportAnswers, PaymentReports,
    PaymentSettled, RefundReport,
};
use shop_db::Pool;
use shop_http::RequestContext;
use shop_outbox::{Command, CommandHandler, Outcome, RelayHandle};

use crate::{
    events::{self, Report, ReportCommand},
    models::NewAttempt,
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

/// Why a report was not accepted this time (it is sent again).
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("the order service could not be asked: {0}")]
    Unreachable(#[from] shop_client::ClientError),
    #[error("the order service answered {0}")]
    Answered(u16),
    #[error("unreadable answer to the reports: {0}")]
    Unreadable(#[from] serde_json::Error),
    #[error("the order service answered {answered} of {sent} reports")]
    Incomplete { answered: usize, sent: usize },
    #[error(transparent)]
    Db(#[from] shop_db::DbError),
}

impl CommandHandler for Reporter {
    type Command = ReportCommand;
    /// Shared by the reports of a batch that failed together.
    type Error = Arc<ReportError>;

    fn run<'a>(
        &'a self,
        conn: &'a mut AsyncPgConnection,
        commands: &'a [Command<ReportCommand>],
    ) -> BoxFuture<'a, Vec<Outcome<Arc<ReportError>>>> {
        Box::pin(self.report(conn, commands))
    }
}

impl Reporter {
    async fn report(
        &self,
        conn: &mut AsyncPgConnection,
        commands: &[Command<ReportCommand>],
    ) -> Vec<Outcome<Arc<ReportError>>> {
        let all_failed = |error: ReportError| {
            let error = Arc::new(error);
            vec![Outcome::Failed(error); commands.len()]
        };
        if commands.is_empty() {
            return Vec::new();
        }
        let attempts: Vec<&Report> = commands
            .iter()
            .filter_map(|c| match &c.payload {
                ReportCommand::Attempt(report) => Some(report),
                ReportCommand::Refund(_) => None,
            })
            .collect();
        let refunds: Vec<&RefundReport> = commands
            .iter()
            .filter_map(|c| match &c.payload {
                ReportCommand::Refund(report) => Some(report),
                ReportCommand::Attempt(_) => None,
            })
            .collect();
        let body = PaymentReports {
            reports: attempts
                .iter()
                .map(|report| PaymentReport {
                    order_id: report.order_id,
                    event: report.event.clone(),
                    traceparent: report.traceparent.clone(),
                })
                .collect(),
            refunds: refunds.iter().map(|r| (*r).clone()).collect(),
        };
        let answers = match self.send(&body).await {
            Ok(answers)
                if answers.answers.len() == attempts.len()
                    && answers.refunds.len() == refunds.len() =>
            {
                answers
            }
            Ok(answers) => {
                return all_failed(ReportError::Incomplete {
                    answered: answers.answers.len() + answers.refunds.len(),
                    sent: commands.len(),
                });
            }
            Err(error) => return all_failed(error),
        };
        let (mut attempt_answers, mut refund_answers) =
            (answers.answers.into_iter(), answers.refunds.into_iter());
        let mut outcomes = Vec::with_capacity(commands.len());
        let mut reported = Vec::new();
        let mut refunds_reported = Vec::new();
        for command in commands {
            let outcome = match &command.payload {
                ReportCommand::Attempt(report) => {
                    let status = attempt_answers.next().map_or(0, |a| a.status);
                    let outcome = self.attempt_answered(report, status).await;
                    if matches!(outcome, Outcome::Done) {
                        reported.push((
                            report.payment_id,
                            report.event.attempt_no,
                            report.event.outcome,
                        ));
                    }
                    outcome
                }
                ReportCommand::Refund(report) => {
                    let status = refund_answers.next().map_or(0, |a| a.status);
                    let outcome = refund_answered(report, status);
                    if matches!(outcome, Outcome::Done) {
                        refunds_reported.push(report.refund_id);
                    }
                    outcome
                }
            };
            outcomes.push(outcome);
        }
        // Bookkeeping in the relay's transaction: lost with it, the reports go again and the
        // order service answers them as before.
        let marked = match repo::mark_reported(conn, &reported).await {
            Ok(()) => repo::mark_refunds_reported(conn, &refunds_reported).await,
            Err(error) => Err(error),
        };
        if let Err(error) = marked {
            tracing::warn!(%error, "reports not marked; they will be sent again");
            return all_failed(ReportError::Db(error.into()));
        }
        outcomes
    }

    /// What an attempt's report comes to, by the order service's answer.
    async fn attempt_answered(&self, report: &Report, status: u16) -> Outcome<Arc<ReportError>> {
        match status {
            200 => Outcome::Done,
            409 => match self.order_moved_on(report).await {
                Ok(()) => Outcome::Done,
                Err(error) => Outcome::Failed(Arc::new(error.into())),
            },
            404 => {
                tracing::warn!(
                    order.id = %report.order_id,
                    "the order service does not know this order"
                );
                Outcome::Done
            }
            other => Outcome::Failed(Arc::new(ReportError::Answered(other))),
        }
    }

    /// One call with every report.
    async fn send(&self, body: &PaymentReports) -> Result<PaymentReportAnswers, ReportError> {
        let reply = self
            .order
            .call(
                Method::POST,
                "/internal/payment-reports",
                Some(body),
                Idempotency::Idempotent,
                &RequestContext::background(),
            )
            .await?;
        if reply.status != 200 {
            return Err(ReportError::Answered(reply.status.as_u16()));
        }
        Ok(reply.json()?)
    }

    /// The order is no longer pending: refund a success, stop a payment still retrying.
    async fn order_moved_on(&self, report: &Report) -> Result<(), shop_db::DbError> {
        let mut conn = shop_db::conn(&self.pool).await?;
        let written = conn
            .transaction::<_, shop_db::DbError, _>(async |conn| {
                let Some(payment) = repo::lock(conn, report.payment_id).await? else {
                    return Ok(shop_outbox::Written::NOTHING);
                };
                match (report.event.outcome, payment.status) {
                    (PaymentOutcome::Succeeded, PaymentStatus::Succeeded) => {
                        let payment =
                            repo::set_status(conn, payment.id, PaymentStatus::Refunded).await?;
                        let attempt_no = report.event.attempt_no;
                        repo::insert_attempt(
                            conn,
                            &NewAttempt {
                                payment_id: payment.id,
                                attempt_no,
                                outcome: PaymentOutcome::Refunded,
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
                            refund_id: None,
                        };
                        let refund = PaymentEvent {
                            attempt_no,
                            outcome: PaymentOutcome::Refunded,
                            error: None,
                            next_retry_at: None,
                            is_final: true,
                        };
                        let messages = [
                            events::notification(&payment, seq, Event::PaymentRefunded(data)),
                            events::report(&payment, &refund),
                        ]
                        .into_iter()
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(events::unserialisable)?;
                        tracing::warn!(
                            order.id = %payment.order_id,
                            "success for an order no longer pending: refunded"
                        );
                        Ok(shop_outbox::enqueue(conn, &messages).await?)
                    }
                    (PaymentOutcome::Failed, PaymentStatus::Processing) => {
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

/// What a refund's report comes to, by the order service's answer.
fn refund_answered(report: &RefundReport, status: u16) -> Outcome<Arc<ReportError>> {
    match status {
        200 => Outcome::Done,
        404 => {
            tracing::warn!(
                order.id = %report.order_id,
                refund.id = %report.refund_id,
                "the order service does not know this refund"
            );
            Outcome::Done
        }
        other => Outcome::Failed(Arc::new(ReportError::Answered(other))),
    }
}
