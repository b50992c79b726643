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
