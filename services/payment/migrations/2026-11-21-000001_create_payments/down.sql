DROP TABLE outbox;
DROP TABLE payment_attempts;
DROP TABLE payments;
