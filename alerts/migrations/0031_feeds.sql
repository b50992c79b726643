-- Feeds for outside platforms (a city's): each alert's lifecycle events (opened, escalated,
-- acknowledged, resolved) pushed to a feed's webhooks through the notifications outbox, with the
-- same attempts, retries and audit as pages to people, and read-only API tokens of the feeds.

-- A feed's row names the feed instead of a contact, and the audit row that is its event: the
-- event's id (stable across attempts, so a receiver can drop a copy) and its order within the
-- alert (a webhook gets an alert's next event only once the one before is delivered).
ALTER TABLE notifications ALTER COLUMN contact_id DROP NOT NULL;
ALTER TABLE notifications ADD COLUMN IF NOT EXISTS feed_id text;
ALTER TABLE notifications ADD COLUMN IF NOT EXISTS audit_id bigint REFERENCES alert_audit (id);
ALTER TABLE notifications DROP CONSTRAINT IF EXISTS notifications_one_recipient;
ALTER TABLE notifications ADD CONSTRAINT notifications_one_recipient CHECK (
    (contact_id IS NULL) <> (feed_id IS NULL)
    AND (feed_id IS NULL OR (alert_id IS NOT NULL AND audit_id IS NOT NULL))
);
CREATE INDEX IF NOT EXISTS notifications_feed_unsent
    ON notifications (alert_id, feed_id, channel_index, audit_id)
    WHERE feed_id IS NOT NULL AND result IN ('pending', 'sending');

-- API tokens of feeds (site file [feeds.<id>]); only a SHA-256 of the token is kept. Apart from
-- contact_tokens, so a feed's token never acts for a person nor a person's reads a feed.
CREATE TABLE IF NOT EXISTS feed_tokens (
    token_sha256 bytea PRIMARY KEY,
    feed_id      text NOT NULL,
    label        text NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz
);
DO $$
DECLARE
    g record;
BEGIN
    FOR g IN
        SELECT DISTINCT grantee FROM information_schema.role_table_grants
        WHERE table_schema = 'public' AND table_name = 'feed_tokens'
          AND grantee NOT IN (current_user, 'PUBLIC')
    LOOP
        EXECUTE format('REVOKE ALL ON feed_tokens FROM %I', g.grantee);
    END LOOP;
END
$$;

-- As in 0029, but a feed's delivery is not a page: the first page is the first notice delivered
-- to a person.
CREATE OR REPLACE VIEW alert_answer_times AS
SELECT a.id AS alert_id, a.resident_id, a.kind, a.severity, a.state, a.started_at, a.opened_at,
       p.first_page_at,
       extract(epoch FROM p.first_page_at - a.started_at)::float8 AS press_to_page_s,
       a.acked_at, a.acked_by,
       extract(epoch FROM a.acked_at - p.first_page_at)::float8 AS page_to_ack_s,
       extract(epoch FROM a.acked_at - a.opened_at)::float8 AS answer_s,
       a.tier,
       a.acked_at IS NULL AND coalesce(a.resolved_by, 'system') = 'system' AS unanswered
FROM alerts a
LEFT JOIN LATERAL (
    SELECT min(n.sent_at + coalesce(n.duration_ms, 0) * interval '1 millisecond') AS first_page_at
    FROM notifications n
    WHERE n.alert_id = a.id AND n.result = 'delivered' AND n.contact_id IS NOT NULL
) p ON true;
