-- Scale-out (bedwatch/cluster): who is alive, and who owns which partition under which epoch.
--
-- A worker owns a partition while its lease runs; every write it makes for the partition is
-- guarded by the epoch it took the lease under (the "fencing token"): a worker that lost its
-- lease without knowing it (paused, cut off) finds its epoch superseded and its write refused, in
-- the same transaction as the rows it meant to write. `position` is the stream sequence up to which
-- the partition's input has been applied, committed with the detector state and the rows.
CREATE TABLE IF NOT EXISTS cluster_workers (
    id           text PRIMARY KEY,
    started_at   timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now(),
    leaving      boolean NOT NULL DEFAULT false,   -- a graceful stop: hand everything over
    info         jsonb NOT NULL DEFAULT '{}'::jsonb   -- host, pid, version: for `cluster status`
);

CREATE TABLE IF NOT EXISTS partition_leases (
    partition    integer PRIMARY KEY CHECK (partition >= 0),
    owner        text,                              -- cluster_workers.id; null: free
    epoch        bigint NOT NULL DEFAULT 0,         -- raised by every acquisition
    expires_at   timestamptz,
    position     bigint NOT NULL DEFAULT 0,         -- telemetry stream sequence applied
    events_at    bigint NOT NULL DEFAULT 0,         -- event stream sequence applied
    state        bytea,                             -- the partition's detector state at position
    moved_at     timestamptz,                       -- when the owner last changed
    updated_at   timestamptz NOT NULL DEFAULT now()
);

-- Writes refused because their epoch was superseded (for metrics and the drills).
CREATE TABLE IF NOT EXISTS partition_fenced (
    at        timestamptz NOT NULL DEFAULT now(),
    partition integer NOT NULL,
    worker    text NOT NULL,
    epoch     bigint NOT NULL
);
