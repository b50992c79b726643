"""A scripted month of alerts and a fleet at one moment, whose figures are known in advance.

November 2026 (UTC), three areas:

- r-0101 (kangjian/kangle/12, c-zhang's): each day d = 1..30 an SOS pressed at 02:00:00, raised
  1 s later, a failed attempt and then a page delivered 2 s after the press, acknowledged by
  c-zhang d * 10 s after it was raised; day 30's never (resolved by the system: unanswered).
  Each day too an `immobile` (medium) raised at 14:00:00, paged 5 s after, acknowledged 600 s
  after by c-zhang.
- r-0201 (hongmei/xinhong/3, c-li's): days 1..10 a fall at 03:00:00, raised 1 s later, paged 3 s
  after the fall, acknowledged by c-li 30 s after it was raised; day 10's only after 400 s, when
  the escalation had told the ladder's last step (tier 2).
- r-0301 (no area): on day 15 at 08:00:00 a `heart_rate` (high) raised and paged 10 s later,
  escalated to its last step (tier 1), never acknowledged.
- r-0102 (kangjian/kangle/5) raises nothing in the month.

The fleet at NOW (2026-12-01 15:00 UTC, 23:00 in Shanghai, the night):
- mat-0101 online, out of bed since NOW - 5 min; band-0101 battery 15 %, strap off;
- mat-0102 silent for 2 hours;
- mat-0201 online, in bed; band-0201 never heard;
- mat-0301 heard 1 min ago but its latest status says offline.
And alerts standing at NOW: r-0102's SOS raised 3 min before (open), r-0201's `heart_rate`
raised 45 min before and acknowledged.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import psycopg

MONTH = date(2026, 11, 1)
START = datetime(2026, 11, 1, tzinfo=UTC)
END = datetime(2026, 12, 1, tzinfo=UTC)
NOW = datetime(2026, 12, 1, 15, 0, tzinfo=UTC)
Conn = psycopg.Connection[tuple[object, ...]]

RESIDENTS = [
    ("r-0101", "王阿婆", "kangjian/kangle/12", "12-301"),
    ("r-0102", "李阿公", "kangjian/kangle/5", "5-102"),
    ("r-0201", "赵阿姨", "hongmei/xinhong/3", "3-201"),
    ("r-0301", "钱老伯", "", "独居"),
]
CONTACTS = [
    ("c-zhang", "张护理员", "care_staff", []),
    ("c-li", "李护理员", "care_staff", []),
    ("s-kangjian", "康健街道主管", "supervisor", ["kangjian"]),
    ("s-all", "运营中心", "supervisor", ["*"]),
]
TEAMS = [("r-0101", "c-zhang"), ("r-0102", "c-zhang"), ("r-0201", "c-li"), ("r-0301", "c-li")]


def scripted_month(conn: Conn) -> None:
    """The month's alerts alone (r-0101's SOS and immobile), without registry rows."""
    for d in range(1, 31):
        day = datetime(MONTH.year, MONTH.month, d, tzinfo=UTC)
        press = day + timedelta(hours=2)
        raised = press + timedelta(seconds=1)
        acked = None if d == 30 else raised + timedelta(seconds=d * 10)
        alert(
            conn,
            "r-0101",
            "sos",
            "critical",
            press,
            raised,
            acked,
            "c-zhang",
            pages=[(raised, 1000.0, False), (raised + timedelta(seconds=0.5), 500.0, True)],
        )
        start = day + timedelta(hours=14)
        alert(
            conn,
            "r-0101",
            "immobile",
            "medium",
            start,
            start,
            start + timedelta(seconds=600),
            "c-zhang",
            pages=[(start + timedelta(seconds=4), 1000.0, True)],
        )


def scripted_ward(conn: Conn) -> None:
    """The whole script: registry, the month's alerts, and the fleet and alerts at NOW."""
    conn.cursor().executemany(
        "INSERT INTO residents (id, name, area, room) VALUES (%s, %s, %s, %s)", RESIDENTS
    )
    conn.cursor().executemany(
        "INSERT INTO contacts (id, name, role, areas) VALUES (%s, %s, %s, %s)", CONTACTS
    )
    conn.cursor().executemany(
        "INSERT INTO care_team (resident_id, contact_id, position) VALUES (%s, %s, 0)", TEAMS
    )
    scripted_month(conn)
    for d in range(1, 11):
        fall = datetime(MONTH.year, MONTH.month, d, 3, tzinfo=UTC)
        raised = fall + timedelta(seconds=1)
        acked = raised + timedelta(seconds=400 if d == 10 else 30)
        alert(
            conn,
            "r-0201",
            "fall",
            "critical",
            fall,
            raised,
            acked,
            "c-li",
            pages=[(fall + timedelta(seconds=2.5), 500.0, True)],
            tier=2 if d == 10 else 0,
        )
    pulse = datetime(MONTH.year, MONTH.month, 15, 8, tzinfo=UTC)
    alert(
        conn,
        "r-0301",
        "heart_rate",
        "high",
        pulse,
        pulse,
        None,
        "c-li",
        pages=[(pulse + timedelta(seconds=9), 1000.0, True)],
        tier=1,
    )
    fleet_at_now(conn)


def fleet_at_now(conn: Conn) -> None:
    devices = [
        ("mat-0101", "mattress", "r-0101"),
        ("band-0101", "wristband", "r-0101"),
        ("mat-0102", "mattress", "r-0102"),
        ("mat-0201", "mattress", "r-0201"),
        ("band-0201", "wristband", "r-0201"),
        ("mat-0301", "mattress", "r-0301"),
    ]
    conn.cursor().executemany(
        "INSERT INTO devices (id, kind, resident_id) VALUES (%s, %s, %s)", devices
    )
    heard = [
        ("mat-0101", NOW - timedelta(seconds=10)),
        ("band-0101", NOW - timedelta(seconds=30)),
        ("mat-0102", NOW - timedelta(hours=2)),
        ("mat-0201", NOW - timedelta(seconds=5)),
        ("mat-0301", NOW - timedelta(minutes=1)),
    ]
    conn.cursor().executemany(
        "INSERT INTO device_health (device_id, last_seen_at, messages) VALUES (%s, %s, 1)", heard
    )
    # mat-0101: in bed until NOW - 5 min, out of bed since; mat-0201 in bed.
    samples = [("mat-0101", "r-0101", s, 1 if s >= 300 else 0) for s in range(600, 9, -10)]
    samples += [("mat-0201", "r-0201", s, 1) for s in range(600, 4, -5)]
    samples += [("mat-0301", "r-0301", 60, 0), ("mat-0102", "r-0102", 7200, 1)]
    conn.cursor().executemany(
        "INSERT INTO mattress_samples (time, device_id, resident_id, hr, rr, occ)"
        " VALUES (%s, %s, %s, 60, 14, %s)",
        [(NOW - timedelta(seconds=s), dev, r, occ) for dev, r, s, occ in samples],
    )
    conn.execute(
        "INSERT INTO wristband_samples (time, device_id, resident_id, bat, worn)"
        " VALUES (%s, 'band-0101', 'r-0101', 15, 0)",
        (NOW - timedelta(seconds=30),),
    )
    conn.execute(
        "INSERT INTO device_status (time, device_id, state, from_device_clock)"
        " VALUES (%s, 'mat-0301', 'offline', false)",
        (NOW - timedelta(seconds=50),),
    )
    standing = NOW - timedelta(minutes=3)
    alert(
        conn,
        "r-0102",
        "sos",
        "critical",
        standing,
        standing,
        None,
        "c-zhang",
        pages=[(standing, 100.0, True)],
        state="open",
    )
    pulse = NOW - timedelta(minutes=45)
    alert(
        conn,
        "r-0201",
        "heart_rate",
        "high",
        pulse,
        pulse,
        pulse + timedelta(minutes=2),
        "c-li",
        pages=[(pulse, 100.0, True)],
        state="acknowledged",
    )


def alert(
    conn: Conn,
    resident: str,
    kind: str,
    severity: str,
    started: datetime,
    raised: datetime,
    acked: datetime | None,
    by: str,
    pages: list[tuple[datetime, float, bool]],
    *,
    tier: int = 0,
    state: str = "resolved",
) -> None:
    """One alert with its delivery attempts (sent at, duration in ms, delivered)."""
    closed = state == "resolved"
    row = conn.execute(
        "INSERT INTO alerts (resident_id, kind, severity, state, opened_at, acked_at, acked_by,"
        " resolved_at, resolved_by, started_at, last_seen_at, tier)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
        (
            resident,
            kind,
            severity,
            state,
            raised,
            acked,
            None if acked is None else by,
            raised + timedelta(hours=1) if closed else None,
            ("system" if acked is None else by) if closed else None,
            started,
            started,
            tier,
        ),
    ).fetchone()
    assert row is not None
    for sent, duration_ms, ok in pages:
        conn.execute(
            "INSERT INTO notifications (alert_id, contact_id, channel_index, channel, attempt,"
            " reason, result, title, body, created_at, due_at, sent_at, duration_ms)"
            " VALUES (%s, %s, 0, 'json://x', 1, 'opened', %s, 't', 'b', %s, %s, %s, %s)",
            (row[0], by, "delivered" if ok else "failed", sent, sent, sent, duration_ms),
        )
