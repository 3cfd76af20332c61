//! Diesel table definitions (schema `payments`, reached through the connection's search_path).

diesel::table! {
    payments (id) {
        id -> Uuid,
        order_id -> Uuid,
        user_id -> Uuid,
        amount_cents -> Int8,
        currency -> Text,
        status -> Text,
        attempt_no -> Int4,
        next_attempt_at -> Nullable<Timestamptz>,
        lease_owner -> Nullable<Text>,
        lease_until -> Nullable<Timestamptz>,
        event_seq -> Int4,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        traceparent -> Nullable<Text>,
    }
}

diesel::table! {
    payment_attempts (payment_id, attempt_no, outcome) {
        payment_id -> Uuid,
        attempt_no -> Int4,
        outcome -> Text,
        idempotency_key -> Text,
        error -> Nullable<Text>,
        next_retry_at -> Nullable<Timestamptz>,
        is_final -> Bool,
        at -> Timestamptz,
        reported_at -> Nullable<Timestamptz>,
    }
}

diesel::joinable!(payment_attempts -> payments (payment_id));
diesel::allow_tables_to_appear_in_same_query!(payments, payment_attempts);
