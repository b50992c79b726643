"""The feed's read-only API over HTTP on the scripted month (tests/month.py): its scope, its
tokens, figures to the second, and every answer as docs/openapi.yaml describes it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import yaml
from starlette.applications import Starlette

from alerts.api import make_routes
from alerts.component import Alerts
from alerts.engine import Engine
from alerts.tokens import issue_feed_token, issue_token, revoke_feed_tokens
from bedwatch.http import listen, serve
from bedwatch.migrate import migrate
from bedwatch.settings import Settings
from tests.alerts.harness import FakeClock, running
from tests.month import END, NOW, START, scripted_ward
from tests.support import free_port

OPENAPI: dict[str, Any] = yaml.safe_load(
    (Path(__file__).parents[2] / "docs" / "openapi.yaml").read_text(encoding="utf-8")
)
Answer = tuple[int, Any]


def conforms(value: Any, schema: dict[str, Any], at: str = "$") -> list[str]:
    """Where `value` departs from a schema of the document: types (3.1 lists of them too),
    required fields, fields the document does not name, enumerations, date-times, $refs."""
    if "$ref" in schema:
        return conforms(value, _resolve(schema["$ref"]), at)
    kinds = schema.get("type")
    if kinds is not None:
        allowed = kinds if isinstance(kinds, list) else [kinds]
        if not any(_is(value, kind) for kind in allowed):
            return [f"{at}: {value!r} is not {' or '.join(allowed)}"]
    errors = []
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{at}: {value!r} not in {schema['enum']}")
    if schema.get("format") == "date-time" and isinstance(value, str) and not _utc(value):
        errors.append(f"{at}: {value!r} is not an RFC 3339 time in UTC")
    if isinstance(value, dict):
        errors += [f"{at}.{k}: missing" for k in schema.get("required", []) if k not in value]
        fields, other = schema.get("properties", {}), schema.get("additionalProperties", True)
        for key, item in value.items():
            if key in fields:
                errors += conforms(item, fields[key], f"{at}.{key}")
            elif other is False:
                errors.append(f"{at}.{key}: not in the document")
            elif isinstance(other, dict):
                errors += conforms(item, other, f"{at}.{key}")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            errors += conforms(item, schema["items"], f"{at}[{i}]")
    return errors


def _utc(text: str) -> bool:
    try:
        return text.endswith("Z") and datetime.fromisoformat(text).tzinfo is not None
    except ValueError:
        return False


def _resolve(ref: str) -> dict[str, Any]:
    found: Any = OPENAPI
    for part in ref.removeprefix("#/").split("/"):
        found = found[part]
    assert isinstance(found, dict)
    return found


def _is(value: Any, kind: str) -> bool:
    number = isinstance(value, int | float) and not isinstance(value, bool)
    return {
        "object": isinstance(value, dict),
        "array": isinstance(value, list),
        "string": isinstance(value, str),
        "integer": number and float(value).is_integer(),
        "number": number,
        "boolean": isinstance(value, bool),
        "null": value is None,
    }[kind]


def documented(path: str, answer: Answer) -> list[str]:
    """The answer against the document's response for that path and status."""
    status, body = answer
    response = OPENAPI["paths"][path]["get"]["responses"][str(status)]
    if "$ref" in response:
        response = _resolve(response["$ref"])
    return conforms(body, response["content"]["application/json"]["schema"])


def get(url: str, token: str | None) -> Answer:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def post(url: str, token: str) -> int:
    request = urllib.request.Request(
        url, data=b"", headers={"Authorization": f"Bearer {token}"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


@contextlib.asynccontextmanager
async def serving(alerts: Alerts, engine: Engine) -> AsyncIterator[str]:
    """The alerts' routes (the feed's among them) on a free port, on this loop."""
    assert alerts.links is not None
    port = free_port()
    app = Starlette(routes=make_routes(engine, alerts.links, alerts.pool))
    server = asyncio.create_task(serve(app, listen(f"127.0.0.1:{port}"), closing=lambda: None))
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await server


def ward_with_feeds(database_url: str) -> tuple[Settings, dict[str, str]]:
    """The scripted ward; a feed of kangjian; tokens: the feed's, one revoked, one of a feed
    since taken out of the site file, and a care worker's."""
    settings = Settings().replace("database", url=database_url, create_database=False)
    settings = settings.replace("alerts", serve_http=False)
    migrate(settings)
    feeds = {"city": {"areas": ["kangjian"]}, "old": {"areas": ["*"]}}
    with psycopg.connect(database_url) as conn, conn.transaction():
        scripted_ward(conn)
        conn.execute(
            "INSERT INTO site_settings (section, value) VALUES ('feeds', %s)", (json.dumps(feeds),)
        )
        tokens = {"revoked": issue_feed_token(conn, "city"), "old": issue_feed_token(conn, "old")}
        revoke_feed_tokens(conn, "city")
        tokens |= {"feed": issue_feed_token(conn, "city"), "contact": issue_token(conn, "c-zhang")}
        del feeds["old"]
        conn.execute(
            "UPDATE site_settings SET value = %s WHERE section = 'feeds'", (json.dumps(feeds),)
        )
    return settings, tokens


CALLS = {
    "state": ("/api/v1/feed/state", "feed"),
    "no token": ("/api/v1/feed/state", None),
    "contact token": ("/api/v1/feed/state", "contact"),
    "revoked": ("/api/v1/feed/figures", "revoked"),
    "feed gone": ("/api/v1/feed/figures", "old"),
    "month": (
        f"/api/v1/feed/figures?from={START:%Y-%m-%dT%H:%M:%SZ}&to={END:%Y-%m-%dT%H:%MZ}",
        "feed",
    ),
    "month by committee": (
        f"/api/v1/feed/figures?from={START.isoformat().replace('+', '%2B')}"
        f"&to={END:%Y-%m-%dT%H:%M:%SZ}&depth=2",
        "feed",
    ),
    "last day": ("/api/v1/feed/figures", "feed"),
    "backwards": (f"/api/v1/feed/figures?from={END:%Y-%m-%dT%H:%M:%SZ}&to=2026-11-01Z", "feed"),
    "no offset": ("/api/v1/feed/figures?from=2026-11-01T00:00:00", "feed"),
    "plus unescaped": ("/api/v1/feed/figures?from=2026-11-01T08:00:00+08:00", "feed"),
    "depth 0": ("/api/v1/feed/figures?depth=0", "feed"),
}


def test_the_feed_sees_its_areas_only_with_the_month_figures_to_the_second(
    database_url: str,
) -> None:
    settings, tokens = ward_with_feeds(database_url)
    clock = FakeClock(int(NOW.timestamp() * 1000))

    async def scenario() -> tuple[dict[str, Answer], list[int]]:
        async with running(settings, clock) as (alerts, engine), serving(alerts, engine) as base:
            answers = {
                name: await asyncio.to_thread(get, base + path, tokens.get(who or ""))
                for name, (path, who) in CALLS.items()
            }
            ack = base + "/api/v1/alerts/{}/ack"
            standing = answers["state"][1]["alerts"][0]["alert_id"]
            acks = [await asyncio.to_thread(post, ack.format(standing), tokens["feed"])]
        return answers, acks

    answers, acks = asyncio.run(scenario())
    for name, (path, _) in CALLS.items():
        assert documented(path.partition("?")[0], answers[name]) == [], name
    assert acks == [401]  # a feed's token acknowledges nothing
    statuses = {name: status for name, (status, _) in answers.items()}
    assert statuses == {
        "state": 200,
        "no token": 401,
        "contact token": 403,
        "revoked": 401,
        "feed gone": 403,
        "month": 200,
        "month by committee": 200,
        "last day": 200,
        "backwards": 400,
        "no offset": 400,
        "plus unescaped": 400,
        "depth 0": 400,
    }
    # Nobody outside kangjian, anywhere: not hongmei's r-0201, not r-0301 who has no area.
    for name in ("state", "month", "month by committee", "last day"):
        text = json.dumps(answers[name][1], ensure_ascii=False)
        for outsider in ("r-0201", "r-0301", "hongmei", "王阿婆"):  # and ids, not names
            assert outsider not in text, (name, outsider)
    check_state(answers["state"][1])
    check_month(answers["month"][1])
    committees = answers["month by committee"][1]
    assert [g["area"] for g in committees["groups"]] == ["kangjian/kangle"]
    assert committees["overall"] == answers["month"][1]["overall"]
    day = answers["last day"][1]
    assert (day["from"], day["to"]) == (iso(NOW - timedelta(days=1)), iso(NOW))
    assert day["overall"]["by_kind"] == {"sos": 1}  # r-0102's, raised 3 min before NOW


def iso(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def check_state(state: dict[str, Any]) -> None:
    assert (state["feed"], state["areas"], state["at"]) == ("city", ["kangjian"], iso(NOW))
    devices = {r["id"]: [(d["id"], d["online"]) for d in r["devices"]] for r in state["residents"]}
    assert devices == {
        "r-0101": [("band-0101", True), ("mat-0101", True)],
        "r-0102": [("mat-0102", False)],  # silent for two hours
    }
    [standing] = state["alerts"]
    assert standing | {"alert_id": 0} == {
        "alert_id": 0,
        "resident_id": "r-0102",
        "area": "kangjian/kangle/5",
        "kind": "sos",
        "severity": "critical",
        "state": "open",
        "started_at": iso(NOW - timedelta(minutes=3)),
        "opened_at": iso(NOW - timedelta(minutes=3)),
        "acked_at": None,
        "acked_by": None,
        "tier": 0,
    }


def check_month(month: dict[str, Any]) -> None:
    """r-0101's month: 30 SOS answered in 10, 20, ... 290 s (day 30's never), paged 2 s after
    the press and 1 s after being raised; 30 immobile alerts answered in 600 s."""
    overall = month["overall"]
    assert [g["area"] for g in month["groups"]] == ["kangjian"]
    assert overall["by_kind"] == {"sos": 30, "immobile": 30}
    assert overall["fleet"] == {
        "beds": 2, "online": 1, "silent_1h": 1, "low_battery": 1, "strap_off": 1, "out_of_bed": 1,
    }  # fmt: skip
    # Now (NOW, after the month): r-0102's SOS raised 3 min before.
    assert overall["open_alerts"] == {"critical": {"under_5m": 1, "5_30m": 0, "30m_2h": 0,
                                                   "over_2h": 0}}  # fmt: skip
    assert overall["open_total"] == 1
    critical = overall["answers"]["critical"]
    assert critical == {
        "alerts": 30,
        "press_to_page": {"count": 30, "p50": 2.0, "p90": 2.0, "max": 2.0},
        "page_to_ack": {"count": 29, "p50": 149.0, "p90": 261.0, "max": 289.0},
        "answer": {"count": 29, "p50": 150.0, "p90": 262.0, "max": 290.0},
        "within_60s": 6,
        "within_180s": 18,
        "last_tier": 0,
        "unanswered": 1,
        "share_60s": 0.2,
        "share_180s": 0.6,
    }
    medium = overall["answers"]["medium"]
    assert (medium["answer"]["max"], medium["within_180s"], medium["share_60s"]) == (600.0, 0, 0)
    [zhang] = month["workers"]
    assert (zhang["contact_id"], zhang["acknowledged"], zhang["critical"]) == ("c-zhang", 59, 29)
    assert zhang["answer"]["max"] == 600.0
    [unanswered] = month["unanswered"]
    assert (unanswered["resident_id"], unanswered["kind"], unanswered["state"]) == (
        "r-0101", "sos", "resolved",
    )  # fmt: skip
    assert unanswered["opened_at"] == "2026-11-30T02:00:01Z"
    [out] = month["out_of_bed"]
    assert out == {"resident_id": "r-0101", "area": "kangjian/kangle/12", "since": iso(
        NOW - timedelta(minutes=5))}  # fmt: skip
