-- Runs with search_path = payments, public: tables land in schema `payments`.
CREATE TABLE payments (
    id              uuid PRIMARY KEY,
    order_id        uuid NOT NULL UNIQUE,
    user_id         uuid NOT NULL,
    amount_cents    bigint NOT NULL CHECK (amount_cents >= 0),
    currency        text NOT NULL,
    status          text NOT NULL CHECK (status IN ('processing', 'succeeded', 'failed', 'cancelled', 'refunded')),
    -- Attempts made so far; the next one is due at next_attempt_at.
    attempt_no      integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz,
    -- The worker running an attempt, and until when it may.
    lease_owner     text,
    lease_until     timestamptz,
    event_seq       integer NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX payments_due_idx ON payments (next_attempt_at) WHERE status = 'processing';

-- Every attempt and its outcome; a refund is recorded as its own row.
CREATE TABLE payment_attempts (
    payment_id      uuid NOT NULL REFERENCES payments (id),
    attempt_no      integer NOT NULL CHECK (attempt_no >= 1),
    outcome         text NOT NULL CHECK (outcome IN ('failed', 'succeeded', 'refunded')),
    -- `{paymentId}:{attemptNo}`: what a real processor would deduplicate charges on.
    idempotency_key text NOT NULL,
    error           text,
    next_retry_at   timestamptz,
    is_final        boolean NOT NULL,
    at              timestamptz NOT NULL DEFAULT now(),
    -- When the order service accepted the report of this row.
    reported_at     timestamptz,
    PRIMARY KEY (payment_id, attempt_no, outcome)
);
-- At most one success per payment (so per order), whatever happens.
CREATE UNIQUE INDEX payment_attempts_one_success ON payment_attempts (payment_id) WHERE outcome = 'succeeded';

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
