-- Runs with search_path = orders, public: tables land in schema `orders`.
CREATE TABLE orders (
    id                   uuid PRIMARY KEY,
    user_id              uuid NOT NULL,
    status               text NOT NULL CHECK (status IN
        ('reserving', 'pending', 'paid', 'failed', 'cancelled', 'shipped', 'delivered')),
    -- Known once the stock is reserved (prices come from the reservation).
    total_cents          bigint,
    currency             text NOT NULL,
    -- The payment summary, from the payment service's reports.
    payment_status       text,
    payment_attempts     integer NOT NULL DEFAULT 0,
    payment_last_error   text,
    -- When payment.requested was last written (the sweeper's clock).
    payment_requested_at timestamptz,
    -- Per-order sequence of the events this service publishes.
    event_seq            integer NOT NULL DEFAULT 0,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    status_changed_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX orders_user_idx ON orders (user_id, created_at DESC, id DESC);
CREATE INDEX orders_created_idx ON orders (created_at DESC, id DESC);
CREATE INDEX orders_status_idx ON orders (status, status_changed_at);

CREATE TABLE order_lines (
    order_id         uuid NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    position         smallint NOT NULL,
    product_id       uuid NOT NULL,
    quantity         integer NOT NULL CHECK (quantity BETWEEN 1 AND 1000),
    -- As reserved: filled when the order becomes pending.
    name             text,
    unit_price_cents bigint,
    PRIMARY KEY (order_id, product_id)
);

-- Every status change: when, who (user:<id>, admin:<id>, payment, system) and why.
CREATE TABLE order_status_history (
    id       bigserial PRIMARY KEY,
    order_id uuid NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    status   text NOT NULL,
    actor    text NOT NULL,
    cause    text,
    at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX order_status_history_order_idx ON order_status_history (order_id, id);

-- Idempotency-Key claims: committed (with the order id made for them) before the catalog is
-- called; the answer is stored once there is one.
CREATE TABLE idempotency_claims (
    user_id         uuid NOT NULL,
    route           text NOT NULL,
    key             text NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
    request_hash    bytea NOT NULL,
    order_id        uuid NOT NULL,
    response_status smallint,
    response_body   jsonb,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, route, key)
);
CREATE INDEX idempotency_claims_created_idx ON idempotency_claims (created_at);

-- What the payment service reported, once per (order, attempt), with the answer given.
CREATE TABLE payment_events (
    order_id      uuid NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    attempt_no    integer NOT NULL,
    outcome       text NOT NULL CHECK (outcome IN ('failed', 'succeeded', 'refunded')),
    error         text,
    next_retry_at timestamptz,
    is_final      boolean NOT NULL,
    answer_status smallint NOT NULL,
    received_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (order_id, attempt_no, outcome)
);

CREATE TABLE cart_items (
    user_id    uuid NOT NULL,
    product_id uuid NOT NULL,
    quantity   integer NOT NULL CHECK (quantity BETWEEN 1 AND 1000),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, product_id)
);

-- The transactional outbox (shop-outbox). Each producing service's migration creates this
-- table in its own schema; a test keeps the copies identical to this file.
CREATE TABLE outbox (
    id           bigserial PRIMARY KEY,
    -- 'event': published to the Redis stream `topic`; 'command': executed by the service.
    kind         text NOT NULL CHECK (kind IN ('event', 'command')),
    topic        text NOT NULL,
    -- The ordering lane: rows of one aggregate and kind go out in id order.
    aggregate_id uuid NOT NULL,
    -- Events for a user are also appended to that user's stream.
    user_id      uuid,
    payload      jsonb NOT NULL,
    attempts     integer NOT NULL DEFAULT 0,
    available_at timestamptz NOT NULL DEFAULT now(),
    last_error   text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    sent_at      timestamptz
);
CREATE INDEX outbox_unsent_idx ON outbox (aggregate_id, kind, id) WHERE sent_at IS NULL;
CREATE INDEX outbox_sent_at_idx ON outbox (sent_at) WHERE sent_at IS NOT NULL;
