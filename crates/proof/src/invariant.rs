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

/// Held reservations belong exactly to orders in reserving, pending, paid, shipped or
/// delivered (when the system is quiet).
pub async fn hold_violations(client: &Client) -> Result<Vec<String>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT r.order_id, o.status FROM catalog.reservation_orders r
             LEFT JOIN orders.orders o ON o.id = r.order_id
             WHERE (r.state = 'held') <> coalesce(o.status IN ('reserving', 'pending', 'paid', 'shipped', 'delivered'), false)
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
                 WHERE status = 'paid' GROUP BY order_id)
             SELECT o.id, o.status, coalesce(c.charged, 0), coalesce(c.refunded, 0),
                    coalesce(h.entries, 0)
             FROM orders.orders o
             LEFT JOIN charges c ON c.order_id = o.id
             LEFT JOIN paid_entries h ON h.order_id = o.id
             WHERE coalesce(c.charged, 0) > 1
                OR coalesce(h.entries, 0) > 1
                OR (o.status IN ('paid', 'shipped', 'delivered') AND coalesce(c.charged, 0) <> 1)
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
