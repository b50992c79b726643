-- Core schema: registry, device data, quarantine. Plain PostgreSQL; TimescaleDB parts follow.
-- Device data is keyed so that a redelivered message changes nothing (see ingest/store.py).

CREATE TABLE IF NOT EXISTS residents (
    id                text PRIMARY KEY,
    name              text NOT NULL,
    room              text NOT NULL DEFAULT '',        -- room or home address, shown in alerts
    timezone          text NOT NULL DEFAULT 'Asia/Shanghai',
    detector_settings jsonb NOT NULL DEFAULT '{}',     -- per-resident detector thresholds
    active            boolean NOT NULL DEFAULT true,
    updated_at        timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS contacts (
    id         text PRIMARY KEY,
    name       text NOT NULL,
    role       text NOT NULL CHECK (role IN ('care_staff', 'family_doctor', 'family', 'emergency')),
    language   text NOT NULL DEFAULT 'zh' CHECK (language IN ('zh', 'en')),
    channels   text[] NOT NULL DEFAULT '{}',           -- apprise URLs, in order of preference
    active     boolean NOT NULL DEFAULT true,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Who is told about whom; position keeps the site file's order.
CREATE TABLE IF NOT EXISTS care_team (
    resident_id text NOT NULL REFERENCES residents (id) ON DELETE CASCADE,
    contact_id  text NOT NULL REFERENCES contacts (id) ON DELETE CASCADE,
    position    integer NOT NULL,
    PRIMARY KEY (resident_id, contact_id)
);

CREATE TABLE IF NOT EXISTS devices (
    id          text PRIMARY KEY,
    kind        text NOT NULL CHECK (kind IN ('mattress', 'wristband')),
    resident_id text REFERENCES residents (id) ON DELETE SET NULL,
    active      boolean NOT NULL DEFAULT true,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- hr and rr are real: values computed from the waveform (source 'wave') are not whole numbers.
CREATE TABLE IF NOT EXISTS mattress_samples (
    time        timestamptz NOT NULL,
    device_id   text NOT NULL,
    resident_id text,
    hr          real,
    rr          real,
    move        smallint,
    occ         smallint,
    sq          smallint,
    source      text NOT NULL DEFAULT 'device' CHECK (source IN ('device', 'wave')),
    PRIMARY KEY (device_id, source, time)
);

CREATE TABLE IF NOT EXISTS wristband_samples (
    time        timestamptz NOT NULL,
    device_id   text NOT NULL,
    resident_id text,
    hr          real,
    spo2        real,
    bat         smallint,
    worn        smallint,
    steps       integer,
    PRIMARY KEY (device_id, time)
);

CREATE TABLE IF NOT EXISTS device_events (
    time        timestamptz NOT NULL,
    device_id   text NOT NULL,
    type        text NOT NULL,
    resident_id text,
    conf        real,
    bat         smallint,
    lat         double precision,
    lon         double precision,
    degraded    boolean NOT NULL DEFAULT false,   -- an sos/fall kept despite broken fields
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (device_id, type, time)
);

-- time is the device's clock, or the receive time when the payload has none (a Last Will).
CREATE TABLE IF NOT EXISTS device_status (
    time              timestamptz NOT NULL,
    device_id         text NOT NULL,
    state             text NOT NULL CHECK (state IN ('online', 'offline')),
    from_device_clock boolean NOT NULL,
    kind              text,
    model             text,
    fw                text,
    bat               smallint,
    received_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (device_id, time)
);

-- Raw waveform blocks, kept only when ingest.keep_wave is on, for retention.wave_days.
CREATE TABLE IF NOT EXISTS wave_blocks (
    time      timestamptz NOT NULL,
    device_id text NOT NULL,
    fs        real NOT NULL,
    raw       integer[],
    resp      integer[],
    bcg       integer[],
    PRIMARY KEY (device_id, time)
);

CREATE TABLE IF NOT EXISTS quarantine (
    id          bigserial PRIMARY KEY,
    received_at timestamptz NOT NULL,
    topic       text NOT NULL,
    device_id   text,
    reason      text NOT NULL,
    detail      text NOT NULL,
    payload     bytea NOT NULL
);
CREATE INDEX IF NOT EXISTS quarantine_received_at ON quarantine (received_at);
CREATE INDEX IF NOT EXISTS quarantine_reason ON quarantine (reason, received_at);

-- One row per device: when it was last heard, and what its messages looked like.
CREATE TABLE IF NOT EXISTS device_health (
    device_id     text PRIMARY KEY,
    last_seen_at  timestamptz NOT NULL,
    last_seq      bigint,
    messages      bigint NOT NULL DEFAULT 0,
    rejected      bigint NOT NULL DEFAULT 0,
    clock_skew_ms bigint,             -- how far ahead the device clock was, when corrected
    skew_seen_at  timestamptz
);
