//! DESIGN.md's stock invariant, asserted against a test's database (the queries live in
//! `shop-proof`, which `make chaos` runs against a whole system too).

use crate::TestDb;

fn assert_none(what: &str, violations: Vec<String>) {
    assert!(violations.is_empty(), "{what}:\n{}", violations.join("\n"));
}

/// Per product: Σ initial + Σ adjust = stock + Σ held reservations, and the ledger's signed
/// sum equals the stock.
pub async fn assert_ledger_invariant(db: &TestDb) {
    let client = db.client().await;
    let violations = shop_proof::invariant::ledger_violations(&client)
        .await
        .unwrap();
    assert_none("ledger invariant broken", violations);
}

/// Held reservations belong exactly to orders in reserving, pending, paid, shipped, delivered
/// or refunded (when the system is quiet).
pub async fn assert_holds_match_orders(db: &TestDb) {
    let client = db.client().await;
    let violations = shop_proof::invariant::hold_violations(&client)
        .await
        .unwrap();
    assert_none("held reservations and orders disagree", violations);
}

/// Refunds never exceed what was captured, both services agree on them, and (the system being
/// quiet) every accepted refund reached a final state.
pub async fn assert_refunds_consistent(db: &TestDb) {
    let client = db.client().await;
    let violations = shop_proof::invariant::refund_violations(&client, true)
        .await
        .unwrap();
    assert_none("refunds broken", violations);
}
