DROP INDEX outbox_pending_idx;
