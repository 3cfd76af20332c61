-- Runs with search_path = users, public.

-- Set once the owner followed a mailed verification link (or a password-reset link, which
-- proves the same).
ALTER TABLE users ADD COLUMN email_verified_at timestamptz;

-- Single-use tokens mailed to an account's address, stored as SHA-256 digests: whoever reads
-- this table cannot use them.
CREATE TABLE account_tokens (
    token_hash bytea PRIMARY KEY CHECK (length(token_hash) = 32),
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose    text NOT NULL CHECK (purpose IN ('password-reset', 'email-verification')),
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    used_at    timestamptz
);
CREATE INDEX account_tokens_live_idx ON account_tokens (user_id, purpose) WHERE used_at IS NULL;
CREATE INDEX account_tokens_expires_at_idx ON account_tokens (expires_at);

-- Order events already turned into mail: the notifications consumer inserts an event's id in
-- the transaction that queues its mail, so a redelivered event mails nothing twice.
CREATE TABLE mailed_events (
    event_id  uuid PRIMARY KEY,
    mailed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX mailed_events_mailed_at_idx ON mailed_events (mailed_at);

-- The mail outbox: every message is a 'command' row (topic `mail.send`) written in the
-- transaction of the change it tells of, and sent over SMTP by the relay, with backoff.
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

-- The relay reads the unsent rows of one kind in id order. Without this index Postgres walked
-- the primary key through every row kept for OUTBOX_RETENTION, sent ones included, on every
-- pass: the relay's cost grew with the traffic of the last hour.
CREATE INDEX outbox_pending_idx ON outbox (kind, id) WHERE sent_at IS NULL;
