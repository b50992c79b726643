"""The demo ward: 20 residents in two neighbourhoods, three contacts, a supervisor, and a
scripted night played at 60x."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from detectors.findings import FindingKind
from simulators.fleet import FleetOptions
from simulators.runner import RunConfig
from simulators.scenarios import ScenarioSpec, scenario
from simulators.site import Devices, residents_of

SPEED = 60.0  # one wall second plays one minute of the night
BEDS = 20
TIMEZONE = "Asia/Shanghai"
NIGHT_STARTS = time(22, 0)
NIGHT_LENGTH_S = 8 * 3600
# Devices ping every 5 s, so the broker fires a dead device's Last Will ~6 s (~6 min of the
# night at 60x) after its power is cut.
DEVICE_KEEPALIVE_S = 5


@dataclass(frozen=True, slots=True)
class DemoContact:
    id: str
    name: str
    role: str
    language: str
    role_text: str


NURSE = DemoContact("c-demo-nurse", "张护理员", "care_staff", "zh", "care staff")
CONTACTS = (
    NURSE,
    DemoContact("d-demo-doctor", "Dr. Emily Carter", "family_doctor", "en", "family doctor"),
    DemoContact("f-demo-family", "李娜", "family", "zh", "family"),
)
# The street office's operations centre: sees every resident of the street and its figures,
# is paged for none of them (no care team names a supervisor).
STREET = "xinhong"
SUPERVISOR = DemoContact("s-demo-street", "新虹街道运营中心", "supervisor", "zh", "supervisor")


@dataclass(frozen=True, slots=True)
class Scripted:
    """One event of the night: what the simulator plays and what the service should make of it."""

    resident_id: str
    kind: str  # simulators.scenarios.ScenarioKind
    at: str  # local time in the night
    alert: FindingKind  # the alert it should raise
    text: str
    params: tuple[tuple[str, object], ...] = ()

    def order(self) -> tuple[bool, str]:
        """Sort key in the night's order (times before noon are the next morning)."""
        return (self.at < "12:00", self.at)

    def spec(self) -> ScenarioSpec:
        return scenario(self.kind, at=self.at, residents=[self.resident_id], **dict(self.params))


# Early in the night, so that a minute of demo shows every one of them; times are local.
SCRIPT = (
    Scripted(
        "r-0004",
        "bed_exit",
        "22:05",
        FindingKind.BED_EXIT_NO_RETURN,
        "gets up and does not come back (the alert waits 20 min)",
        (("return_after_s", "never"),),
    ),
    Scripted(
        "r-0009",
        "device_offline",
        "22:04",
        FindingKind.DEVICE_SILENT,
        "mattress pad loses power for 15 min",
        (("device", "mattress"), ("duration_s", 900)),
    ),
    Scripted(
        "r-0012",
        "breathing_pause",
        "22:06",
        FindingKind.BREATHING_PAUSE,
        "stops breathing for 45 s",
        (("duration_s", 45),),
    ),
    Scripted("r-0003", "sos", "22:08", FindingKind.SOS, "presses the SOS key on the wristband"),
    Scripted(
        "r-0016",
        "fall",
        "22:12",
        FindingKind.FALL,
        "falls on the way to the toilet",
        (("return_after_s", 900),),
    ),
    Scripted(
        "r-0007",
        "breathing_pause",
        "23:40",
        FindingKind.BREATHING_PAUSE,
        "stops breathing for 40 s",
        (("duration_s", 40),),
    ),
    Scripted("r-0018", "sos", "02:10", FindingKind.SOS, "presses the SOS key on the wristband"),
)

# What the demo's care worker does with an alert: acknowledge after so many wall seconds, and
# resolve so many seconds after that (None: leave it to the system, e.g. when it clears).
NURSE_PLAN: dict[FindingKind, tuple[float, float | None]] = {
    FindingKind.SOS: (5.0, 10.0),
    FindingKind.FALL: (15.0, 10.0),  # busy with the SOS: the fall escalates to the doctor first
    FindingKind.BED_EXIT_NO_RETURN: (8.0, 12.0),
}

# Ladders in demo time: a night minute passes every wall second, so the waits shrink too.
ALERTS_TABLE = """\
[alerts.ladders.critical]
steps = [
  { after_s = 0, roles = ["care_staff", "family"] },
  { after_s = 10, roles = ["family_doctor"] },
  { after_s = 40, roles = ["emergency"] },
]
remind_every_s = 30

[alerts.ladders.high]
steps = [{ after_s = 0, roles = ["care_staff"] }, { after_s = 20, roles = ["family_doctor"] }]
remind_every_s = 60

[alerts.ladders.medium]
steps = [{ after_s = 0, roles = ["care_staff"] }]
remind_every_s = 0
"""

_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
_TITLES = ("阿婆", "阿公", "奶奶", "爷爷")


def residents() -> tuple[Devices, ...]:
    return residents_of(BEDS)


def resident_name(index: int) -> str:
    return _SURNAMES[(index - 1) % len(_SURNAMES)] + _TITLES[(index * 3) % len(_TITLES)]


def room(index: int) -> str:
    return f"新虹 {_building(index)}-{(index - 1) % 10 + 1:02d}"


def area(index: int) -> str:
    """Street, neighbourhood committee, building: building 1 is in Beiyuan, 2 in Nanyuan."""
    building = _building(index)
    return f"{STREET}/{'beiyuan' if building == 1 else 'nanyuan'}/{building}"


def _building(index: int) -> int:
    return 1 + (index - 1) // 10


def site_toml(channels: dict[str, list[str]]) -> str:
    """The ward as a site file; `channels` gives each contact's apprise URLs, in order."""
    lines: list[str] = []
    for c in CONTACTS:
        lines += _contact(c, f"channels = {json.dumps(channels[c.id])}")
    lines += _contact(SUPERVISOR, f"areas = {json.dumps([STREET])}")
    team = json.dumps([c.id for c in CONTACTS])
    for d in residents():
        lines += [
            "[[residents]]",
            f'id = "{d.resident_id}"',
            f"name = {json.dumps(resident_name(d.index), ensure_ascii=False)}",
            f"room = {json.dumps(room(d.index), ensure_ascii=False)}",
            f'timezone = "{TIMEZONE}"',
            f'area = "{area(d.index)}"',
            f'devices = [{{ id = "{d.mattress_id}", kind = "mattress" }}, '
            f'{{ id = "{d.wristband_id}", kind = "wristband" }}]',
            f"care_team = {team}",
            "",
        ]
    return "\n".join(lines) + "\n" + ALERTS_TABLE


def _contact(c: DemoContact, last: str) -> list[str]:
    return [
        "[[contacts]]",
        f"id = {json.dumps(c.id)}",
        f"name = {json.dumps(c.name, ensure_ascii=False)}",
        f'role = "{c.role}"',
        f'language = "{c.language}"',
        last,
        "",
    ]


def night_start_ms(now: datetime) -> int:
    """The start of the latest demo night that is over by `now`: device clocks never run
    ahead of the wall clock (the service would correct them), and the night is a night."""
    local = now.astimezone(ZoneInfo(TIMEZONE))
    start = datetime.combine(local.date(), NIGHT_STARTS, tzinfo=local.tzinfo)
    while start + timedelta(seconds=NIGHT_LENGTH_S) > local:
        start -= timedelta(days=1)
    return int(start.timestamp() * 1000)


def run_config(start_ms: int, device_url: tuple[str, int], prefix: str) -> RunConfig:
    host, port = device_url
    return RunConfig(
        start_ms=start_ms,
        duration_s=NIGHT_LENGTH_S,
        beds=BEDS,
        seed=7,
        scenarios=tuple(s.spec() for s in SCRIPT),
        transport=FleetOptions(
            host=host, port=port, prefix=prefix, speed=SPEED, keepalive_s=DEVICE_KEEPALIVE_S
        ),
    )


def local_clock(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, ZoneInfo(TIMEZONE)).strftime("%H:%M")
