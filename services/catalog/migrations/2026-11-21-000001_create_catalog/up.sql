-- Runs with search_path = catalog, public: tables land in schema `catalog`; pg_trgm's
-- operator classes come from `public` (deploy/bootstrap.sql).
CREATE TABLE products (
    id          uuid PRIMARY KEY,
    name        text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
    description text NOT NULL DEFAULT '' CHECK (char_length(description) <= 5000),
    price_cents bigint NOT NULL CHECK (price_cents >= 0),
    stock       integer NOT NULL CHECK (stock >= 0),
    -- Bumped when an editable field (name, description, price) changes: the body `version`.
    version     integer NOT NULL DEFAULT 1,
    -- Bumped on every change, stock included: the ETag, and the cache's ordering.
    revision    bigint NOT NULL DEFAULT 1,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    deleted_at  timestamptz
);
-- Listings only ever read live products: partial indexes for each sort and filter.
CREATE INDEX products_created_at_idx ON products (created_at, id) WHERE deleted_at IS NULL;
CREATE INDEX products_name_idx ON products (name, id) WHERE deleted_at IS NULL;
CREATE INDEX products_price_idx ON products (price_cents, id) WHERE deleted_at IS NULL;
CREATE INDEX products_in_stock_idx ON products (created_at, id) WHERE deleted_at IS NULL AND stock > 0;
-- `q` is a case-insensitive substring search over name and description.
CREATE INDEX products_search_idx ON products
    USING gin ((name || ' ' || description) gin_trgm_ops) WHERE deleted_at IS NULL;

-- Every change of stock, signed: initial (+), adjust (±), reserve (-), release (+).
-- Invariant per product: sum(initial) + sum(adjust) = stock + sum(held reservations).
CREATE TABLE stock_movements (
    id         bigserial PRIMARY KEY,
    product_id uuid NOT NULL REFERENCES products (id),
    kind       text NOT NULL CHECK (kind IN ('initial', 'adjust', 'reserve', 'release')),
    delta      integer NOT NULL,
    order_id   uuid,
    reason     text,
    actor_id   uuid,
    created_at timestamptz NOT NULL DEFAULT now(),
    CHECK ((kind IN ('reserve', 'release')) = (order_id IS NOT NULL))
);
CREATE INDEX stock_movements_product_idx ON stock_movements (product_id, id);

-- One row per order id that catalog has heard of. `held`: stock reserved (the answer is
-- kept for repeats); `refused`: the reserve was refused (kept likewise); `released`: stock
-- given back, or a tombstone written by a release that came first.
CREATE TABLE reservation_orders (
    order_id   uuid PRIMARY KEY,
    state      text NOT NULL CHECK (state IN ('pending', 'held', 'refused', 'released')),
    answer     jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- The lines of a reservation, with the name and price they were reserved at.
CREATE TABLE reservations (
    order_id         uuid NOT NULL REFERENCES reservation_orders (order_id),
    product_id       uuid NOT NULL REFERENCES products (id),
    quantity         integer NOT NULL CHECK (quantity > 0),
    unit_price_cents bigint NOT NULL,
    name             text NOT NULL,
    state            text NOT NULL CHECK (state IN ('held', 'released')),
    created_at       timestamptz NOT NULL DEFAULT now(),
    released_at      timestamptz,
    PRIMARY KEY (order_id, product_id)
);
CREATE INDEX reservations_held_idx ON reservations (product_id) WHERE state = 'held';
