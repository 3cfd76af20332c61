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
