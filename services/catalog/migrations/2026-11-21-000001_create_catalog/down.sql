DROP TABLE reservations;
DROP TABLE reservation_orders;
DROP TABLE stock_movements;
DROP TABLE products;
