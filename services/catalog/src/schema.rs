//! Diesel table definitions (schema `catalog`, reached through the connection's search_path).

diesel::table! {
    products (id) {
        id -> Uuid,
        name -> Text,
        description -> Text,
        price_cents -> Int8,
        stock -> Int4,
        version -> Int4,
        revision -> Int8,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        deleted_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    stock_movements (id) {
        id -> Int8,
        product_id -> Uuid,
        kind -> Text,
        delta -> Int4,
        order_id -> Nullable<Uuid>,
        reason -> Nullable<Text>,
        actor_id -> Nullable<Uuid>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    reservation_orders (order_id) {
        order_id -> Uuid,
        state -> Text,
        answer -> Nullable<Jsonb>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    reservations (order_id, product_id) {
        order_id -> Uuid,
        product_id -> Uuid,
        quantity -> Int4,
        unit_price_cents -> Int8,
        name -> Text,
        state -> Text,
        created_at -> Timestamptz,
        released_at -> Nullable<Timestamptz>,
    }
}

diesel::joinable!(stock_movements -> products (product_id));
diesel::joinable!(reservations -> products (product_id));
diesel::joinable!(reservations -> reservation_orders (order_id));
diesel::allow_tables_to_appear_in_same_query!(
    products,
    stock_movements,
    reservation_orders,
    reservations
);
