"""The console's words in Chinese and English, and the choice between them."""

from __future__ import annotations

from enum import StrEnum

from alerts.messages import WHAT
from alerts.model import AlertState
from detectors.findings import FindingKind, Severity


class Lang(StrEnum):
    ZH = "zh"
    EN = "en"

    @property
    def other(self) -> Lang:
        return Lang.EN if self is Lang.ZH else Lang.ZH


LANG_COOKIE = "bw_lang"

# key: (zh, en)
WORDS = {
    "title": ("床旁守护 · 护理台", "BedWatch · Care console"),
    "login": ("登录", "Log in"),
    "logout": ("退出", "Log out"),
    "contact_id": ("联系人编号", "Contact id"),
    "token": ("访问令牌", "Access token"),
    "token_hint": (
        "令牌由管理员用 bedwatch alerts token 发放",
        "Your administrator issues tokens with bedwatch alerts token",
    ),
    "login_failed": ("编号或令牌不正确", "Unknown contact id or token"),
    "alerts": ("待处理告警", "Active alerts"),
    "no_alerts": ("目前没有待处理的告警", "No active alerts"),
    "residents": ("老人状态", "Residents"),
    "ack": ("确认", "Acknowledge"),
    "resolve": ("已处理", "Resolve"),
    "acked_by": ("已由 {} 确认", "acknowledged by {}"),
    "since": ("开始于", "since"),
    "raised": ("报警于", "raised"),
    "ago": ("{} 分钟前", "{} min ago"),
    "times": ("共 {} 次", "{} times"),
    "in_bed": ("在床", "In bed"),
    "out_of_bed": ("离床", "Out of bed"),
    "bed_unknown": ("无近期数据", "No recent data"),
    "hr": ("心率", "Heart rate"),
    "rr": ("呼吸", "Breathing"),
    "occ": ("在床", "In bed"),
    "move": ("体动", "Movement"),
    "per_min": ("次/分", "/min"),
    "online": ("在线", "online"),
    "offline": ("离线", "offline"),
    "never_seen": ("从未上线", "never seen"),
    "last_seen": ("最后上线", "last seen"),
    "battery": ("电量", "battery"),
    "mattress": ("床垫", "Mattress"),
    "wristband": ("手环", "Wristband"),
    "night": ("夜间记录", "Night"),
    "prev_night": ("前一晚", "Previous night"),
    "next_night": ("后一晚", "Next night"),
    "back": ("返回", "Back"),
    "no_data": ("这一晚没有床垫数据", "No mattress data for this night"),
    "alert_marks": ("这一晚的告警", "Alerts this night"),
    "late_marks": ("补传数据中的发现（未推送）", "Found in data uploaded late (not paged)"),
    "live": ("实时", "live"),
    "reconnecting": ("连接中断，正在重连…", "Connection lost, reconnecting…"),
    "not_found": ("找不到或无权查看", "Not found, or not in your care team"),
    "done": ("已完成", "Done"),
    "already": ("已被他人处理", "Already done by someone else"),
    "closed": ("告警已关闭", "The alert is already closed"),
    # The operations view
    "nav_alerts": ("告警", "Alerts"),
    "nav_operations": ("运营总览", "Operations"),
    "operations": ("运营总览", "Operations"),
    "all_areas": ("全部辖区", "All my areas"),
    "no_area": ("未分区", "No area"),
    "area": ("区域", "Area"),
    "now": ("此刻", "Now"),
    "as_of": ("截至 {}", "as of {}"),
    "beds": ("登记床位", "Beds registered"),
    "online_beds": ("床垫在线", "Pads online"),
    "silent_1h": ("超 1 小时无信号", "Silent over 1 h"),
    "low_battery": ("电量低", "Low battery"),
    "strap_off": ("手环未佩戴", "Strap off"),
    "out_of_bed_now": ("夜间离床", "Out of bed at night"),
    "open_alerts": ("未确认告警", "Open alerts"),
    "in_hand": ("处理中", "Being handled"),
    "by_area_now": ("各区域现状", "Areas now"),
    "open_by_age": ("未确认告警 · 等级与时长", "Open alerts by severity and age"),
    "age_under_5m": ("< 5 分钟", "< 5 min"),
    "age_5_30m": ("5–30 分钟", "5–30 min"),
    "age_30m_2h": ("30 分钟–2 小时", "30 min–2 h"),
    "age_over_2h": ("> 2 小时", "> 2 h"),
    "total": ("合计", "Total"),
    "nobody_out": ("目前没有老人夜间离床", "Nobody is out of bed at night"),
    "out_since": ("离床于 {}", "up since {}"),
    "period": ("统计期", "Period"),
    "period_30d": ("近 30 天", "Last 30 days"),
    "period_week": ("本周", "This week"),
    "period_month": ("本月", "This month"),
    "period_last_month": ("上月", "Last month"),
    "from": ("从", "From"),
    "to": ("至", "to"),
    "show": ("查看", "Show"),
    "bad_period": (
        "日期无效：请选择开始和结束日期（最长 400 天）",
        "Invalid dates: choose a start and an end, 400 days at most",
    ),
    "by_raised": ("按告警发出时间统计", "alerts raised in the period"),
    "service_level": ("紧急告警应答", "Critical alerts answered"),
    "within_60s": ("60 秒内确认", "Acknowledged within 60 s"),
    "within_180s": ("180 秒内确认", "Acknowledged within 180 s"),
    "target": ("目标 {}", "target {}"),
    "no_critical": ("本期没有紧急告警", "No critical alerts in the period"),
    "alerts_by_kind": ("告警类型", "Alerts by kind"),
    "no_period_alerts": ("本期没有告警", "No alerts in the period"),
    "answer_times": ("应答时间", "Answer times"),
    "severity": ("等级", "Severity"),
    "all_severities": ("全部", "All"),
    "alerts_n": ("告警数", "Alerts"),
    "press_to_page": ("按键→推送", "Press to page"),
    "page_to_ack": ("推送→确认", "Page to ack"),
    "raised_to_ack": ("发出→确认", "Raised to ack"),
    "last_tier": ("升级到末级", "Reached last tier"),
    "unanswered_n": ("无人确认", "Unanswered"),
    "by_area_period": ("各区域应答", "Areas over the period"),
    "workers": ("护理人员", "Care workers"),
    "worker": ("人员", "Worker"),
    "handled": ("已确认", "Acknowledged"),
    "of_critical": ("其中紧急", "Critical"),
    "no_workers": ("本期没有人确认告警", "Nobody acknowledged an alert in the period"),
    "unanswered": ("无人确认的告警", "Alerts nobody acknowledged"),
    "none_unanswered": (
        "本期每条已推送的告警都有人确认",
        "Every alert paged in the period was acknowledged",
    ),
    "raised_at": ("发出时间", "Raised"),
    "resident": ("老人", "Resident"),
    "kind": ("类型", "Kind"),
    "tier": ("升级级数", "Tier"),
    "state": ("状态", "State"),
    "seconds": ("{} 秒", "{} s"),
    "minutes_seconds": ("{} 分 {} 秒", "{} min {} s"),
    "hours_minutes": ("{} 时 {} 分", "{} h {} min"),
}
SEVERITY = {
    Severity.CRITICAL: ("紧急", "Critical"),
    Severity.HIGH: ("重要", "High"),
    Severity.MEDIUM: ("提醒", "Medium"),
    Severity.LOW: ("关注", "Low"),
}
STATE = {
    AlertState.OPEN: ("未确认", "Open"),
    AlertState.ACKNOWLEDGED: ("已确认", "Acknowledged"),
    AlertState.RESOLVED: ("已处理", "Resolved"),
}


def pick(pair: tuple[str, str], lang: Lang) -> str:
    return pair[0] if lang is Lang.ZH else pair[1]


class Words:
    """Words in one language: `w("ack")`, `w.kind(kind)`, `w.severity(s)`, `w.state(s)`."""

    def __init__(self, lang: Lang) -> None:
        self.lang = lang

    def __call__(self, key: str, *args: object) -> str:
        return pick(WORDS[key], self.lang).format(*args)

    def kind(self, kind: FindingKind) -> str:
        return pick(WHAT.get(kind, (kind.value, kind.value)), self.lang)

    def severity(self, severity: Severity) -> str:
        return pick(SEVERITY[severity], self.lang)

    def state(self, state: AlertState) -> str:
        return pick(STATE[state], self.lang)


def choose(cookie: str | None, query: str | None, contact_language: str | None) -> Lang:
    """The toggle (query, then cookie) wins over the contact's own language; Chinese otherwise."""
    for candidate in (query, cookie, contact_language):
        if candidate in (Lang.ZH, Lang.EN):
            return Lang(candidate)
    return Lang.ZH
