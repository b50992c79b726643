-- An event from a clock more than the skew limit ahead is stored at its receive time; the time
-- the device gave is kept in device_time, so that the same event delivered again (at another
-- receive time) is recognised and stored once. NULL for every other event.
ALTER TABLE device_events ADD COLUMN IF NOT EXISTS device_time timestamptz;
CREATE INDEX IF NOT EXISTS device_events_device_time_idx
    ON device_events (device_id, type, device_time) WHERE device_time IS NOT NULL;
