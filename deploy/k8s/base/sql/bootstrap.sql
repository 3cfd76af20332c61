-- Database-wide prerequisites, applied as the database owner by `make services`, the test
-- harness's template and the deploy manifests. Service migrations never create extensions.
CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA public;
