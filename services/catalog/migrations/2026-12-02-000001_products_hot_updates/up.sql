-- Reservations change a product's stock all day. The in-stock listing's partial index named
-- `stock` in its predicate, so every such change was a non-HOT update: a new tuple on another
-- page and a new entry in each of the table's six indexes, the trigram index included. Without
-- it, and with room left on each page, a stock change stays on its page and touches no index.
-- In-stock listings use products_created_at_idx and check the stock on the row (they are
-- cached; see LIST_CACHE_TTL).
DROP INDEX products_in_stock_idx;
ALTER TABLE products SET (fillfactor = 80);
