-- The relay reads the unsent rows of one kind in id order. Without this index Postgres walked
-- the primary key through every row kept for OUTBOX_RETENTION, sent ones included, on every
-- pass: the relay's cost grew with the traffic of the last hour.
CREATE INDEX outbox_pending_idx ON outbox (kind, id) WHERE sent_at IS NULL;
