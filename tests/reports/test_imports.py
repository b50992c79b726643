"""The service never loads the reports' heavy libraries: only `bedwatch report` does."""

from __future__ import annotations

import subprocess
import sys

CHECK = """
import sys
from bedwatch.cli import build_parser
import bedwatch.service
build_parser(["run"])
build_parser(["report"])
print(" ".join(m for m in ("matplotlib", "weasyprint") if m in sys.modules))
"""


def test_the_service_and_the_cli_start_without_plotting_or_printing() -> None:
    done = subprocess.run(
        [sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == ""
