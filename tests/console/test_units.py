"""Console pieces alone: session cookies, form tokens, language choice, the night's charts."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from alerts.console import plots
from alerts.console.auth import SESSION_TTL_S, Sessions, token_digest
from alerts.console.queries import ResidentStatus, _status, latest_night
from alerts.console.text import Lang, Words, choose
from alerts.console.views import resident_list
from alerts.model import ContactId
from ingest.records import ResidentId

NOW_MS = 1_764_194_465_000
SECRET = b"0123456789abcdef0123456789abcdef"


def test_session_cookie_round_trip_expiry_and_keys() -> None:
    sessions = Sessions(SECRET)
    issued = sessions.issue(ContactId("c-zhang"), token_digest("bw_x"), NOW_MS)
    back = sessions.verify(issued.cookie, NOW_MS + 1000)
    assert back == issued
    assert sessions.verify(issued.cookie, NOW_MS + SESSION_TTL_S * 1000) is None
    assert Sessions(b"another secret of 32 bytes......").verify(issued.cookie, NOW_MS) is None
    contact, digest, expires, signature = issued.cookie.split(".")
    longer = ".".join([contact, digest, str(int(expires) + 3600), signature])
    assert sessions.verify(longer, NOW_MS) is None  # an expiry moved by hand
    assert sessions.verify(issued.cookie + "x", NOW_MS) is None
    assert sessions.verify("a.b.c", NOW_MS) is None
    assert sessions.verify(None, NOW_MS) is None


def test_form_token_belongs_to_one_session() -> None:
    sessions = Sessions(SECRET)
    one = sessions.issue(ContactId("c-zhang"), token_digest("bw_x"), NOW_MS)
    two = sessions.issue(ContactId("c-zhang"), token_digest("bw_y"), NOW_MS)
    assert sessions.form_ok(one, sessions.form_token(one))
    assert not sessions.form_ok(two, sessions.form_token(one))
    assert not sessions.form_ok(one, "")


def test_language_toggle_beats_the_contacts_own() -> None:
    assert choose(None, None, "en") is Lang.EN
    assert choose("zh", None, "en") is Lang.ZH
    assert choose("zh", "en", "zh") is Lang.EN
    assert choose("fr", "<script>", None) is Lang.ZH


def test_latest_night_turns_at_six_in_the_evening_local() -> None:
    shanghai = "Asia/Shanghai"
    # 09:59 UTC is 17:59 in Shanghai: still last night; 10:00 UTC is 18:00, tonight.
    assert latest_night(datetime(2025, 11, 26, 9, 59, tzinfo=UTC), shanghai) == date(2025, 11, 25)
    assert latest_night(datetime(2025, 11, 26, 10, 0, tzinfo=UTC), shanghai) == date(2025, 11, 26)


def test_chart_breaks_the_line_where_data_is_missing() -> None:
    values: list[float | None] = [60.0, 61.0, None, None, 59.0, 58.0]
    chart = plots.Chart("hr", "Heart rate", values, 40, 100, plots.Style.LINE)
    svg = plots.svg(chart, datetime(2025, 11, 25, 10, tzinfo=UTC), "Asia/Shanghai")
    assert svg.startswith('<svg class="chart chart-hr"')
    series = svg.split('class="series" d="')[1].split('"')[0]
    assert series.count("M") == 2
    assert series.count("L") == 2
    assert ">18:00<" in svg  # time axis in the resident's zone


def test_chart_labels_are_escaped_and_range_grows_to_the_data() -> None:
    chart = plots.Chart("rr", "<b>", [5.0, 45.0], 0, 30, plots.Style.LINE)
    svg = plots.svg(chart, datetime(2025, 11, 25, 10, tzinfo=UTC), "UTC")
    assert 'aria-label="&lt;b&gt;"' in svg
    assert ">45<" in svg


def test_static_files_are_read_once_and_made_up_names_are_not_cached() -> None:
    from alerts.console import routes

    known = sorted(routes._static_files())
    assert known  # the console's own css and js
    for i in range(1000):
        assert routes._static(f"made-up-{i}.css") is None
    assert routes._static("../routes.py") is None
    assert routes._static(known[0]) is not None
    assert routes._static_files.cache_info().currsize == 1


def test_a_resident_card_judges_freshness_by_when_the_pad_was_heard() -> None:
    now = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)
    replayed = datetime(2026, 12, 1, 2, 10, tzinfo=UTC)  # a night played back, or a skewed clock

    def card(heard: datetime) -> ResidentStatus:
        row = ("r-1", "mat-1", "mattress", heard, "online", None, replayed, 61.0, 14.0, 1, None)
        return _status(ResidentId("r-1"), "王", "3-1", "Asia/Shanghai", [row], now)

    live = card(now - timedelta(seconds=5))
    assert (live.in_bed, live.hr, live.rr) == (True, 61.0, 14.0)  # not "no recent data"
    assert live.devices[0].online
    quiet = card(now - timedelta(minutes=3))
    assert (quiet.in_bed, quiet.hr, quiet.rr) == (None, None, None)  # no stale values as current
    words = Words(Lang.EN)
    text = resident_list(words, [live], now)
    assert "No recent data" not in text
    assert "<b>61</b>" in text
    assert "No recent data" in resident_list(words, [quiet], now)
