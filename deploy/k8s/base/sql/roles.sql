-- One login role per service, able to touch only its own schema (DESIGN.md, "Data
-- ownership"). Applied as the database owner by the db-bootstrap Job, after bootstrap.sql:
--   psql "$OWNER_URL" -v user_password=... -v catalog_password=... \
--        -v order_password=... -v payment_password=... -f roles.sql
-- Idempotent: roles are created once and their passwords set on every run.
\set ON_ERROR_STOP on

SELECT format('CREATE ROLE %I LOGIN', r)
FROM unnest(ARRAY['shop_user', 'shop_catalog', 'shop_order', 'shop_payment']) AS r
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) \gexec

ALTER ROLE shop_user PASSWORD :'user_password';
ALTER ROLE shop_catalog PASSWORD :'catalog_password';
ALTER ROLE shop_order PASSWORD :'order_password';
ALTER ROLE shop_payment PASSWORD :'payment_password';

-- Nobody creates objects in public (extensions are the owner's, from bootstrap.sql).
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO shop_user, shop_catalog, shop_order, shop_payment;

-- Each schema belongs to its service's role; the migrations find it and create the rest.
CREATE SCHEMA IF NOT EXISTS users AUTHORIZATION shop_user;
CREATE SCHEMA IF NOT EXISTS catalog AUTHORIZATION shop_catalog;
CREATE SCHEMA IF NOT EXISTS orders AUTHORIZATION shop_order;
CREATE SCHEMA IF NOT EXISTS payments AUTHORIZATION shop_payment;
REVOKE ALL ON SCHEMA users, catalog, orders, payments FROM PUBLIC;

SELECT format('GRANT CONNECT ON DATABASE %I TO shop_user, shop_catalog, shop_order, shop_payment',
              current_database()) \gexec
