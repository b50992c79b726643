-- Without TimescaleDB: the per-minute vitals as an ordinary view of the same shape.
CREATE OR REPLACE VIEW mattress_1m AS
SELECT date_bin(INTERVAL '1 minute', time, TIMESTAMPTZ '2000-01-01') AS bucket, device_id,
       resident_id, avg(hr) AS hr, avg(rr) AS rr, max(move) AS move_max, avg(occ) AS occ,
       avg(sq) AS sq, count(*) AS samples
FROM mattress_samples
WHERE source = 'device'
GROUP BY bucket, device_id, resident_id;
CREATE INDEX IF NOT EXISTS mattress_samples_time ON mattress_samples (time);
