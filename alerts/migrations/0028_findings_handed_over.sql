-- The hand-off from detection to the alert engine is the findings table itself: a finding is
-- committed with the message that decided it (bedwatch/detector_store.py), and the engine marks it
-- handled in the transaction that acts on it (alerts/store.py, take_finding). At start the engine
-- takes up every finding not handled yet, so one cut off by a crash is acted on once, never lost.
ALTER TABLE findings ADD COLUMN IF NOT EXISTS handled_at timestamptz;
-- Findings stored before this were handed to the engine in memory: not taken up again.
UPDATE findings SET handled_at = detected_at WHERE handled_at IS NULL;
CREATE INDEX IF NOT EXISTS findings_unhandled ON findings (id) WHERE handled_at IS NULL;
