"""The documentation a person follows: the README and the reference pages under docs/ (not the benchmark figures)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGES = (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")))


def documentation() -> str:
    return "\n".join(page.read_text() for page in PAGES)
