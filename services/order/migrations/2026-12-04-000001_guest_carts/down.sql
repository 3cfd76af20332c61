DROP TABLE guest_carts;
