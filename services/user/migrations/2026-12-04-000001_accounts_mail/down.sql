DROP TABLE outbox;
DROP TABLE mailed_events;
DROP TABLE account_tokens;
ALTER TABLE users DROP COLUMN email_verified_at;
