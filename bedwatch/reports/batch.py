"""Sleep reports drawn in a process of their own, for the service's digests and console.

Drawing and printing a report is seconds of CPU-bound Python; in the service's own process it
would hold the interpreter lock while an SOS waits to be paged. So the service runs
`python -m bedwatch.reports.batch` with the work as JSON on stdin and reads the PDFs back from
a folder of its own.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from collections.abc import Sequence
from datetime import date
from pathlib import Path

from ingest.records import ResidentId

DRAW_TIMEOUT_S = 300.0


async def draw_sleep_reports(
    database_url: str, items: Sequence[tuple[ResidentId, date, str]]
) -> list[bytes]:
    """Each (resident, night, language) as a PDF, in order; RuntimeError if the drawing fails."""
    if not items:
        return []
    with tempfile.TemporaryDirectory(prefix="bedwatch-reports-") as folder:
        work = {
            "database_url": database_url,
            "folder": folder,
            "items": [[rid, night.isoformat(), lang] for rid, night, lang in items],
        }
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bedwatch.reports.batch",
            stdin=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            async with asyncio.timeout(DRAW_TIMEOUT_S):
                _, err = await process.communicate(json.dumps(work).encode())
        except TimeoutError:
            process.kill()
            await process.wait()
            raise RuntimeError(f"reports not drawn within {DRAW_TIMEOUT_S:g} s") from None
        if process.returncode != 0:
            raise RuntimeError(f"reports not drawn: {err.decode(errors='replace')[-500:]}")
        return [(Path(folder) / f"{i}.pdf").read_bytes() for i in range(len(items))]


def main() -> int:
    from bedwatch.reports.sleep import sleep_report_pdf

    work = json.loads(sys.stdin.read())
    folder = Path(work["folder"])
    for i, (rid, night, lang) in enumerate(work["items"]):
        pdf = sleep_report_pdf(work["database_url"], rid, date.fromisoformat(night), lang)
        (folder / f"{i}.pdf").write_bytes(pdf)
    return 0


if __name__ == "__main__":
    sys.exit(main())
