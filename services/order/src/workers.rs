//! Background work: the outbox's `stock.release` command, and the sweeps that keep the saga
//! moving when a request, the catalog or a stream entry was lost.

use std::time::Duration;

use chrono::Utc;
use diesel::{
    dsl::sql,
    sql_types::{BigInt, Bool},
};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use futures_util::future::BoxFuture;
use shop_client::{Idempotency, ServiceClient, reqwest::Method};
use shop_http::RequestContext;
use shop_outbox::{Command, CommandHandler, Outcome, Written};
use tokio_util::sync::CancellationToken;

use crate::{
    AppState,
    error::OrderError,
    events,
    lifecycle::{self, Transition},
    models::Status,
    repo,
};

/// Only one instance sweeps at a time (a transaction-scoped advisory lock).
const SWEEP_LOCK: i64 = 0x4f52_4445_5253_5750;
const BATCH: i64 = 100;

/// Runs `stock.release` against the catalog (idempotent there, so a repeat is harmless), each
/// order's commands in turn and the orders at once.
#[derive(Debug)]
pub struct ReleaseStock {
    pub catalog: ServiceClient,
}

/// Why a release did not happen this time (it is tried again).
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    #[error("the catalog could not be asked: {0}")]
    Unreachable(#[from] shop_client::ClientError),
    #[error("the catalog answered {0}")]
    Refused(shop_client::reqwest::StatusCode),
}

impl ReleaseStock {
    async fn release(&self, command: &Command<events::ReleaseStock>) -> Result<(), ReleaseError> {
        let order_id = command.payload.order_id;
        let reply = self
            .catalog
            .call::<()>(
                Method::POST,
                &format!("/internal/reservations/{order_id}/release"),
                None,
                Idempotency::Idempotent,
                &RequestContext::background(),
            )
            .await?;
        if reply.status.is_success() {
            Ok(())
        } else {
            Err(ReleaseError::Refused(reply.status))
        }
    }
}

impl CommandHandler for ReleaseStock {
    type Command = events::ReleaseStock;
    type Error = ReleaseError;

    fn run<'a>(
        &'a self,
        _conn: &'a mut AsyncPgConnection,
        commands: &'a [Command<events::ReleaseStock>],
    ) -> BoxFuture<'a, Vec<Outcome<ReleaseError>>> {
        Box::pin(shop_outbox::run_lanes(commands, |command| {
            self.release(command)
        }))
    }
}

/// Sweeps every `WORKER_INTERVAL` until cancelled.
pub async fn run(state: AppState, cancel: CancellationToken) {
    loop {
        if let Err(error) = sweep(&state).await {
            tracing::warn!(%error, "order sweep failed");
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(state.sweeps.interval) => {}
        }
    }
}

/// Timings of the sweeps.
#[derive(Debug, Clone)]
pub struct Sweeps {
    pub interval: Duration,
    pub reserve_timeout: Duration,
    pub payment_timeout: Duration,
    pub resend_after: Duration,
    pub claims_ttl: Duration,
}

fn ago(duration: Duration) -> chrono::DateTime<Utc> {
    Utc::now() - chrono::Duration::from_std(duration).unwrap_or_default()
}

/// One sweep, if no other instance is sweeping:
/// - orders left `reserving` past `RESERVE_TIMEOUT` fail (`reservation_abandoned`) and release;
/// - orders `pending` past `ORDER_PAYMENT_TIMEOUT` fail (`payment_timeout`), release, and tell
///   the payment service to stop;
/// - pending orders the payment service never reported on get their request sent again
///   (a lost stream entry delays an order, never strands it);
/// - idempotency claims older than their TTL are purged.
pub async fn sweep(state: &AppState) -> Result<(), OrderError> {
    let context = RequestContext::background();
    let mut conn = shop_db::conn(&state.pool).await?;
    let written = conn
        .transaction::<_, OrderError, _>(async |conn| {
            let leader: bool = diesel::select(
                sql::<Bool>("pg_try_advisory_xact_lock(")
                    .bind::<BigInt, _>(SWEEP_LOCK)
                    .sql(")"),
            )
            .get_result(conn)
            .await?;
            if !leader {
                return Ok(Written::NOTHING);
            }
            let mut written = Written::NOTHING;
            let abandoned = repo::stale(
                conn,
                Status::Reserving,
                ago(state.sweeps.reserve_timeout),
                BATCH,
            )
            .await?;
            for order in abandoned {
                let transition = Transition::abandoned();
                if let Some(applied) =
                    lifecycle::apply(conn, order.id, None, &transition, &context).await?
                {
                    tracing::warn!(order.id = %order.id, "reservation abandoned; releasing");
                    written |= applied.written;
                }
            }
            let unpaid = repo::stale(
                conn,
                Status::Pending,
                ago(state.sweeps.payment_timeout),
                BATCH,
            )
            .await?;
            for order in unpaid {
                let transition = Transition::payment_timeout();
                if let Some(applied) =
                    lifecycle::apply(conn, order.id, None, &transition, &context).await?
                {
                    tracing::warn!(order.id = %order.id, "payment timed out");
                    written |= applied.written;
                }
            }
            for order in repo::unreported(conn, ago(state.sweeps.resend_after), BATCH).await? {
                if let Some(wrote) =
                    lifecycle::request_payment_again(conn, order.id, &context).await?
                {
                    tracing::warn!(
                        order.id = %order.id,
                        "payment service silent; request sent again"
                    );
                    written |= wrote;
                }
            }
            repo::purge_claims(conn, ago(state.sweeps.claims_ttl)).await?;
            Ok(written)
        })
        .await?;
    state.relay.wake(written);
    Ok(())
}
