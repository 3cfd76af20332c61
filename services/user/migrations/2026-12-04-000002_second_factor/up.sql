-- Runs with search_path = users, public.

-- TOTP (RFC 6238). Secrets are sealed with MFA_ENCRYPTION_KEY (XChaCha20-Poly1305, bound to
-- the account's id): the pending one between enrolment and its confirmation, then the active
-- one. The last step a code was accepted for makes every code usable once.
ALTER TABLE users
    ADD COLUMN mfa_secret bytea,
    ADD COLUMN mfa_pending_secret bytea,
    ADD COLUMN mfa_last_step bigint;

-- Whether the session was signed in with a one-time code (its access tokens say `otp`).
ALTER TABLE sessions ADD COLUMN second_factor boolean NOT NULL DEFAULT false;
