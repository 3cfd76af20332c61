-- Runs with search_path = payments, public.

-- Refunds accepted against the payment (under way or carried out): never more than it captured,
-- whatever runs concurrently (taken under the payment's row lock; the CHECK says it again).
ALTER TABLE payments
    ADD COLUMN refunded_cents bigint NOT NULL DEFAULT 0 CHECK (refunded_cents >= 0),
    ADD CONSTRAINT payments_refunds_within_amount CHECK (refunded_cents <= amount_cents);

-- Refunds the order service asked for (`payment.refund`), by its refund id: a redelivered
-- request finds its row. Carried out once: `pending` leaves for `succeeded` in one guarded
-- statement, with its notification and its report; a lease lets another instance finish a
-- refund whose worker died.
CREATE TABLE refunds (
    id              uuid PRIMARY KEY,
    payment_id      uuid NOT NULL REFERENCES payments (id),
    amount_cents    bigint NOT NULL CHECK (amount_cents > 0),
    status          text NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
    error           text,
    -- `{paymentId}:refund:{refundId}`: what a real processor would deduplicate refunds on.
    idempotency_key text NOT NULL UNIQUE,
    lease_owner     text,
    lease_until     timestamptz,
    traceparent     text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    completed_at    timestamptz,
    -- When the order service accepted the report of its outcome.
    reported_at     timestamptz
);
CREATE INDEX refunds_payment_idx ON refunds (payment_id);
CREATE INDEX refunds_pending_idx ON refunds (lease_until) WHERE status = 'pending';
