//! Order, cart and claim queries. Each takes a connection, so callers compose them inside one
//! transaction; those taking a shared connection can be sent together (pipelined). Status
//! changes are the lifecycle's ([`crate::lifecycle`]).

mod cart;
mod claims;
mod orders;

pub use cart::{
    cart, cart_lines, clear_cart, delete_cart_item, lock_cart, put_cart_item, remove_from_cart,
};
pub use claims::{
    Claim, ClaimKey, delete_claim, find_claim, purge_claims, store_claim_answer, take_over_claim,
    try_store_claim_answer,
};
pub use orders::{
    NewOrder, OrderFilter, create_order, find_order, history, lines, lines_of, list_orders,
    price_lines, stale, unreported,
};
