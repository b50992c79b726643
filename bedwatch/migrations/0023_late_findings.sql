-- Findings about the past: found in late data (a store-and-forward backlog uploaded after the
-- device's newer data). They are stored and shown, and go to the daily digest; they do not page,
-- since the live data speaks for the present.
ALTER TABLE findings ADD COLUMN IF NOT EXISTS late boolean NOT NULL DEFAULT false;
