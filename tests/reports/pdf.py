"""Reading a report's PDF back: its text layer, and its pages as images in artifacts/."""

from __future__ import annotations

import re
from pathlib import Path

import pypdfium2 as pdfium

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "reports"


def pages(pdf: bytes) -> list[str]:
    """Each page's text, runs of white space made one space (table cells, lines)."""
    doc = pdfium.PdfDocument(pdf)
    try:
        return [re.sub(r"\s+", " ", page.get_textpage().get_text_range()) for page in doc]
    finally:
        doc.close()


def screenshots(pdf: bytes, name: str) -> list[Path]:
    """Every page as artifacts/reports/<name>-p<N>.png."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for old in ARTIFACTS.glob(f"{name}-p*.png"):
        old.unlink()  # an earlier, longer report's last pages
    doc = pdfium.PdfDocument(pdf)
    out = []
    try:
        for n, page in enumerate(doc, start=1):
            path = ARTIFACTS / f"{name}-p{n}.png"
            page.render(scale=1.5).to_pil().save(path)
            assert path.stat().st_size > 20_000  # a page with text and plots, not a blank one
            out.append(path)
    finally:
        doc.close()
    return out
