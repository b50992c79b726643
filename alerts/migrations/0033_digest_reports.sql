-- The residents' sleep reports that go with a daily digest: made once, with the digest, so that a
-- retry or a fallback channel sends the same files, and an e-mail carries them as attachments.
CREATE TABLE IF NOT EXISTS digest_attachments (
    digest_id  bigint NOT NULL REFERENCES alert_digests (id) ON DELETE CASCADE,
    name       text NOT NULL,           -- the file name the recipient sees
    media_type text NOT NULL DEFAULT 'application/pdf',
    content    bytea NOT NULL,
    PRIMARY KEY (digest_id, name)
);
