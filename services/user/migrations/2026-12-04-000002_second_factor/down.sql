ALTER TABLE sessions DROP COLUMN second_factor;
ALTER TABLE users DROP COLUMN mfa_last_step, DROP COLUMN mfa_pending_secret, DROP COLUMN mfa_secret;
