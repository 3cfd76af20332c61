//! Diesel table definitions (schema `orders`, reached through the connection's search_path).
//! `orders` declares at most 16 columns (diesel's default); `payment_requested_at` and
//! `status_changed_at` are used by raw SQL only.

diesel::table! {
    orders (id) {
        id -> Uuid,
        user_id -> Uuid,
        status -> Text,
        total_cents -> Nullable<Int8>,
        currency -> Text,
        payment_status -> Nullable<Text>,
        payment_attempts -> Int4,
        payment_last_error -> Nullable<Text>,
        event_seq -> Int4,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        shipping_address -> Nullable<Jsonb>,
        shipment -> Nullable<Jsonb>,
        refunded_cents -> Int8,
        refund_pending_cents -> Int8,
    }
}

diesel::table! {
    order_lines (order_id, product_id) {
        order_id -> Uuid,
        position -> Int2,
        product_id -> Uuid,
        quantity -> Int4,
        name -> Nullable<Text>,
        unit_price_cents -> Nullable<Int8>,
    }
}

diesel::table! {
    order_status_history (id) {
        id -> Int8,
        order_id -> Uuid,
        status -> Text,
        actor -> Text,
        cause -> Nullable<Text>,
        at -> Timestamptz,
    }
}

diesel::table! {
    idempotency_claims (user_id, route, key) {
        user_id -> Uuid,
        route -> Text,
        key -> Text,
        request_hash -> Bytea,
        order_id -> Uuid,
        response_status -> Nullable<Int2>,
        response_body -> Nullable<Jsonb>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    payment_events (order_id, attempt_no, outcome) {
        order_id -> Uuid,
        attempt_no -> Int4,
        outcome -> Text,
        error -> Nullable<Text>,
        next_retry_at -> Nullable<Timestamptz>,
        is_final -> Bool,
        answer_status -> Int2,
        received_at -> Timestamptz,
    }
}

diesel::table! {
    cart_items (user_id, product_id) {
        user_id -> Uuid,
        product_id -> Uuid,
        quantity -> Int4,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    guest_carts (id) {
        id -> Uuid,
        token_hash -> Bytea,
        created_at -> Timestamptz,
        last_used_at -> Timestamptz,
        merged_into -> Nullable<Uuid>,
        merged_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    default_addresses (user_id) {
        user_id -> Uuid,
        address -> Jsonb,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    refunds (id) {
        id -> Uuid,
        order_id -> Uuid,
        amount_cents -> Int8,
        reason -> Text,
        status -> Text,
        error -> Nullable<Text>,
        requested_by -> Uuid,
        created_at -> Timestamptz,
        completed_at -> Nullable<Timestamptz>,
    }
}

diesel::joinable!(order_lines -> orders (order_id));
diesel::joinable!(refunds -> orders (order_id));
diesel::joinable!(order_status_history -> orders (order_id));
diesel::joinable!(payment_events -> orders (order_id));
diesel::allow_tables_to_appear_in_same_query!(
    orders,
    order_lines,
    order_status_history,
    idempotency_claims,
    payment_events,
    cart_items,
    refunds,
);
