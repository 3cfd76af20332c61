//! Background work: the outbox's `stock.release` command, and the sweeps that keep the saga
//! moving when a request, the catalog or a stream entry was lost.

use std::time::Duration;

use chrono::Utc;
use diesel::{
    dsl::sql,
    sql_types::{BigInt, Bool},
};
use diesel_async::{AsyncConnection, RunQueryDsl};
use futures_util::future::BoxFuture;
use shop_client::{Idempotency, ServiceClient, reqwest::Method};
use shop_contracts::events::types;
use shop_http::RequestContext;
use shop_outbox::CommandHandler;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::{AppState, error::OrderError, events, models::Status, repo};

/// Only one instance sweeps at a time (a transaction-scoped advisory lock).
const SWEEP_LOCK: i64 = 0x4f52_4445_5253_5750;
const BATCH: i64 = 100;

/// Runs `stock.release` against the catalog (idempotent there, so a repeat is harmless).
#[derive(Debug)]
pub struct ReleaseStock {
    pub catalog: ServiceClient,
}

impl CommandHandler for ReleaseStock {
    fn run<'a>(
        &'a self,
        topic: &'a str,
        payload: &'a serde_json::Value,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            if topic != events::RELEASE {
                return Err(format!("unknown command {topic}"));
            }
            let order_id: Uuid = payload["orderId"]
                .as_str()
                .and_then(|id| id.parse().ok())
                .ok_or_else(|| "command without an orderId".to_owned())?;
            let reply = self
                .catalog
                .call::<()>(
                    Method::POST,
                    &format!("/internal/reservations/{order_id}/release"),
                    None,
                    Idempotency::Idempotent,
                    &RequestContext::background(),
                )
                .await
                .map_err(|e| e.to_string())?;
            if reply.status.is_success() {
                Ok(())
            } else {
                Err(format!("catalog answered {}", reply.status))
            }
        })
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
    let changed = conn
        .transaction::<_, OrderError, _>(async |conn| {
            let leader: bool = diesel::select(
                sql::<Bool>("pg_try_advisory_xact_lock(")
                    .bind::<BigInt, _>(SWEEP_LOCK)
                    .sql(")"),
            )
            .get_result(conn)
            .await?;
            if !leader {
                return Ok(0);
            }
            let mut changed = 0;
            for order in repo::stale(
                conn,
                Status::Reserving,
                ago(state.sweeps.reserve_timeout),
                BATCH,
            )
            .await?
            {
                if repo::transition(conn, order.id, &[Status::Reserving], Status::Failed)
                    .await?
                    .is_none()
                {
                    continue;
                }
                repo::add_history(
                    conn,
                    order.id,
                    Status::Failed,
                    "system",
                    Some("reservation_abandoned"),
                )
                .await?;
                shop_outbox::enqueue(conn, events::CHANNEL, &[events::release(order.id)]).await?;
                tracing::warn!(order.id = %order.id, "reservation abandoned; releasing");
                changed += 1;
            }
            for order in repo::stale(
                conn,
                Status::Pending,
                ago(state.sweeps.payment_timeout),
                BATCH,
            )
            .await?
            {
                let Some(failed) =
                    repo::transition(conn, order.id, &[Status::Pending], Status::Failed).await?
                else {
                    continue;
                };
                repo::add_history(
                    conn,
                    order.id,
                    Status::Failed,
                    "system",
                    Some("payment_timeout"),
                )
                .await?;
                let messages = vec![
                    events::release(order.id),
                    events::payment_cancel(conn, &failed, &context).await?,
                    events::status_changed(
                        conn,
                        &failed,
                        types::ORDER_FAILED,
                        Some("payment_timeout"),
                        &context,
                    )
                    .await?,
                ];
                shop_outbox::enqueue(conn, events::CHANNEL, &messages).await?;
                tracing::warn!(order.id = %order.id, "payment timed out");
                changed += 1;
            }
            for order in repo::unreported(conn, ago(state.sweeps.resend_after), BATCH).await? {
                let message = events::payment_requested(conn, &order, &context).await?;
                shop_outbox::enqueue(conn, events::CHANNEL, &[message]).await?;
                repo::mark_payment_requested(conn, order.id).await?;
                tracing::warn!(order.id = %order.id, "payment service silent; request sent again");
                changed += 1;
            }
            repo::purge_claims(conn, ago(state.sweeps.claims_ttl)).await?;
            Ok(changed)
        })
        .await?;
    if changed > 0 {
        state.relay.wake();
    }
    Ok(())
}
