-- Runs with search_path = orders, public.

-- A fully refunded order is `refunded` (final; its stock stays sold: DESIGN.md).
ALTER TABLE orders DROP CONSTRAINT orders_status_check;
ALTER TABLE orders ADD CONSTRAINT orders_status_check CHECK (status IN
    ('reserving', 'pending', 'paid', 'failed', 'cancelled', 'shipped', 'delivered', 'refunded'));

ALTER TABLE orders
    -- Where it goes: from the request, else the user's default address when it was placed.
    ADD COLUMN shipping_address jsonb,
    -- Once shipped: {carrier, trackingNumber, shippedAt}, as the administrator gave them.
    ADD COLUMN shipment         jsonb,
    -- Refunds carried out, and refunds accepted but not yet carried out: together never more
    -- than the captured total, whatever runs concurrently (the refund request locks the row).
    ADD COLUMN refunded_cents       bigint NOT NULL DEFAULT 0 CHECK (refunded_cents >= 0),
    ADD COLUMN refund_pending_cents bigint NOT NULL DEFAULT 0 CHECK (refund_pending_cents >= 0),
    ADD CONSTRAINT orders_refunds_within_total
        CHECK (refunded_cents + refund_pending_cents <= COALESCE(total_cents, 0));

-- A user's default shipping address (`PUT /me/address`): kept here, beside the orders that
-- use it, so placing an order reads it in the statement that makes the order.
CREATE TABLE default_addresses (
    user_id    uuid PRIMARY KEY,
    address    jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Refunds an administrator asked for: accepted here (pending), carried out by the payment
-- service, which reports each one back once.
CREATE TABLE refunds (
    id           uuid PRIMARY KEY,
    order_id     uuid NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    amount_cents bigint NOT NULL CHECK (amount_cents > 0),
    reason       text NOT NULL,
    status       text NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
    error        text,
    requested_by uuid NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    completed_at timestamptz
);
CREATE INDEX refunds_order_idx ON refunds (order_id, created_at, id);
