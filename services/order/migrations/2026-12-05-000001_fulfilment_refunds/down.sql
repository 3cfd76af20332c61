DROP TABLE refunds;
DROP TABLE default_addresses;
ALTER TABLE orders
    DROP CONSTRAINT orders_refunds_within_total,
    DROP COLUMN refund_pending_cents,
    DROP COLUMN refunded_cents,
    DROP COLUMN shipment,
    DROP COLUMN shipping_address;
ALTER TABLE orders DROP CONSTRAINT orders_status_check;
ALTER TABLE orders ADD CONSTRAINT orders_status_check CHECK (status IN
    ('reserving', 'pending', 'paid', 'failed', 'cancelled', 'shipped', 'delivered'));
