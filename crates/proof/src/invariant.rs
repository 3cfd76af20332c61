//! DESIGN.md's stock invariant and the saga's promises, as queries over a system's database.
//! Each check returns what breaks it, one line per offending row: empty means it holds.

use tokio_postgres::Client;
use uuid::Uuid;

/// Per product: Σ initial + Σ adjust = stock + Σ held reservations, and the ledger's signed
/// sum equals the stock.
pub async fn ledger_violations(client: &Client) -> Result<Vec<String>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT p.id, p.stock, coalesce(m.added, 0), coalesce(m.total, 0), coalesce(r.held, 0)
             FROM catalog.products p
             LEFT JOIN (SELECT product_id,
                               sum(delta) FILTER (WHERE kind IN ('initial', 'adjust')) AS added,
                               sum(delta) AS total
                        FROM catalog.stock_movements GROUP BY product_id) m ON m.product_id = p.id
             LEFT JOIN (SELECT product_id, sum(quantity) AS held
                        FROM catalog.reservations WHERE state = 'held' GROUP BY product_id) r
                    ON r.product_id = p.id
             WHERE coalesce(m.added, 0) <> p.stock + coalesce(r.held, 0)
                OR coalesce(m.total, 0) <> p.stock",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| {
            let (id, stock, added, total, held): (Uuid, i32, i64, i64, i64) =
                (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
            format!("{id}: stock {stock}, initial+adjust {added}, ledger sum {total}, held {held}")
        })
        .collect())
}

/// Held reservations belong exactly to orders in reserving, pending, paid, shipped, delivered
/// or refunded (a refund returns money, not stock), when the system is quiet.
pub async fn hold_violations(client: &Client) -> Result<Vec<String>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT r.order_id, o.status FROM catalog.reservation_orders r
             LEFT JOIN orders.orders o ON o.id = r.order_id
             WHERE (r.state = 'held') <> coalesce(o.status IN ('reserving', 'pending', 'paid', 'shipped', 'delivered', 'refunded'), false)
               AND (r.state = 'held' OR o.status IS NOT NULL)",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| {
            let (order, status): (Uuid, Option<String>) = (row.get(0), row.get(1));
            format!("{order}: order status {status:?}")
        })
        .collect())
}

/// Exactly-once payment: no order was charged twice, every paid order was charged once, and
/// no order that ended unpaid keeps a charge that was not refunded.
pub async fn payment_violations(client: &Client) -> Result<Vec<String>, tokio_postgres::Error> {
    let rows = client
        .query(
            "WITH charges AS (
                 SELECT p.order_id,
                        count(*) FILTER (WHERE a.outcome = 'succeeded') AS charged,
                        count(*) FILTER (WHERE a.outcome = 'refunded') AS refunded
                 FROM payments.payments p
                 LEFT JOIN payments.payment_attempts a ON a.payment_id = p.id
                 GROUP BY p.order_id),
             paid_entries AS (
                 SELECT order_id, count(*) AS entries FROM orders.order_status_history
                 WHERE status = 'paid' AND cause = 'payment_succeeded' GROUP BY order_id)
             SELECT o.id, o.status, coalesce(c.charged, 0), coalesce(c.refunded, 0),
                    coalesce(h.entries, 0)
             FROM orders.orders o
             LEFT JOIN charges c ON c.order_id = o.id
             LEFT JOIN paid_entries h ON h.order_id = o.id
             WHERE coalesce(c.charged, 0) > 1
                OR coalesce(h.entries, 0) > 1
                OR (o.status IN ('paid', 'shipped', 'delivered', 'refunded')
                    AND coalesce(c.charged, 0) <> 1)
                OR (o.status IN ('failed', 'cancelled')
                    AND coalesce(c.charged, 0) > coalesce(c.refunded, 0))",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| {
            let (order, status, charged, refunded, entries): (Uuid, String, i64, i64, i64) =
                (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
            format!(
                "{order}: {status}, {charged} charge(s), {refunded} refund(s), \
                 {entries} paid entr(ies) in its history"
            )
        })
        .collect())
}

/// Refunds never exceed what was captured, and both services agree on them: per payment, the
/// refunds under way or carried out add up to at most its amount (and to its `refunded_cents`);
/// per order, what it shows refunded is what the payment service carried out, and it is
/// `refunded` exactly when that is the whole total; no refund is announced twice. With `quiet`,
/// every accepted refund has also reached a final state in both services.
pub async fn refund_violations(
    client: &Client,
    quiet: bool,
) -> Result<Vec<String>, tokio_postgres::Error> {
    let rows = client
        .query(
            "WITH paid AS (
                 SELECT p.id, p.order_id, p.amount_cents, p.refunded_cents,
                        coalesce(sum(r.amount_cents) FILTER (WHERE r.status IN ('pending', 'succeeded')), 0)::bigint AS accepted,
                        coalesce(sum(r.amount_cents) FILTER (WHERE r.status = 'succeeded'), 0)::bigint AS done,
                        count(r.id) FILTER (WHERE r.status = 'pending') AS open
                 FROM payments.payments p LEFT JOIN payments.refunds r ON r.payment_id = p.id
                 GROUP BY p.id),
             asked AS (
                 SELECT o.id, o.status, o.total_cents, o.refunded_cents, o.refund_pending_cents,
                        coalesce(sum(r.amount_cents) FILTER (WHERE r.status = 'succeeded'), 0)::bigint AS done,
                        coalesce(sum(r.amount_cents) FILTER (WHERE r.status = 'pending'), 0)::bigint AS pending,
                        count(r.id) FILTER (WHERE r.status = 'pending') AS open
                 FROM orders.orders o LEFT JOIN orders.refunds r ON r.order_id = o.id
                 GROUP BY o.id)
             SELECT a.id,
                    CASE
                      WHEN p.accepted > p.amount_cents THEN 'payment refunds exceed its amount'
                      WHEN p.accepted <> p.refunded_cents THEN 'payment refunded_cents disagrees with its refunds'
                      WHEN a.done + a.pending > coalesce(a.total_cents, 0) THEN 'order refunds exceed its total'
                      WHEN a.done <> a.refunded_cents THEN 'order refunded_cents disagrees with its refunds'
                      WHEN a.pending <> a.refund_pending_cents THEN 'order refund_pending_cents disagrees with its refunds'
                      WHEN (a.status = 'refunded') <> (a.done > 0 AND a.done = a.total_cents) THEN 'refunded status disagrees with the amount refunded'
                      WHEN $1 AND (a.open > 0 OR coalesce(p.open, 0) > 0) THEN 'a refund never reached a final state'
                      WHEN $1 AND a.done <> coalesce(p.done, 0) THEN 'order and payment disagree on what was refunded'
                    END AS problem,
                    a.status, a.total_cents, a.done, coalesce(p.done, 0)
             FROM asked a LEFT JOIN paid p ON p.order_id = a.id
             WHERE p.accepted > p.amount_cents
                OR p.accepted <> p.refunded_cents
                OR a.done + a.pending > coalesce(a.total_cents, 0)
                OR a.done <> a.refunded_cents
                OR a.pending <> a.refund_pending_cents
                OR (a.status = 'refunded') <> (a.done > 0 AND a.done = a.total_cents)
                OR ($1 AND (a.open > 0 OR coalesce(p.open, 0) > 0))
                OR ($1 AND a.done <> coalesce(p.done, 0))",
            &[&quiet],
        )
        .await?;
    let mut violations: Vec<String> = client
        .query(
            "SELECT payload->'data'->>'refundId', count(*) FROM payments.outbox
             WHERE payload->>'type' = 'payment.refunded' AND payload->'data' ? 'refundId'
             GROUP BY 1 HAVING count(*) > 1",
            &[],
        )
        .await?
        .iter()
        .map(|row| {
            let (refund, count): (String, i64) = (row.get(0), row.get(1));
            format!("refund {refund}: announced {count} times")
        })
        .collect();
    violations.extend(rows.iter().map(|row| {
        let (order, problem, status, total, order_done, payment_done): (
            Uuid,
            Option<String>,
            String,
            Option<i64>,
            i64,
            i64,
        ) = (
            row.get(0),
            row.get(1),
            row.get(2),
            row.get(3),
            row.get(4),
            row.get(5),
        );
        format!(
            "{order}: {}: {status}, total {total:?}, refunded {order_done} by the order, \
                 {payment_done} by the payment",
            problem.unwrap_or_default()
        )
    }));
    Ok(violations)
}
