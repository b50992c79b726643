"""The reports' words in Chinese and English, and how their numbers and times are written."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from alerts.console import text
from alerts.console.text import Lang

__all__ = ["Lang", "Words", "clock", "hours", "number", "seconds"]

# key: (zh, en); a key not here is the console's (severities, kinds, "hr", "rr", ...).
WORDS = {
    "sleep_title": ("睡眠报告", "Sleep report"),
    "operations_title": ("运营报告", "Operations report"),
    "generated": ("生成于 {}", "made {}"),
    "room": ("房间", "Room"),
    "area": ("区域", "Area"),
    "night_of": ("{} 晚", "night of {}"),
    "period": ("{} 至 {}", "{} to {}"),
    "this_night": ("本晚", "This night"),
    "usual": ("近 {} 晚中位数", "Median of {} nights"),
    "time_in_bed": ("在床时长", "Time in bed"),
    "onset": ("入睡", "Sleep onset"),
    "exits": ("离床次数", "Bed exits"),
    "longest_absence": ("最长离床", "Longest absence"),
    "restlessness": ("体动占比", "Restlessness"),
    "hr_mean": ("平均心率", "Mean heart rate"),
    "rr_mean": ("平均呼吸", "Mean breathing rate"),
    "pauses_per_h": ("每小时呼吸暂停", "Breathing pauses per hour"),
    "night_vitals": ("夜间心率与呼吸（每分钟）", "Heart and breathing rate through the night"),
    "out_of_bed_shade": ("灰色：离床；红线：告警", "Grey: out of bed; red lines: alerts"),
    "trends": ("近 {} 晚趋势", "The last {} nights"),
    "nights_table": ("每晚数据", "Night by night"),
    "night": ("夜晚", "Night"),
    "findings_night": ("本晚的发现", "Findings this night"),
    "findings_nights": ("近 {} 晚的发现", "Findings in the last {} nights"),
    "no_findings": ("没有发现", "None"),
    "no_summary": ("这一晚没有睡眠汇总", "No sleep summary for this night"),
    "when": ("时间", "When"),
    "what": ("什么", "What"),
    "level": ("级别", "Level"),
    "evidence": ("依据", "Evidence"),
    "count": ("次数", "Count"),
    "late": ("（补传）", " (uploaded late)"),
    "hours_axis": ("小时", "hours"),
    "bpm": ("次/分", "/min"),
    "per_h": ("次/小时", "/h"),
    # the operations report
    "scope": ("范围：{}", "Scope: {}"),
    "every_area": ("全部区域", "every area"),
    "by_depth": ("按区域前 {} 级", "areas to level {}"),
    "answers": ("答复时间", "Answer times"),
    "critical_by_area": ("紧急告警：各区域", "Critical alerts by area"),
    "by_severity": ("各级别告警（全部范围）", "Alerts by severity, whole scope"),
    "alerts_n": ("告警数", "Alerts"),
    "within_60": ("60 秒内答复", "Answered ≤ 60 s"),
    "within_180": ("180 秒内答复", "Answered ≤ 180 s"),
    "press_to_page": ("按键→推送 中位/最长", "Press → page p50 / max"),
    "page_to_ack": ("推送→确认 中位/90%/最长", "Page → ack p50 / p90 / max"),
    "answer": ("告警→确认 中位/90%/最长", "Answer p50 / p90 / max"),
    "last_tier": ("升至最后一级", "Last tier"),
    "unanswered": ("无人答复", "Unanswered"),
    "all_areas": ("全部", "All"),
    "no_area": ("未分区", "No area"),
    "all_severities": ("合计", "Total"),
    "answer_axis": ("从告警到确认（秒，对数坐标）", "raised to acknowledged (s, log scale)"),
    "share_axis": ("已答复 %", "answered, % of raised"),
    "targets": (
        "目标：60 秒内 {:g} %，180 秒内 {:g} %",
        "Targets: {:g} % within 60 s, {:g} % within 180 s",
    ),
    "distribution": ("答复时间分布", "How fast alerts were answered"),
    "alerts_axis": ("告警数", "alerts"),
    "alerts_by_day": ("每日告警（按类型）", "Alerts per day by kind"),
    "alerts_by_kind": ("各区域告警类型", "Alerts by kind and area"),
    "kind": ("类型", "Kind"),
    "total": ("合计", "Total"),
    "fleet": ("设备", "Fleet"),
    "availability": ("每晚上报数据的床垫", "Pads reporting each night"),
    "reporting_axis": ("上报床垫 %", "pads reporting, %"),
    "coverage_all": ("全部：数据覆盖率", "All: data coverage"),
    "fleet_table": ("各区域设备", "Fleet by area"),
    "beds": ("床位", "Beds"),
    "reporting": ("上报（床·晚）", "Reporting (bed-nights)"),
    "coverage": ("覆盖率", "Coverage"),
    "online_now": ("当前在线", "Online now"),
    "silent_1h": ("1 小时无信号", "Silent 1 h"),
    "low_battery": ("电量低", "Low battery"),
    "strap_off": ("手环未戴", "Band off"),
    "out_of_bed_now": ("夜间离床", "Out of bed"),
    "open_now": ("未确认告警", "Open alerts"),
    "now_note": (
        "“当前在线”及其后各列：{} 时的状态",
        "“Online now” and the columns after it: as at {}",
    ),
    "workers": ("护理人员", "Care workers"),
    "worker": ("人员", "Who"),
    "acknowledged": ("确认数", "Acknowledged"),
    "critical_n": ("其中紧急", "Critical"),
    "unanswered_list": ("无人答复的告警", "Alerts nobody answered"),
    "resident": ("老人", "Resident"),
    "tier": ("通知到（0 为首级）", "Tier told (0: first)"),
    "none": ("无", "None"),
}


class Words(text.Words):
    """The console's words with the reports' own: `w("time_in_bed")`, `w.kind(k)`, ..."""

    def __call__(self, key: str, *args: object) -> str:
        pair = WORDS.get(key)
        if pair is None:
            return super().__call__(key, *args)
        return text.pick(pair, self.lang).format(*args)


DASH = "—"


def number(value: float | None, digits: int = 1) -> str:
    return DASH if value is None else f"{value:.{digits}f}"


def hours(seconds_: float | None) -> str:
    """A duration as h:mm (time in bed, absences)."""
    if seconds_ is None:
        return DASH
    minutes = round(seconds_ / 60)
    return f"{minutes // 60}:{minutes % 60:02d}"


def seconds(value: float | None) -> str:
    """Answer times: whole seconds when whole, else one decimal (they are checked to the second)."""
    if value is None:
        return DASH
    tenths = round(value, 1)  # a percentile between whole seconds may carry float noise
    return f"{tenths:.0f} s" if tenths == round(tenths) else f"{tenths:.1f} s"


def clock(at: datetime | None, timezone: str) -> str:
    return DASH if at is None else at.astimezone(ZoneInfo(timezone)).strftime("%H:%M")
