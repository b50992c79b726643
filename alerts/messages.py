"""Messages a person can act on in five seconds: who, what, where, since when, why, and a link."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from alerts.model import Alert, Contact, Resident
from detectors.findings import FindingKind, Severity
from ingest.records import ResidentId

if TYPE_CHECKING:
    from alerts.digest import Digest, Night, ResidentDay, Seen, SleepChange

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


# The daily digest (alerts/digest.py): a few short lines per resident, readable on a phone.
DIGEST_LEVEL = {
    Severity.CRITICAL: ("紧急", "critical"),
    Severity.HIGH: ("重要", "high"),
    Severity.MEDIUM: ("提醒", "medium"),
}
# The metrics of a `sleep_change` finding (detectors.nights.METRIC_NAMES), with labels.
CHANGE = {
    "time_in_bed_s": ("在床时间", "time in bed"),
    "exits": ("离床", "exits"),
    "restlessness_pct": ("体动", "restless"),
    "hr_mean": ("平均心率", "mean HR"),
    "rr_mean": ("平均呼吸", "mean RR"),
}


def render_digest(digest: Digest, links: Mapping[ResidentId, str] | None = None) -> Message:
    """One contact's daily digest, in the contact's language; `links`: each resident's sleep
    report in the console."""
    zh = digest.contact.language == "zh"
    n, items = len(digest.residents), digest.items
    day = digest.day.strftime("%m-%d")
    since = _local(digest.since_ms, digest.timezone)
    if zh:
        title = f"【每日摘要】{day}：{n} 位老人，{items} 项"
        head = f"自 {since} 起"
    else:
        title = f"[DIGEST] {day}: {_plural(n, 'resident')}, {_plural(items, 'item')}"
        head = f"Since {since}"
    links = links or {}
    blocks = [head] + [
        _resident_block(d, zh=zh, link=links.get(d.resident.id)) for d in digest.residents
    ]
    return Message(title, "\n\n".join(blocks))


def _resident_block(d: ResidentDay, *, zh: bool, link: str | None = None) -> str:
    r = d.resident
    lines = [f"{r.name} · {r.room}" if r.room else r.name]
    lines += _night_lines(d.night, r.timezone, zh=zh)
    if d.low:
        seen = ("；" if zh else "; ").join(_seen(s, zh=zh) for s in d.low)
        lines.append(("关注：" if zh else "Low: ") + seen)
    if d.late:
        # About the past, so each says when: the latest of its kind, in the resident's time.
        seen = ("；" if zh else "; ").join(_seen(s, zh=zh, timezone=r.timezone) for s in d.late)
        lines.append(("补传数据中发现：" if zh else "In data uploaded late: ") + seen)
    lines += [_change_line(c, zh=zh) for c in d.changes]
    lines.append(_alert_line(d.alerts, zh=zh))
    if link:
        lines.append(("睡眠报告：" if zh else "Sleep report: ") + link)
    return "\n".join(lines)


def _night_lines(night: Night | None, timezone: str, *, zh: bool) -> list[str]:
    if night is None:
        return ["暂无夜间汇总" if zh else "No night summary yet"]
    day = night.night.strftime("%m-%d")
    onset = "—" if zh else "-"
    if night.sleep_onset_ms is not None:
        onset = _local(night.sleep_onset_ms, timezone)[-5:]
    bed = _duration(night.time_in_bed_s, zh=zh)
    restless = _num(night.restlessness_pct)
    hr = _spread(night.hr_mean, night.hr_min, night.hr_max, zh=zh)
    rr = _spread(night.rr_mean, night.rr_min, night.rr_max, zh=zh)
    pauses = _num(night.pauses_per_h)
    longest = _duration(night.longest_absence_s, zh=zh)
    if zh:
        exits = f"离床 {night.exits} 次" + (f"（最长 {longest}）" if night.exits else "")
        return [
            f"{day} 夜：在床 {bed}，入睡 {onset}，{exits}，体动 {restless}%",
            f"心率 {hr}，呼吸 {rr}，暂停 {pauses} 次/时",
        ]
    exits = _plural(night.exits, "exit") + (f" (longest {longest})" if night.exits else "")
    return [
        f"Night {day}: in bed {bed}, asleep {onset}, {exits}, restless {restless}%",
        f"HR {hr}, RR {rr}, {pauses} pauses/h",
    ]


def _seen(seen: Seen, *, zh: bool, timezone: str | None = None) -> str:
    i = 0 if zh else 1
    what = WHAT.get(seen.kind, (seen.kind.value, seen.kind.value))[i]
    times = f" ×{seen.count}" if seen.count > 1 else ""
    if timezone is not None and seen.latest_ms is not None:
        times += f" {_local(seen.latest_ms, timezone)}"
    known = [EVIDENCE[k][i].format(_num(seen.evidence[k])) for k in EVIDENCE if k in seen.evidence]
    if not known:
        return what + times
    values = ("，" if zh else ", ").join(known)
    return f"{what}{times}（{values}）" if zh else f"{what}{times} ({values})"


def _change_line(change: SleepChange, *, zh: bool) -> str:
    i = 0 if zh else 1
    try:
        night = date.fromisoformat(change.night).strftime("%m-%d")
    except ValueError:
        night = change.night or "?"
    parts = []
    for name, labels in CHANGE.items():
        facts = change.metrics.get(name)
        if facts is None:
            continue
        value = _metric(name, facts["value"], zh=zh)
        usual = _metric(name, facts["median"], zh=zh)
        z = f"z {facts['z']:+.1f}"
        parts.append(
            f"{labels[i]} {value}（平时 {usual}，{z}）"
            if zh
            else f"{labels[i]} {value} (usual {usual}, {z})"
        )
    body = ("；" if zh else "; ").join(parts) or "—"
    return f"睡眠变化（{night} 夜）：{body}" if zh else f"Sleep change (night {night}): {body}"


def _alert_line(alerts: Mapping[Severity, int], *, zh: bool) -> str:
    i = 0 if zh else 1
    counts = [(DIGEST_LEVEL[s][i], alerts[s]) for s in DIGEST_LEVEL if alerts.get(s)]
    if zh:
        return "告警：" + ("，".join(f"{word} {n}" for word, n in counts) or "无")
    return "Alerts: " + (", ".join(f"{n} {word}" for word, n in counts) or "none")


def _metric(name: str, value: float, *, zh: bool) -> str:
    if name == "time_in_bed_s":
        return _duration(value, zh=zh)
    if name == "exits":
        return f"{value:.0f} 次" if zh else f"{value:.0f}"
    if name == "restlessness_pct":
        return f"{_num(value)}%"
    return f"{_num(value)} 次/分" if zh else f"{_num(value)}/min"


def _spread(mean: float | None, low: float | None, high: float | None, *, zh: bool) -> str:
    """Mean with its unit, then the night's range: "62/min (55-78)"."""
    if mean is None:
        return "—" if zh else "-"
    text = f"{_num(mean)} 次/分" if zh else f"{_num(mean)}/min"
    if low is None or high is None:
        return text
    return f"{text}（{_num(low)}-{_num(high)}）" if zh else f"{text} ({_num(low)}-{_num(high)})"


def _duration(seconds: float, *, zh: bool) -> str:
    hours, minutes = divmod(round(seconds / 60), 60)
    if zh:
        return f"{hours}小时{minutes:02d}分" if hours else f"{minutes} 分钟"
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes} min"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"
