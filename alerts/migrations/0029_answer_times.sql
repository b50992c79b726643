-- Service levels: how fast each alert reached a person and was answered, for the operations
-- centre, its reports and Grafana. Telecare centres are held to answering 97.5 % of emergency
-- calls within 60 s and 99 % within 180 s; these views give those figures per alert and per day.
--
-- One row per alert:
--   first_page_at    when the first notice reached a contact (the earliest delivered attempt's
--                    start plus its duration: a page sent straight from memory during a database
--                    outage counts at the time it was sent)
--   press_to_page_s  from the moment the condition began (device time: the SOS press) to then
--   page_to_ack_s    from the first page to the acknowledgement
--   answer_s         from the alert being raised to its acknowledgement
--   tier             the highest ladder step told (0: the first)
--   unanswered       closed or still open without anybody acknowledging it
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
    FROM notifications n WHERE n.alert_id = a.id AND n.result = 'delivered'
) p ON true;

-- Per UTC day and severity: alerts raised, answered within 60 s and 180 s, answer-time
-- percentiles (seconds), unanswered. Shares are of all alerts raised that day.
CREATE OR REPLACE VIEW alert_service_levels_daily AS
SELECT date_trunc('day', opened_at AT TIME ZONE 'UTC')::date AS day, severity,
       count(*) AS alerts,
       count(*) FILTER (WHERE answer_s <= 60) AS answered_60s,
       count(*) FILTER (WHERE answer_s <= 180) AS answered_180s,
       count(*) FILTER (WHERE unanswered) AS unanswered,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY answer_s) AS answer_p50_s,
       percentile_cont(0.9) WITHIN GROUP (ORDER BY answer_s) AS answer_p90_s,
       max(answer_s) AS answer_max_s,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY press_to_page_s) AS press_to_page_p50_s,
       max(press_to_page_s) AS press_to_page_max_s
FROM alert_answer_times
GROUP BY 1, 2;

-- Per contact who acknowledged (a care worker, a doctor; 'operator:<name>' from the API) and UTC
-- day: alerts answered, and how fast from being raised.
CREATE OR REPLACE VIEW alert_answers_by_contact AS
SELECT acked_by AS contact_id, date_trunc('day', acked_at AT TIME ZONE 'UTC')::date AS day,
       count(*) AS answered,
       count(*) FILTER (WHERE severity = 'critical') AS critical,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY answer_s) AS answer_p50_s,
       max(answer_s) AS answer_max_s
FROM alert_answer_times
WHERE acked_by IS NOT NULL
GROUP BY 1, 2;
