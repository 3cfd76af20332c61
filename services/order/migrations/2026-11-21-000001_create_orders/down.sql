DROP TABLE outbox;
DROP TABLE cart_items;
DROP TABLE payment_events;
DROP TABLE idempotency_claims;
DROP TABLE order_status_history;
DROP TABLE order_lines;
DROP TABLE orders;
