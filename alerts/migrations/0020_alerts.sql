-- Alerts: lifecycle, the notification outbox (every delivery attempt), acks and the audit trail.
-- Plain PostgreSQL 15; idempotent (the runner applies it once, in a transaction).
-- All times are the alert engine's clock (injected; wall time in production).

-- One row per alert. state: open -> acknowledged -> resolved. At most one alert per resident and
-- kind is open or acknowledged (alerts_one_open), so concurrent findings meet in the database.
CREATE TABLE IF NOT EXISTS alerts (
    id             bigserial PRIMARY KEY,
    resident_id    text NOT NULL,                 -- residents.id
    kind           text NOT NULL,                 -- detectors.findings.FindingKind
    severity       text NOT NULL CHECK (severity IN ('critical', 'high', 'medium', 'low')),
    state          text NOT NULL CHECK (state IN ('open', 'acknowledged', 'resolved')),
    opened_at      timestamptz NOT NULL,
    acked_at       timestamptz,
    acked_by       text,                          -- contacts.id, or 'operator:<name>'
    resolved_at    timestamptz,
    resolved_by    text,                          -- contacts.id, or 'system' (condition cleared)
    device_id      text,                          -- the device whose data raised it
    started_at     timestamptz NOT NULL,          -- device time at which the condition began
    last_seen_at   timestamptz NOT NULL,          -- device time of the latest repeat
    count          integer NOT NULL DEFAULT 1,    -- findings joined into this alert
    evidence       jsonb NOT NULL DEFAULT '{}'::jsonb,  -- the latest finding's evidence
    cleared_at     timestamptz,                   -- the condition ended (a critical alert latches)
    tier           integer NOT NULL DEFAULT -1,   -- highest ladder step told; -1: none yet (held)
    last_notice_at timestamptz,                   -- the latest tier or reminder notice
    next_action_at timestamptz,                   -- next escalation or reminder; null: none due
    held_until     timestamptz                    -- quiet hours: nothing sent before this
);
CREATE UNIQUE INDEX IF NOT EXISTS alerts_one_open
    ON alerts (resident_id, kind) WHERE state IN ('open', 'acknowledged');
CREATE INDEX IF NOT EXISTS alerts_due ON alerts (next_action_at) WHERE state = 'open';
CREATE INDEX IF NOT EXISTS alerts_resident_opened ON alerts (resident_id, opened_at DESC);

-- The daily digests for family doctors: one per contact and local day.
CREATE TABLE IF NOT EXISTS alert_digests (
    id         bigserial PRIMARY KEY,
    contact_id text NOT NULL,
    day        date NOT NULL,
    created_at timestamptz NOT NULL,
    items      integer NOT NULL,
    UNIQUE (contact_id, day)
);

-- The outbox: one row per delivery attempt of one message to one contact on one channel.
-- A 'pending' row is planned (due_at); the sender claims it ('sending') and records the result.
CREATE TABLE IF NOT EXISTS notifications (
    id            bigserial PRIMARY KEY,
    alert_id      bigint REFERENCES alerts (id),          -- null for a digest
    digest_id     bigint REFERENCES alert_digests (id),
    contact_id    text NOT NULL,
    tier          integer NOT NULL DEFAULT 0,             -- the ladder step that chose the contact
    channel_index integer NOT NULL,                       -- position in contacts.channels
    channel       text NOT NULL,                          -- the apprise URL with secrets hidden
    attempt       integer NOT NULL,                       -- 1, 2, ... on this channel
    reason        text NOT NULL,                          -- why it is (re)sent: opened, escalated, ...
    result        text NOT NULL CHECK (result IN
                    ('pending', 'sending', 'delivered', 'failed', 'cancelled')),
    retryable     boolean,                                -- for failures: worth trying again
    error         text,
    title         text NOT NULL,
    body          text NOT NULL,
    created_at    timestamptz NOT NULL,
    due_at        timestamptz NOT NULL,
    sent_at       timestamptz,                            -- when the attempt began
    duration_ms   real,
    CHECK ((alert_id IS NULL) <> (digest_id IS NULL))
);
CREATE INDEX IF NOT EXISTS notifications_due ON notifications (due_at) WHERE result = 'pending';
CREATE INDEX IF NOT EXISTS notifications_alert ON notifications (alert_id, contact_id);

-- Who did what to an alert, when and how (api, link, system, cli).
CREATE TABLE IF NOT EXISTS alert_audit (
    id       bigserial PRIMARY KEY,
    alert_id bigint NOT NULL REFERENCES alerts (id),
    at       timestamptz NOT NULL,
    actor    text NOT NULL,      -- contacts.id or 'system'
    action   text NOT NULL,      -- opened, repeated, escalated, reminded, acknowledged, resolved, ...
    via      text NOT NULL,      -- api | link | system | cli | console
    detail   jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX IF NOT EXISTS alert_audit_alert ON alert_audit (alert_id, at);

-- API tokens, one or more per contact; only a SHA-256 of the token is kept.
CREATE TABLE IF NOT EXISTS contact_tokens (
    token_sha256 bytea PRIMARY KEY,
    contact_id   text NOT NULL REFERENCES contacts (id) ON DELETE CASCADE,
    label        text NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz
);

-- The key that signs acknowledge links when alerts.link_secret is not set; made once.
CREATE TABLE IF NOT EXISTS alert_keys (
    name       text PRIMARY KEY,
    secret     bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
