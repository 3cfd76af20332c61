-- Runs with search_path = orders, public.

-- A visitor's cart before signing in: its lines are cart_items rows whose user_id is this
-- row's id. The visitor holds an opaque 256-bit token, stored as its SHA-256 digest. A guest
-- cart lives 30 days from its last use, and ends when it is merged into an account's cart.
CREATE TABLE guest_carts (
    id           uuid PRIMARY KEY,
    token_hash   bytea NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz NOT NULL DEFAULT now(),
    merged_into  uuid,
    merged_at    timestamptz
);
CREATE INDEX guest_carts_last_used_at_idx ON guest_carts (last_used_at);
