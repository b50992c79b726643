-- With TimescaleDB, for databases made before these were part of 0002:
-- * device_events is ordered by type too, as its key (device_id, type, time) asks; chunks
--   compressed already keep their old order (TimescaleDB keeps settings per chunk).
-- * mattress_1m answers with real-time aggregation: buckets not yet materialised (recent ones,
--   and those late data invalidated) are computed from the samples at query time, so a
--   dashboard never lags behind stored data. Its retention follows the samples' (policies).
DO $$
BEGIN
    ALTER TABLE device_events SET (timescaledb.compress,
        timescaledb.compress_segmentby = 'device_id', timescaledb.compress_orderby = 'time, type');
EXCEPTION WHEN OTHERS THEN
    RAISE NOTICE 'device_events keeps its compression order: %', SQLERRM;
END
$$;
ALTER MATERIALIZED VIEW mattress_1m SET (timescaledb.materialized_only = false);
