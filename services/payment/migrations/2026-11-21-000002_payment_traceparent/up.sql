-- The W3C traceparent of the request that asked for the payment: its attempts, events and
-- reports continue that trace.
ALTER TABLE payments ADD COLUMN traceparent text;
