"""The shared scripted month (tests/month.py) with what the reports read besides: nights.

On top of tests/month.py's ward (figures known to the second, at NOW):
- night summaries: r-0102's pad reported nights 1-20 of November in full, r-0201's all 30 nights
  at half a sample a second, r-0301's none; r-0101's has a fortnight of distinct values
  (`summary`), every night of 1-14 November but the 7th;
- r-0101's pad a sample a minute through the night of 14 November, and findings;
- d-chen, a family doctor who reads English.
So of 4 pads x 30 nights, 13 + 20 + 30 = 63 bed-nights reported (52.5 %), covering
(13 + 20 + 15) / 120 = 40.0 % of the time.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import psycopg
from psycopg.types.json import Jsonb

from tests.month import MONTH, scripted_ward

Conn = psycopg.Connection[tuple[object, ...]]
ZONE = ZoneInfo("Asia/Shanghai")
DAYS = 30
NIGHT = date(2026, 11, 14)  # the sleep report's night
MISSING = date(2026, 11, 7)  # r-0101's pad had no summary that night
SPAN_S = 18 * 3600  # a night summary's span: 18:00 to 12:00


def local(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=ZONE)


def month(conn: Conn) -> None:
    scripted_ward(conn)
    conn.execute(
        "INSERT INTO contacts (id, name, role, language) VALUES"
        " ('d-chen', 'Dr Chen', 'family_doctor', 'en')"
    )
    for k in range(DAYS):
        night = MONTH + timedelta(days=k)
        if k < 20:
            insert_night(conn, "r-0102", night, samples=SPAN_S)
        insert_night(conn, "r-0201", night, samples=SPAN_S // 2)
    sleep(conn)


def insert_night(conn: Conn, resident: str, night: date, *, samples: int, **values: object) -> None:
    row: dict[str, object] = {
        "time_in_bed_s": 27_000.0,
        "sleep_onset_at": None,
        "exits": 1,
        "longest_absence_s": 600.0,
        "restlessness_pct": 5.0,
        "hr_mean": 62.0,
        "hr_min": 55.0,
        "hr_max": 75.0,
        "rr_mean": 15.0,
        "rr_min": 12.0,
        "rr_max": 19.0,
        "pauses_per_h": 3.0,
    } | values
    columns = ", ".join(row)
    conn.execute(
        f"INSERT INTO night_summaries (resident_id, night, from_at, to_at, samples, pauses,"
        f" pause_source, pauses_wave, {columns})"
        f" VALUES (%s, %s, %s, %s, %s, 0, 'rr', 0, {', '.join(['%s'] * len(row))})",
        (resident, night, local(night, 18), local(night, 18) + timedelta(seconds=SPAN_S),
         samples, *row.values()),
    )  # fmt: skip


def summary(k: int) -> dict[str, object]:
    """r-0101's night k (1 = 1 November ... 14 = the report's night): values that tell nights
    apart, e.g. night 14: 9:20 in bed, asleep 22:14, 2 exits, HR 74.0, RR 15.4, 7.0 pauses/h."""
    night = MONTH + timedelta(days=k - 1)
    return {
        "time_in_bed_s": 25_200.0 + 600 * k,
        "sleep_onset_at": local(night, 22, k),
        "exits": k % 4,
        "longest_absence_s": 300.0 + 60 * k,
        "hr_mean": 60.0 + k,
        "hr_min": 50.0 + k,
        "hr_max": 80.0 + k,
        "rr_mean": 14.0 + k / 10,
        "rr_min": 11.0,
        "rr_max": 20.0,
        "pauses_per_h": k / 2,
    }


def sleep(conn: Conn) -> None:
    """r-0101: summaries for 1-14 November but the 7th, a minute per sample on the 14th's night
    (in bed 22:00-06:00 but 02:00-02:15, HR 62, RR 15), and findings."""
    for k in range(1, 15):
        night = MONTH + timedelta(days=k - 1)
        if night != MISSING:
            insert_night(conn, "r-0101", night, samples=SPAN_S, **summary(k))
    start = local(NIGHT, 22)
    rows = []
    for minute in range(8 * 60):
        at = start + timedelta(minutes=minute)
        in_bed = not 240 <= minute < 255
        rows.append((at, 62.0 if in_bed else None, 15.0 if in_bed else None, int(in_bed)))
    with conn.cursor().copy(
        "COPY mattress_samples (time, device_id, resident_id, hr, rr, move, occ, sq, source)"
        " FROM STDIN"
    ) as copy:
        for at, hr, rr, occ in rows:
            copy.write_row((at, "mat-0101", "r-0101", hr, rr, 0, occ, 80, "device"))
    finding(conn, "breathing_pause", "high", local(NIGHT + timedelta(days=1), 3, 10), pause_s=42)
    finding(conn, "heart_rate", "medium", local(NIGHT, 23, 5), late=True, hr=118)
    finding(conn, "sleep_change", "low", local(NIGHT - timedelta(days=4), 23, 0), night="x")
    finding(conn, "breathing_pause", "high", local(NIGHT - timedelta(days=2), 1, 0), pause_s=31)


def finding(
    conn: Conn, kind: str, severity: str, at: datetime, *, late: bool = False, **evidence: object
) -> None:
    conn.execute(
        "INSERT INTO findings (resident_id, device_id, kind, severity, at, started_at, evidence,"
        " late) VALUES ('r-0101', 'mat-0101', %s, %s, %s, %s, %s, %s)",
        (kind, severity, at, at, Jsonb(evidence), late),
    )
