-- The daily digest (alerts/digest.py): what each digest covered, so the next one starts where
-- it ended and an auditor can tell which findings a doctor was shown.
-- Plain PostgreSQL 15; idempotent (the runner applies it once, in a transaction).

-- One row per contact and local day (UNIQUE (contact_id, day) makes it once only); created_at,
-- window_from and window_to are the alert engine's clock; items counts the findings and alerts
-- the digest listed.
ALTER TABLE alert_digests ADD COLUMN IF NOT EXISTS timezone text;           -- zone of `day`
ALTER TABLE alert_digests ADD COLUMN IF NOT EXISTS window_from timestamptz; -- findings and alerts
ALTER TABLE alert_digests ADD COLUMN IF NOT EXISTS window_to timestamptz;   -- ... in [from, to)
ALTER TABLE alert_digests ADD COLUMN IF NOT EXISTS residents integer;       -- residents listed
