"""Messages a person can act on in five seconds: who, what, where, since when, why, and a link."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from alerts.model import Alert, Contact, Resident
from detectors.findings import FindingKind, Severity

WHAT = {
    FindingKind.SOS: ("SOS 呼救", "SOS call"),
    FindingKind.FALL: ("跌倒", "Fall detected"),
    FindingKind.VITALS_ABSENT: ("在床但测不到心跳或呼吸", "In bed, no heartbeat or breathing"),
    FindingKind.BED_EXIT_NO_RETURN: ("夜间离床未归", "Left bed at night, not back"),
    FindingKind.BREATHING_PAUSE: ("呼吸暂停", "Breathing pause"),
    FindingKind.APNEA_INDEX: ("夜间呼吸暂停偏多", "Many breathing pauses last night"),
    FindingKind.HEART_RATE: ("心率异常", "Heart rate out of range"),
    FindingKind.BREATHING_RATE: ("呼吸频率异常", "Breathing rate out of range"),
    FindingKind.SPO2: ("血氧偏低", "Low blood oxygen"),
    FindingKind.IMMOBILE: ("长时间未翻身", "No movement for hours"),
    FindingKind.SLEEP_CHANGE: ("睡眠明显变化", "Sleep changed markedly"),
    FindingKind.DEVICE_SILENT: ("设备无信号", "Device silent"),
    FindingKind.WRISTBAND_REMOVED: ("手环已摘下", "Wristband taken off"),
    FindingKind.LOW_BATTERY: ("手环电量低", "Wristband battery low"),
}
LEVEL = {
    Severity.CRITICAL: ("【紧急】", "[CRITICAL] "),
    Severity.HIGH: ("【重要】", "[HIGH] "),
    Severity.MEDIUM: ("【提醒】", "[MEDIUM] "),
    Severity.LOW: ("【关注】", "[LOW] "),
}
# Evidence keys worth a person's attention, with their labels and units (zh, en).
EVIDENCE = {
    "presses": ("按键 {} 次", "{} presses"),
    "hr": ("心率 {} 次/分", "HR {}/min"),
    "rr": ("呼吸 {} 次/分", "RR {}/min"),
    "spo2": ("血氧 {}%", "SpO2 {}%"),
    "pause_s": ("暂停 {} 秒", "pause {} s"),
    "pauses_per_h": ("每小时 {} 次暂停", "{} pauses/h"),
    "silent_s": ("已 {} 秒无数据", "silent {} s"),
    "absent_s": ("离床 {} 秒", "out of bed {} s"),
    "conf": ("置信度 {}", "confidence {}"),
    "bat": ("电量 {}%", "battery {}%"),
    "status": ("状态 {}", "status {}"),
}


@dataclass(frozen=True, slots=True)
class Message:
    title: str
    body: str


def render(
    alert: Alert, resident: Resident, contact: Contact, link: str, now_ms: int, *, reminder: bool
) -> Message:
    """The alert for one contact, in the contact's language."""
    zh = contact.language == "zh"
    i = 0 if zh else 1
    what = WHAT.get(alert.kind, (alert.kind.value, alert.kind.value))[i]
    level = LEVEL[alert.severity][i]
    since = _local(alert.started_ms, resident.timezone)
    minutes = max(0, (now_ms - alert.started_ms) // 60_000)
    again = ("（提醒）" if zh else " (reminder)") if reminder else ""
    title = f"{level}{resident.name} {what}{again}"
    evidence = evidence_line(alert.evidence, zh=zh)
    if alert.count > 1:
        evidence = (f"共 {alert.count} 次；" if zh else f"{alert.count} times; ") + evidence
    if zh:
        lines = [
            f"谁：{resident.name}",
            f"什么：{what}",
            f"哪里：{resident.room or '—'}",
            f"何时：自 {since}（{minutes} 分钟前）",
            f"依据：{evidence}",
            f"确认：{link}",
        ]
    else:
        lines = [
            f"Who: {resident.name}",
            f"What: {what}",
            f"Where: {resident.room or '-'}",
            f"Since: {since} ({minutes} min ago)",
            f"Evidence: {evidence}",
            f"Acknowledge: {link}",
        ]
    return Message(title, "\n".join(lines))


def evidence_line(evidence: dict[str, object], *, zh: bool) -> str:
    """The evidence in one short line: known values with units first, then the rest."""
    i = 0 if zh else 1
    parts = [EVIDENCE[k][i].format(_num(evidence[k])) for k in EVIDENCE if k in evidence]
    for key, value in evidence.items():
        if key in EVIDENCE or key.endswith("_ms") or isinstance(value, dict | list):
            continue
        parts.append(f"{key}={_num(value)}")
    line = ("，" if zh else ", ").join(parts) or "—"
    return line if len(line) <= 120 else line[:119] + "…"


def _num(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.0f}" if abs(value) >= 10 else f"{value:.1f}"
    return str(value)


def _local(ms: int, timezone: str) -> str:
    return (
        datetime.fromtimestamp(ms / 1000, UTC)
        .astimezone(ZoneInfo(timezone))
        .strftime("%m-%d %H:%M")
    )
