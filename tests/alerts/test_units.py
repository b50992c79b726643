"""Pure parts: the [alerts] table, routing arithmetic, signed links, messages, redaction."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Sequence
from datetime import time as clock_time
from unittest.mock import patch

import pytest

from alerts.config import DEFAULT_LADDERS, RetryPolicy, default_config, parse_alert_config
from alerts.delivery import Current
from alerts.directory import Directory
from alerts.fallback import GRACE_S, EmergencyFallback
from alerts.links import LinkError, Links
from alerts.messages import evidence_line
from alerts.model import AlertId, Attachment, Contact, ContactId, DirectPage, Resident
from alerts.notifier import Delivery, redact
from alerts.routing import backoff_s, next_action_ms, quiet_until_ms
from detectors.findings import Severity
from ingest.records import ResidentId
from tests.alerts.harness import DAY_MS, sos


def test_a_full_alerts_table_is_read() -> None:
    config = parse_alert_config(
        {
            "ladders": {
                "high": {
                    "steps": [
                        {"after_s": 0, "roles": ["care_staff"]},
                        {"after_s": 300, "roles": ["family_doctor", "family"]},
                    ],
                    "remind_every_s": 600,
                }
            },
            "quiet_hours": {"start": "21:30", "end": "06:45"},
            "inhibit": [{"source": ["device_silent"], "target": ["spo2"], "same_device": True}],
            "retry": {"attempts_per_channel": 5, "backoff_base_s": 1, "backoff_max_s": 30},
            "digest_at": "07:30",
        }
    )
    assert config.ladder(Severity.HIGH).steps[1].roles == ("family_doctor", "family")
    assert config.ladder(Severity.CRITICAL) == DEFAULT_LADDERS[Severity.CRITICAL]
    assert config.quiet_hours is not None
    assert config.quiet_hours.start == clock_time(21, 30)
    assert config.retry == RetryPolicy(5, 1.0, 30.0)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"ladder": {}}, "unknown key(s) ladder"),
        ({"ladders": {"urgent": {}}}, "not a severity"),
        ({"ladders": {"low": {"steps": [{"after_s": 5, "roles": ["family"]}]}}}, "first step"),
        ({"ladders": {"low": {"steps": [{"after_s": 0, "roles": ["nurse"]}]}}}, "roles"),
        ({"quiet_hours": {"start": "25:00"}}, "HH:MM"),
        ({"inhibit": [{"source": ["fall"], "target": ["sos"]}]}, "never inhibited"),
        ({"retry": {"attempts_per_channel": 0}}, "1..20"),
    ],
)
def test_a_bad_alerts_table_is_a_clear_error(raw: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_alert_config(raw)


def test_next_action_is_the_earlier_of_escalation_and_reminder() -> None:
    critical = DEFAULT_LADDERS[Severity.CRITICAL]
    assert next_action_ms(critical, 0, 0, 0) == 120_000
    assert next_action_ms(critical, 0, 1, 120_000) == 240_000  # reminder before the 300 s step
    assert next_action_ms(critical, 0, 2, 300_000) == 420_000
    assert next_action_ms(DEFAULT_LADDERS[Severity.LOW], 0, 0, 0) is None


def test_quiet_hours_hold_only_low_and_end_at_local_morning() -> None:
    config = default_config()
    night = DAY_MS + 13 * 3600_000  # 23:00 in Shanghai
    until = quiet_until_ms(config, Severity.LOW, "Asia/Shanghai", night)
    assert until == night + 8 * 3600_000
    assert quiet_until_ms(config, Severity.MEDIUM, "Asia/Shanghai", night) is None
    assert quiet_until_ms(config, Severity.LOW, "Asia/Shanghai", DAY_MS) is None


def test_backoff_grows_is_capped_and_jittered() -> None:
    policy = RetryPolicy(10, 2.0, 20.0)
    rng = random.Random(1)
    delays = [backoff_s(policy, n, rng) for n in (1, 2, 3, 8)]
    assert 1.0 <= delays[0] <= 2.0
    assert 2.0 <= delays[1] <= 4.0
    assert 4.0 <= delays[2] <= 8.0
    assert 10.0 <= delays[3] <= 20.0
    assert len({backoff_s(policy, 3, rng) for _ in range(5)}) == 5


def test_links_verify_refuse_tampering_and_expire() -> None:
    links = Links(b"0123456789abcdef0123", public_url="https://bw.example.org/", ttl_s=600)
    token = links.token(AlertId(42), ContactId("c.zhang"), DAY_MS)
    claim = links.verify(token, DAY_MS + 599_000)
    assert (claim.alert_id, claim.contact_id) == (42, "c.zhang")
    with pytest.raises(LinkError, match="expired"):
        links.verify(token, DAY_MS + 600_000)
    other = Links(b"another-secret-of-16+", public_url="https://x", ttl_s=600)
    with pytest.raises(LinkError, match="signature"):
        other.verify(token, DAY_MS)
    with pytest.raises(LinkError, match="malformed"):
        links.verify("nonsense", DAY_MS)
    assert links.url(AlertId(1), ContactId("c"), DAY_MS).startswith("https://bw.example.org/a/")


def test_evidence_is_one_short_line_in_the_contacts_language() -> None:
    evidence = {"hr": 134.6, "window_s": 120, "from_ms": 1, "metrics": {"a": 1}}
    assert evidence_line(evidence, zh=True) == "心率 135 次/分，window_s=120"
    assert evidence_line(evidence, zh=False) == "HR 135/min, window_s=120"
    assert evidence_line({}, zh=False) == "—"


def test_redaction_hides_passwords_tokens_and_path_keys() -> None:
    assert redact("mailto://user:secret@mail.example.org?to=a@b.org") == (
        "mailto://user:***@mail.example.org?to=a@b.org"
    )
    assert redact("wecombot://abcdefghijklmnopqrstuvwxyz0123") == "wecombot://***"
    assert redact("json://h/hook?token=abc") == "json://h/hook?token=***"
    assert redact("dingtalk://host/0123456789abcdef0123456789") == "dingtalk://host/***"


def test_the_registry_refuses_a_site_file_with_a_bad_alerts_table() -> None:
    from bedwatch.site import SiteError, parse_site

    with pytest.raises(SiteError, match=r"\[alerts\]: alerts.quiet_hours.end"):
        parse_site('[alerts.quiet_hours]\nend = "7am"\n')
    assert parse_site("[alerts.quiet_hours]\nenabled = false\n").extra["alerts"] == {
        "quiet_hours": {"enabled": False}
    }


def test_health_and_metrics_ask_the_database_at_most_every_two_seconds() -> None:
    import asyncio
    import contextlib
    from collections.abc import AsyncIterator
    from typing import Any, cast

    from alerts.api import DatabaseProbe

    asked: list[str] = []

    class Conn:
        async def execute(self, statement: str, *args: Any) -> Any:
            asked.append(statement.split(maxsplit=1)[0])

            class Cursor:
                async def fetchall(self) -> list[tuple[Any, ...]]:
                    return []

            return Cursor()

    class Pool:
        @contextlib.asynccontextmanager
        async def connection(self) -> AsyncIterator[Conn]:
            yield Conn()

    async def scrape_a_lot() -> None:
        probe = DatabaseProbe(cast(Any, Pool()), every_s=2.0)
        results = await asyncio.gather(*(probe.up() for _ in range(50)))
        assert all(results)
        await asyncio.gather(*(probe.refresh_counts() for _ in range(50)))

    asyncio.run(scrape_a_lot())
    # SELECT 1, open alerts, the fleet, then per area its beds and its alerts standing.
    assert asked == ["SELECT", "SELECT", "WITH", "WITH", "WITH"]


class _Notifier:
    """Records what it is asked to send (the fallback's decisions are the subject here)."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    async def send(
        self,
        url: str,
        title: str,
        body: str,
        *,
        critical: bool = False,
        attachments: Sequence[Attachment] = (),
    ) -> Delivery:
        self.sent.append(url)
        return Delivery(True, 1.0)


def test_the_direct_page_waits_while_the_engine_handles_the_press_and_not_forever() -> None:
    staff = Contact(ContactId("c-zhang"), "Zhang", "care_staff", "zh", ("json://x/ok",))
    resident = Resident(ResidentId("r-0101"), "王阿婆", "3-1-201", "Asia/Shanghai", (staff.id,))
    current = Current(directory=Directory({resident.id: resident}, {staff.id: staff}))
    press = sos(DAY_MS)

    async def scenario() -> list[int]:
        notifier = _Notifier()
        fallback = EmergencyFallback(notifier, lambda: current, "http://c/", lambda: DAY_MS)
        fallback.watch(press)
        fallback.claim(press)  # the engine has it, within the grace
        claimed = await fallback.reached(press, 1.0)
        later = time.monotonic() + GRACE_S + 1
        seen = []
        with patch("alerts.fallback.time.monotonic", return_value=later):
            await fallback.check()  # past the grace, but in the engine's hands: no page
            await fallback.idle()
            seen.append(len(notifier.sent))
            fallback.release(press)  # the engine failed: paged directly after all
            await fallback.check()
            await fallback.idle()
            seen.append(len(notifier.sent))
        # Reached, so the engine records this contact as paged rather than paging again.
        assert claimed == {}
        assert await fallback.reached(press, 1.0) == {staff.id: DirectPage(0, DAY_MS, 1.0)}
        return seen

    assert asyncio.run(scenario()) == [0, 1]
