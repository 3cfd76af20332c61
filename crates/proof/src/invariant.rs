//! DESIGN.md's stock invariant, checked against a test's database.

use uuid::Uuid;

use crate::TestDb;

/// Per product: Σ initial + Σ adjust = stock + Σ held reservations, and the ledger's signed
/// sum equals the stock.
pub async fn assert_ledger_invariant(db: &TestDb) {
    let client = db.client().await;
    let broken = client
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
        .await
        .unwrap();
    let rows: Vec<String> = broken
        .iter()
        .map(|row| {
            let (id, stock, added, total, held): (Uuid, i32, i64, i64, i64) =
                (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
            format!("{id}: stock {stock}, initial+adjust {added}, ledger sum {total}, held {held}")
        })
        .collect();
    assert!(
        rows.is_empty(),
        "ledger invariant broken:\n{}",
        rows.join("\n")
    );
}

/// Held reservations belong exactly to orders in reserving, pending, paid, shipped or
/// delivered (when the system is quiet).
pub async fn assert_holds_match_orders(db: &TestDb) {
    let client = db.client().await;
    let rows = client
        .query(
            "SELECT r.order_id, o.status FROM catalog.reservation_orders r
             LEFT JOIN orders.orders o ON o.id = r.order_id
             WHERE (r.state = 'held') <> coalesce(o.status IN ('reserving', 'pending', 'paid', 'shipped', 'delivered'), false)
               AND (r.state = 'held' OR o.status IS NOT NULL)",
            &[],
        )
        .await
        .unwrap();
    let wrong: Vec<String> = rows
        .iter()
        .map(|row| {
            let (order, status): (Uuid, Option<String>) = (row.get(0), row.get(1));
            format!("{order}: order status {status:?}")
        })
        .collect();
    assert!(
        wrong.is_empty(),
        "held reservations and orders disagree:\n{}",
        wrong.join("\n")
    );
}
