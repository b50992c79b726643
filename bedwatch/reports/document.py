"""A report as one HTML document, its pieces (tables, figures), and its printing to PDF."""

from __future__ import annotations

import base64
import functools
import html
import logging
from collections.abc import Collection, Sequence
from datetime import datetime
from importlib import resources
from string import Template

from bedwatch.reports.text import Words

e = html.escape


@functools.cache
def _resource(name: str) -> str:
    return (resources.files("bedwatch.reports") / "templates" / name).read_text("utf-8")


def page(w: Words, *, title: str, subtitle: str, made_at: datetime, body: str) -> str:
    """The whole document; `body` is HTML, the rest plain text."""
    return Template(_resource("report.html")).substitute(
        lang="zh-CN" if w.lang == "zh" else "en",
        css=_resource("report.css"),
        title=e(title),
        subtitle=e(subtitle),
        made=e(w("generated", made_at.strftime("%Y-%m-%d %H:%M %Z"))),
        body=body,
    )


def table(
    head: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    numeric: Collection[int] = (),
    row_class: Sequence[str] = (),
) -> str:
    """A table of plain text cells; columns in `numeric` are set right, as figures are."""

    def cells(tag: str, values: Sequence[str]) -> str:
        return "".join(
            f"<{tag}{' class=n' if i in numeric else ''}>{e(v)}</{tag}>"
            for i, v in enumerate(values)
        )

    body = "".join(
        f'<tr class="{row_class[k] if k < len(row_class) else ""}">{cells("td", row)}</tr>'
        for k, row in enumerate(rows)
    )
    return f"<table><thead><tr>{cells('th', head)}</tr></thead><tbody>{body}</tbody></table>"


def figure(svg: str, caption: str = "") -> str:
    """A plot as an image of its own: inline, the SVGs of several plots would share one
    document's ids (matplotlib numbers them per figure), and clash."""
    note = f"<figcaption>{e(caption)}</figcaption>" if caption else ""
    data = base64.b64encode(svg.encode()).decode("ascii")
    return f'<figure><img src="data:image/svg+xml;base64,{data}" alt="{e(caption)}">{note}</figure>'


def section(heading: str, content: str, *, new_page: bool = False) -> str:
    css = ' class="page-break"' if new_page else ""
    return f"<section{css}><h2>{e(heading)}</h2>{content}</section>"


def pdf(document: str) -> bytes:
    """Printed by WeasyPrint, imported here only: the service never loads it."""
    # One INFO line per step and page (some at its import): nothing a report's reader needs.
    logging.getLogger("weasyprint.progress").setLevel(logging.WARNING)
    import weasyprint

    out: bytes = weasyprint.HTML(string=document).write_pdf()
    return out
