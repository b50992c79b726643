-- With TimescaleDB: device data as hypertables, compressed by device. Policies (compression
-- and retention ages) come from settings and are set by ingest/retention.py after migrating.
SELECT create_hypertable('mattress_samples', 'time', if_not_exists => TRUE, migrate_data => TRUE);
SELECT create_hypertable('wristband_samples', 'time', if_not_exists => TRUE, migrate_data => TRUE);
SELECT create_hypertable('device_events', 'time', if_not_exists => TRUE, migrate_data => TRUE);
SELECT create_hypertable('device_status', 'time', if_not_exists => TRUE, migrate_data => TRUE);
SELECT create_hypertable('wave_blocks', 'time', chunk_time_interval => INTERVAL '6 hours',
                         if_not_exists => TRUE, migrate_data => TRUE);

ALTER TABLE mattress_samples SET (timescaledb.compress,
    timescaledb.compress_segmentby = 'device_id, source', timescaledb.compress_orderby = 'time');
ALTER TABLE wristband_samples SET (timescaledb.compress,
    timescaledb.compress_segmentby = 'device_id', timescaledb.compress_orderby = 'time');
-- An event's key is (device_id, type, time): every key column segments or orders.
ALTER TABLE device_events SET (timescaledb.compress,
    timescaledb.compress_segmentby = 'device_id', timescaledb.compress_orderby = 'time, type');
ALTER TABLE device_status SET (timescaledb.compress,
    timescaledb.compress_segmentby = 'device_id', timescaledb.compress_orderby = 'time');

-- Per-minute vitals for dashboards, kept up to date by TimescaleDB.
CREATE MATERIALIZED VIEW IF NOT EXISTS mattress_1m
WITH (timescaledb.continuous) AS
SELECT time_bucket(INTERVAL '1 minute', time) AS bucket, device_id, resident_id,
       avg(hr) AS hr, avg(rr) AS rr, max(move) AS move_max, avg(occ) AS occ, avg(sq) AS sq,
       count(*) AS samples
FROM mattress_samples
WHERE source = 'device'
GROUP BY bucket, device_id, resident_id
WITH NO DATA;
-- Late data is accepted for 7 days (ingest.stale_after_s), so the refresh window reaches that
-- far back; TimescaleDB re-materialises only the buckets that late rows invalidated.
SELECT add_continuous_aggregate_policy('mattress_1m', start_offset => INTERVAL '8 days',
    end_offset => INTERVAL '1 minute', schedule_interval => INTERVAL '1 minute',
    if_not_exists => TRUE);
