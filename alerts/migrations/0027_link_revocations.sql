-- `bedwatch alerts revoke CONTACT` ends the contact's ack links as well as their tokens: a link
-- made before revoked_at is refused (alerts/api.py, link_honoured).
CREATE TABLE IF NOT EXISTS link_revocations (
    contact_id text PRIMARY KEY,
    revoked_at timestamptz NOT NULL
);
