-- Site-wide sections of the site file that other modules read (e.g. [alerts]: escalation
-- ladders, quiet hours), stored as loaded so the service and the console see the same.
CREATE TABLE IF NOT EXISTS site_settings (
    section    text PRIMARY KEY,
    value      jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
