"""Console tests' setup: two residents with separate care teams (or the scripted month of
tests/month.py), tokens, and the real service."""

from __future__ import annotations

import contextlib
import http.client
import http.cookiejar
import json
import math
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import psycopg

from alerts.console.queries import latest_night
from alerts.tokens import issue_token
from bedwatch.migrate import migrate
from bedwatch.service import Service, alerts_component
from bedwatch.site import parse_site
from ingest.records import EpochMs, wall_ms
from ingest.registry import store_site
from tests.alerts.receivers import HttpReceiver
from tests.month import NOW, Conn, scripted_ward
from tests.support import (
    SHARED_BROKER,
    Device,
    ServiceThread,
    free_port,
    fresh_database,
    settings_for,
    unique_prefix,
    wait_until,
)

TZ = "Asia/Shanghai"


def site_text(hook: str) -> str:
    return f"""
[[contacts]]
id = "c-zhang"
name = "张护理员"
role = "care_staff"
language = "zh"
channels = ["{hook}/zhang"]

[[contacts]]
id = "c-other"
name = "Other Carer"
role = "care_staff"
language = "en"
channels = ["{hook}/other"]

[[residents]]
id = "r-0101"
name = "王阿婆"
room = "新虹 3-1-201"
timezone = "{TZ}"
devices = [{{ id = "mat-0101", kind = "mattress" }}, {{ id = "band-0101", kind = "wristband" }}]
care_team = ["c-zhang"]

[[residents]]
id = "r-0202"
name = "李阿公"
room = "新虹 5-2-402"
timezone = "{TZ}"
devices = [{{ id = "mat-0202", kind = "mattress" }}]
care_team = ["c-other"]
"""


def care_site(conn: Conn, hook: str) -> tuple[str, ...]:
    """Two residents with a care worker each; the contacts to give tokens."""
    store_site(conn, parse_site(site_text(hook)))
    return ("c-zhang", "c-other")


def month_site(conn: Conn, hook: str) -> tuple[str, ...]:
    """tests/month.py's ward and month; its care worker and supervisors get tokens."""
    scripted_ward(conn)
    return ("c-zhang", "s-kangjian", "s-all")


def month_clock() -> EpochMs:
    """The service's clock stopped at the script's NOW: its figures stay those of the script
    however long a test runs, and no device falls silent meanwhile."""
    return EpochMs(int(NOW.timestamp() * 1000))


@dataclass(frozen=True, slots=True)
class Running:
    base: str  # http://127.0.0.1:PORT
    database_url: str
    broker_url: str
    prefix: str
    tokens: dict[str, str]  # contact id -> API token
    service: Service
    receiver: HttpReceiver


@contextlib.contextmanager
def running_site(
    database_url: str,
    broker_url: str,
    prefix: str,
    *,
    site: Callable[[Conn, str], tuple[str, ...]] = care_site,
    clock: Callable[[], EpochMs] = wall_ms,
) -> Iterator[Running]:
    """The service with the alerts component and its HTTP server on a free port."""
    port = free_port()
    with HttpReceiver() as receiver:
        settings = settings_for(database_url, broker_url, prefix)
        settings = settings.replace("http", addr=f"127.0.0.1:{port}")
        settings = settings.replace("alerts", public_url=f"http://127.0.0.1:{port}")
        migrate(settings)
        hook = f"json://127.0.0.1:{receiver.port}/ok"
        with psycopg.connect(database_url) as conn, conn.transaction():
            tokens = {c: issue_token(conn, c) for c in site(conn, hook)}
        component = alerts_component(settings)
        service = Service(settings, components=[component], clock=clock)
        with ServiceThread(service):
            wait_until(component.ready.is_set, 20)
            base = f"http://127.0.0.1:{port}"
            wait_until(lambda: _answers(f"{base}/health"), 10)
            yield Running(base, database_url, broker_url, prefix, tokens, service, receiver)


@contextlib.contextmanager
def running_month() -> Iterator[Running]:
    """tests/month.py's ward in a database of its own, served at the script's NOW: for a module
    of tests that read it (and put back what they change)."""
    with (
        fresh_database() as url,
        running_site(
            url, SHARED_BROKER, unique_prefix(), site=month_site, clock=month_clock
        ) as run,
    ):
        yield run


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False


def now_ms() -> int:
    return int(time.time() * 1000)


def press_sos(run: Running, device: str = "band-0101") -> None:
    band = Device(run.broker_url, device, run.prefix)
    try:
        band.send("event", json.dumps({"seq": 1, "ts": now_ms(), "type": "sos"}))
    finally:
        band.close()


def last_night() -> date:
    """A night wholly in the past, whatever the time of day the test runs."""
    return latest_night(datetime.now(UTC), TZ) - timedelta(days=1)


def night_samples(night: date) -> list[dict[str, object]]:
    """22:00-06:00 local at 1 Hz: asleep, a toilet trip at 02:10, restless spells, HR dipping."""
    start = datetime.combine(night, datetime.min.time(), ZoneInfo(TZ)) + timedelta(hours=22)
    t0 = int(start.timestamp() * 1000)
    out: list[dict[str, object]] = []
    for s in range(8 * 3600):
        away = 4 * 3600 + 600 <= s < 4 * 3600 + 1080
        cycle = math.sin(s / 5400 * 2 * math.pi)
        restless = (s // 60) % 47 == 0 or (s // 60) % 89 == 0
        sample: dict[str, object] = {"ts": t0 + s * 1000, "occ": 0 if away else 1, "sq": 90}
        sample["hr"] = None if away else round(62 + 5 * cycle - s / 3600)
        sample["rr"] = None if away else round(14 + 1.5 * cycle)
        sample["move"] = 0 if away else (40 + s % 30 if restless else s % 3)
        out.append(sample)
    return out


def play_night(run: Running, night: date) -> int:
    """Last night's pad telemetry, then one sample now and a wristband reading; rows sent."""
    mat = Device(run.broker_url, "mat-0101", run.prefix)
    band = Device(run.broker_url, "band-0101", run.prefix)
    try:
        samples = night_samples(night)
        for seq, i in enumerate(range(0, len(samples), 120)):
            mat.send("telemetry", json.dumps({"seq": seq, "samples": samples[i : i + 120]}))
        now = {"seq": 9999, "ts": now_ms(), "hr": 66, "rr": 15, "move": 1, "occ": 1, "sq": 95}
        mat.send("telemetry", json.dumps(now))
        band.send("telemetry", json.dumps({"seq": 1, "ts": now_ms(), "hr": 70, "bat": 81}))
    finally:
        mat.close()
        band.close()
    return len(samples) + 1


class Browserless:
    """A cookie-keeping HTTP client, to check the console's rules without a browser."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.jar = http.cookiejar.CookieJar()
        self._opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self.jar), _NoRedirect()
        )

    def request(
        self, path: str, form: dict[str, str] | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], str]:
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        req = urllib.request.Request(self.base + path, data=data, headers=headers or {})
        try:
            with self._opener.open(req, timeout=10) as response:
                return response.status, dict(response.headers), response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read().decode()

    def open(self, path: str, timeout_s: float = 10.0) -> http.client.HTTPResponse:
        """A response left open to read as it comes (an event stream); errors raise."""
        response: http.client.HTTPResponse = self._opener.open(self.base + path, timeout=timeout_s)
        return response

    def login(self, contact: str, token: str) -> int:
        return self.request("/console/login", {"contact_id": contact, "token": token})[0]


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None
