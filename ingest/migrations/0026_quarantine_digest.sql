-- Quarantine keeps a payload's first bytes (ingest/store.py, QUARANTINE_KEEP_BYTES) with its whole
-- size and SHA-256: a hostile device's 5 MB payloads no longer fill the table. Rows from before
-- hold the whole payload and no size or digest.
ALTER TABLE quarantine ADD COLUMN IF NOT EXISTS payload_bytes integer;
ALTER TABLE quarantine ADD COLUMN IF NOT EXISTS payload_sha256 bytea;
