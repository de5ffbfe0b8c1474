"""The documentation a person follows: the README and the reference pages under docs/ (`documentation()`, not the
benchmark figures), and what every page, the figures' too, links to or names as a file of the checkout."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGES = (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")))
EVERY_PAGE = (ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md")))

_LINK = re.compile(r"\]\(([^)\s]+)\)")
# A file of the checkout as pages name it, in backticks or not: `tests/unit/test_layout.py`, docs/serving.md.
_FILE = re.compile(
    r"(?<![\w./-])((?:tests|pipeline|service|docs|notebooks|docker|deploy)/[\w./-]*\w\.(?:py|md|ipynb|yaml|sh))\b"
)
_CODE_BLOCK = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)


def documentation() -> str:
    return "\n".join(page.read_text() for page in PAGES)


def links(page: Path) -> list[str]:
    """The targets of the page's Markdown links, outside code blocks."""
    return _LINK.findall(_CODE_BLOCK.sub("", page.read_text()))


def named_files(page: Path) -> set[str]:
    """The files of the checkout the page names, by their path from the checkout's folder."""
    return set(_FILE.findall(page.read_text()))


def anchors(page: Path) -> set[str]:
    """The `#fragment` of each of the page's headings, as GitHub makes them."""
    headings = re.findall(r"^#+\s+(.*?)\s*$", _CODE_BLOCK.sub("", page.read_text()), re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}
