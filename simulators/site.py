"""Fleet naming (r-0001, mat-0001, band-0001) and the site file that registers a simulated fleet."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# Care team of every simulated resident; json:// to a local hook so a demo can watch alerts.
SIM_CONTACTS = (
    ("c-sim-staff", "值班护理员", "care_staff", "zh"),
    ("d-sim-doctor", "家庭医生", "family_doctor", "zh"),
    ("f-sim-family", "家属", "family", "zh"),
    ("e-sim-centre", "社区应急中心", "emergency", "zh"),
)
_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
_TITLES = ("阿婆", "阿公", "奶奶", "爷爷")


@dataclass(frozen=True, slots=True)
class Devices:
    """One resident and their two devices."""

    index: int  # 1-based position in the fleet
    resident_id: str
    mattress_id: str
    wristband_id: str


def id_width(beds: int) -> int:
    return max(4, len(str(beds)))


def residents_of(beds: int, first: int = 1) -> tuple[Devices, ...]:
    """Residents first..first+beds-1, ids zero-padded to at least 4 digits."""
    width = id_width(first + beds - 1)
    return tuple(
        Devices(i, f"r-{i:0{width}d}", f"mat-{i:0{width}d}", f"band-{i:0{width}d}")
        for i in range(first, first + beds)
    )


def site_toml(residents: tuple[Devices, ...], hook_url: str = "json://127.0.0.1:8080/hook") -> str:
    """The site file (docs/design.md shape) for `bedwatch registry load`."""
    lines: list[str] = []
    for cid, name, role, lang in SIM_CONTACTS:
        lines += [
            "[[contacts]]",
            f'id = "{cid}"',
            f'name = "{name}"',
            f'role = "{role}"',
            f'language = "{lang}"',
            f'channels = ["{hook_url}"]',
            "",
        ]
    team = ", ".join(f'"{c[0]}"' for c in SIM_CONTACTS)
    for d in residents:
        name = _SURNAMES[d.index % len(_SURNAMES)] + _TITLES[(d.index // 7) % len(_TITLES)]
        lines += [
            "[[residents]]",
            f'id = "{d.resident_id}"',
            f'name = "{name}"',
            f'room = "模拟 {1 + d.index // 100}-{d.index % 100:02d}"',
            'timezone = "Asia/Shanghai"',
            f'devices = [{{ id = "{d.mattress_id}", kind = "mattress" }}, '
            f'{{ id = "{d.wristband_id}", kind = "wristband" }}]',
            f"care_team = [{team}]",
            "",
        ]
    return "\n".join(lines)


def write_site(path: Path, residents: tuple[Devices, ...], hook_url: str | None = None) -> None:
    text = site_toml(residents) if hook_url is None else site_toml(residents, hook_url)
    path.write_text(text, encoding="utf-8")
