ALTER TABLE products RESET (fillfactor);
CREATE INDEX products_in_stock_idx ON products (created_at, id) WHERE deleted_at IS NULL AND stock > 0;
