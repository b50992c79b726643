-- Detector output: findings, night summaries, and detector state checkpoints.
-- Plain PostgreSQL 15; idempotent (the runner applies it once, in a transaction).

-- One row per finding the detectors emit, as they emit it: a condition that began, or (cleared)
-- ended. Times are device time (event time) except detected_at, the service's insert time.
CREATE TABLE IF NOT EXISTS findings (
    id          bigserial PRIMARY KEY,
    resident_id text NOT NULL,         -- residents.id
    device_id   text,                  -- the device whose data decided it; null if none (summaries)
    kind        text NOT NULL,         -- detectors.findings.FindingKind: sos, fall, vitals_absent, ...
    severity    text NOT NULL,         -- critical | high | medium | low
    at          timestamptz NOT NULL,  -- device time at which the detector decided (Finding.at_ms)
    started_at  timestamptz NOT NULL,  -- device time at which the condition began (Finding.started_ms)
    cleared     boolean NOT NULL DEFAULT false,  -- true: the condition ended (hysteresis passed)
    evidence    jsonb NOT NULL DEFAULT '{}'::jsonb,  -- values and window behind the decision
    detected_at timestamptz NOT NULL DEFAULT now()   -- when the service stored it (wall clock)
);
CREATE INDEX IF NOT EXISTS findings_resident_at_idx ON findings (resident_id, at DESC);
CREATE INDEX IF NOT EXISTS findings_kind_at_idx ON findings (kind, at DESC);

-- One row per resident and local night (detectors.nights.NightSummary.to_row()).
CREATE TABLE IF NOT EXISTS night_summaries (
    resident_id       text NOT NULL,
    night             date NOT NULL,         -- local date on which the night began
    from_at           timestamptz NOT NULL,  -- the summarised span: summary_from_local ...
    to_at             timestamptz NOT NULL,  -- ... to summary_to_local the next day
    samples           integer NOT NULL,      -- pad samples seen in the span
    time_in_bed_s     double precision NOT NULL,
    bedtime_at        timestamptz,           -- first time in bed in the span
    rise_at           timestamptz,           -- last time the bed was left
    sleep_onset_at    timestamptz,           -- start of the first 10 min without movement in bed
    exits             integer NOT NULL,      -- absences >= exit_count_min_s that ended in a return
    longest_absence_s double precision NOT NULL,
    restlessness_pct  double precision NOT NULL,  -- share of in-bed seconds with movement
    hr_mean           double precision,      -- beats/min over valid in-bed samples
    hr_min            double precision,
    hr_max            double precision,
    rr_mean           double precision,      -- breaths/min over valid in-bed samples
    rr_min            double precision,
    rr_max            double precision,
    pauses            integer NOT NULL,      -- breathing pauses >= pause_count_s
    pauses_per_h      double precision NOT NULL,  -- per hour in bed (the apnea index)
    pause_source      text NOT NULL,         -- 'rr' (the pad's rr = 0 runs) or 'wave' (breath gaps)
    pauses_wave       integer NOT NULL,      -- the waveform's count, whatever the source
    computed_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (resident_id, night)
);

-- Checkpoints of DetectorRunner.snapshot(): zlib'd, versioned JSON of all detector state.
-- id names the checkpoint (e.g. one per service or per partition).
CREATE TABLE IF NOT EXISTS detector_state (
    id         text PRIMARY KEY,
    state      bytea NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
