"""Service levels from the database: a scripted month whose answer times are known in advance."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg

from alerts.metrics import FLEET, FLEET_PARAMS
from bedwatch.migrate import migrate
from bedwatch.settings import Settings
from tests.month import MONTH, scripted_month
from tests.support import query


def test_answer_times_of_a_scripted_month_to_the_second(database_url: str) -> None:
    migrate(Settings().replace("database", url=database_url, create_database=False))
    with psycopg.connect(database_url) as conn, conn.transaction():
        scripted_month(conn)

    per_alert = query(
        database_url,
        "SELECT kind, press_to_page_s, page_to_ack_s, answer_s, unanswered"
        " FROM alert_answer_times ORDER BY opened_at",
    )
    assert len(per_alert) == 60
    sos = [r for r in per_alert if r[0] == "sos"]
    for d, (_, press_to_page, page_to_ack, answer, unanswered) in enumerate(sos, start=1):
        assert press_to_page == 2.0  # raised 1 s after the press, delivered 1 s later
        if d < 30:
            assert answer == d * 10
            assert page_to_ack == d * 10 - 1
            assert not unanswered
        else:
            assert (answer, page_to_ack, unanswered) == (None, None, True)
    assert {r[1:] for r in per_alert if r[0] == "immobile"} == {(5.0, 595.0, 600.0, False)}

    [(alerts, within_60, within_180, unanswered, p50, p90, worst, page_p50, page_max)] = query(
        database_url,
        "SELECT sum(alerts), sum(answered_60s), sum(answered_180s), sum(unanswered),"
        " percentile_cont(0.5) WITHIN GROUP (ORDER BY answer_p50_s),"
        " max(answer_p90_s), max(answer_max_s), max(press_to_page_p50_s),"
        " max(press_to_page_max_s)"
        " FROM alert_service_levels_daily WHERE severity = 'critical'",
    )
    # Answered in 10, 20, ... 290 s: 6 within 60 s, 18 within 180 s, of 30 raised.
    assert (alerts, within_60, within_180, unanswered) == (30, 6, 18, 1)
    assert (worst, page_p50, page_max) == (290.0, 2.0, 2.0)
    assert p50 == 150.0  # one alert a day: its own answer time is the day's median
    assert p90 == 290.0
    # Per care worker: c-zhang answered all 59 acknowledged alerts, two a day but the last.
    [(contact, answered, critical, slowest)] = query(
        database_url,
        "SELECT contact_id, sum(answered), sum(critical), max(answer_max_s)"
        " FROM alert_answers_by_contact GROUP BY 1",
    )
    assert (contact, answered, critical, slowest) == ("c-zhang", 59, 29, 600.0)
    days = query(
        database_url,
        "SELECT day, alerts FROM alert_service_levels_daily WHERE severity = 'medium' ORDER BY day",
    )
    assert [d for d, _ in days] == [MONTH + timedelta(days=i) for i in range(30)]
    assert {n for _, n in days} == {1}


def test_the_fleet_gauges_count_each_condition(database_url: str) -> None:
    migrate(Settings().replace("database", url=database_url, create_database=False))
    now = datetime.now(UTC)
    with psycopg.connect(database_url) as conn, conn.transaction():
        conn.execute("INSERT INTO residents (id, name) VALUES ('r-1', 'W'), ('r-2', 'C')")
        conn.execute(
            "INSERT INTO devices (id, kind, resident_id) VALUES ('mat-1', 'mattress', 'r-1'),"
            " ('mat-2', 'mattress', 'r-2'), ('band-1', 'wristband', 'r-1'),"
            " ('band-2', 'wristband', 'r-2')"
        )
        heard = [("mat-1", now), ("mat-2", now - timedelta(hours=2)), ("band-1", now)]
        for device, at in heard:
            conn.execute(
                "INSERT INTO device_health (device_id, last_seen_at, messages) VALUES (%s, %s, 1)",
                (device, at),
            )
        # band-1: its battery low and its strap off, in separate messages, the latest without.
        for minutes, bat, worn in [(3, 15, None), (2, None, 0), (1, None, None)]:
            conn.execute(
                "INSERT INTO wristband_samples (time, device_id, resident_id, bat, worn)"
                " VALUES (%s, 'band-1', 'r-1', %s, %s)",
                (now - timedelta(minutes=minutes), bat, worn),
            )
        conn.execute("UPDATE devices SET active = false WHERE id = 'band-2'")
        counts = {(k, s): n for k, s, n in conn.execute(FLEET, FLEET_PARAMS).fetchall()}
    assert counts == {
        ("mattress", "registered"): 2,
        ("mattress", "online"): 1,
        ("mattress", "silent_1h"): 1,
        ("mattress", "low_battery"): 0,
        ("mattress", "strap_off"): 0,
        ("wristband", "registered"): 1,  # band-2 is no longer active
        ("wristband", "online"): 1,
        ("wristband", "silent_1h"): 0,
        ("wristband", "low_battery"): 1,
        ("wristband", "strap_off"): 1,
    }
