"""The console's HTML: page templates, and the alert and resident fragments the stream resends."""

from __future__ import annotations

import functools
import html
from collections.abc import Mapping
from datetime import date, datetime, timedelta
from importlib import resources
from string import Template
from zoneinfo import ZoneInfo

from alerts.console import plots
from alerts.console.queries import AlertRow, Night, ResidentStatus
from alerts.console.text import Words
from alerts.messages import evidence_line
from alerts.model import AlertState

e = html.escape


@functools.cache
def template(name: str) -> Template:
    return Template((resources.files("alerts.console") / "templates" / name).read_text("utf-8"))


def page(w: Words, *, body: str, nav: str = "", page_class: str = "") -> str:
    return template("page.html").substitute(
        lang="zh-CN" if w.lang == "zh" else "en",
        title=e(w("title")),
        brand=e(w("title")),
        nav=nav,
        body=body,
        page=page_class,
    )


def nav(
    w: Words, *, name: str | None, csrf: str | None, here: str, supervisor: bool = False
) -> str:
    """The language toggle, and for a logged-in contact their name and a log-out button; for a
    supervisor the way between the alerts and the operations view."""
    other = w.lang.other
    label = "English" if other == "en" else "中文"
    parts = []
    if supervisor:
        for path, key in (("/console/", "nav_alerts"), ("/console/operations", "nav_operations")):
            current = ' aria-current="page"' if path == here else ""
            parts.append(f'<a class="page" href="{path}"{current}>{e(w(key))}</a>')
    parts.append(f'<a class="lang" href="{e(here)}?lang={other}" hreflang="{other}">{label}</a>')
    if name is not None and csrf is not None:
        parts.append(f'<span class="who">{e(name)}</span>')
        parts.append(
            '<form method="post" action="/console/logout" class="logout">'
            f'<input type="hidden" name="csrf" value="{e(csrf)}">'
            f'<button type="submit">{e(w("logout"))}</button></form>'
        )
    return "".join(parts)


def login(w: Words, *, failed: bool, contact_id: str) -> str:
    error = f'<p class="error" role="alert">{e(w("login_failed"))}</p>' if failed else ""
    return template("login.html").substitute(
        heading=e(w("login")),
        error=error,
        contact_label=e(w("contact_id")),
        token_label=e(w("token")),
        contact_id=e(contact_id),
        lang=w.lang.value,
        submit=e(w("login")),
        hint=e(w("token_hint")),
    )


def console(w: Words, *, alerts: str, residents: str) -> str:
    return template("console.html").substitute(
        alerts_heading=e(w("alerts")),
        residents_heading=e(w("residents")),
        live=e(w("live")),
        reconnecting=e(w("reconnecting")),
        alerts=alerts,
        residents=residents,
    )


def alert_list(
    w: Words, rows: list[AlertRow], csrf: str, now: datetime, names: Mapping[str, str]
) -> str:
    """The alerts as cards; `names` turns contact ids (who acknowledged) into names."""
    if not rows:
        return f'<p class="empty">{e(w("no_alerts"))}</p>'
    return "".join(_alert(w, row, csrf, now, names) for row in rows)


def _alert(w: Words, a: AlertRow, csrf: str, now: datetime, names: Mapping[str, str]) -> str:
    since = a.started_at.astimezone(ZoneInfo(a.timezone)).strftime("%m-%d %H:%M")
    # Two facts, each named: when it began (device time, as the evidence has it) and when the
    # alert was raised here; a night uploaded late begins long before it is raised.
    facts = [f"{e(w('since'))} {since}", f"{e(w('raised'))} {ago(w, a.opened_at, now)}"]
    if a.count > 1:
        facts.append(e(w("times", a.count)))
    if a.state is AlertState.ACKNOWLEDGED and a.acked_by:
        facts.append(e(w("acked_by", names.get(a.acked_by, a.acked_by))))
    buttons = "" if a.state is not AlertState.OPEN else _button(w, a, "ack", csrf)
    buttons += _button(w, a, "resolve", csrf)
    return (
        f'<article class="alert sev-{a.severity} state-{a.state}" data-alert="{a.id}">'
        f'<div class="badges"><span class="sev">{e(w.severity(a.severity))}</span>'
        f'<span class="state">{e(w.state(a.state))}</span></div>'
        f'<h3><span class="kind">{e(w.kind(a.kind))}</span> · '
        f'<a href="/console/residents/{e(a.resident_id)}/night">{e(a.resident_name)}</a>'
        f" <small>{e(a.room)}</small></h3>"
        f'<p class="facts">{" · ".join(facts)}</p>'
        f'<p class="evidence">{e(evidence_line(a.evidence, zh=w.lang == "zh"))}</p>'
        f'<div class="actions">{buttons}</div></article>'
    )


def _button(w: Words, a: AlertRow, action: str, csrf: str) -> str:
    return (
        f'<form method="post" action="/console/alerts/{a.id}/{action}" class="act">'
        f'<input type="hidden" name="csrf" value="{e(csrf)}">'
        f'<button type="submit" class="{action}">{e(w(action))}</button></form>'
    )


def ago(w: Words, at: datetime, now: datetime) -> str:
    """ "12 min ago", which the page keeps current by the service's clock (data-now), not by a
    phone's own, which may be off."""
    minutes = max(0, int((now - at).total_seconds() // 60))
    stamp, clock = int(at.timestamp() * 1000), int(now.timestamp() * 1000)
    return (
        f'<time data-ts="{stamp}" data-now="{clock}" datetime="{at.isoformat()}">'
        f"{e(w('ago', minutes))}</time>"
    )


def resident_list(w: Words, people: list[ResidentStatus], now: datetime) -> str:
    return "".join(_resident(w, r, now) for r in people)


def _resident(w: Words, r: ResidentStatus, now: datetime) -> str:
    bed = {True: ("in", "in_bed"), False: ("out", "out_of_bed"), None: ("unknown", "bed_unknown")}
    css, key = bed[r.in_bed]
    vitals = (
        f'<span class="hr">{e(w("hr"))} <b>{_n(r.hr)}</b></span> '
        f'<span class="rr">{e(w("rr"))} <b>{_n(r.rr)}</b></span> {e(w("per_min"))}'
    )
    devices = "".join(
        f'<li class="{"online" if d.online else "offline"}">{e(w(d.kind))} <code>{e(d.id)}</code> '
        f"{e(w('online' if d.online else 'offline'))}"
        + (f" · {ago(w, d.last_seen_at, now)}" if d.last_seen_at else f" · {e(w('never_seen'))}")
        + (f" · {e(w('battery'))} {d.battery}%" if d.battery is not None else "")
        + "</li>"
        for d in r.devices
    )
    return (
        f'<article class="resident" data-resident="{e(r.id)}">'
        f'<h3><a href="/console/residents/{e(r.id)}/night">{e(r.name)}</a>'
        f" <small>{e(r.room)}</small></h3>"
        f'<p><span class="bed bed-{css}">{e(w(key))}</span> {vitals}</p>'
        f'<ul class="devices">{devices}</ul></article>'
    )


def _n(value: float | None) -> str:
    return "—" if value is None else f"{value:.0f}"


def night(w: Words, r: ResidentStatus, n: Night, today: date) -> str:
    marks = [at for at, _, _ in n.alerts + n.late]
    charts = {
        "hr": plots.Chart("hr", w("hr"), n.hr, 40, 100, plots.Style.LINE),
        "rr": plots.Chart("rr", w("rr"), n.rr, 0, 30, plots.Style.LINE),
        "occ": plots.Chart("occ", w("occ"), n.occ, 0, 1, plots.Style.AREA),
        "move": plots.Chart("move", w("move"), n.move, 0, 100, plots.Style.BARS),
    }
    svgs = {k: plots.svg(c, n.start, r.timezone, marks) for k, c in charts.items()}
    has_data = any(v is not None for v in n.occ)
    following = n.night + timedelta(days=1)
    next_link = (
        f'<a href="?night={following.isoformat()}" rel="next">{e(w("next_night"))} ›</a>'
        if following <= today
        else "<span></span>"
    )
    return template("night.html").substitute(
        back=e(w("back")),
        name=e(r.name),
        room=e(r.room),
        prev_url=f"?night={(n.night - timedelta(days=1)).isoformat()}",
        prev=e(w("prev_night")),
        night_label=e(f"{w('night')} {n.night.isoformat()}"),
        next_link=next_link,
        empty="" if has_data else f'<p class="empty">{e(w("no_data"))}</p>',
        hr_label=e(f"{w('hr')} ({w('per_min')})"),
        rr_label=e(f"{w('rr')} ({w('per_min')})"),
        occ_label=e(w("occ")),
        move_label=e(w("move")),
        marks=_marks(w, n, r.timezone),
        **svgs,
    )


def _marks(w: Words, n: Night, timezone: str) -> str:
    out = ""
    for title, marks in (("alert_marks", n.alerts), ("late_marks", n.late)):
        if not marks:
            continue
        items = "".join(
            f'<li class="sev-{sev}">{at.astimezone(ZoneInfo(timezone)).strftime("%H:%M")}'
            f" {e(w.kind(kind))} · {e(w.severity(sev))}</li>"
            for at, kind, sev in marks
        )
        out += f'<h2>{e(w(title))}</h2><ul class="marks">{items}</ul>'
    return out
