"""Shared by the benchmarks: timing of whole commands, medians, and the report header."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "benchmarks"


def timed(command: list[str], env: dict[str, str]) -> float:
    """Wall time of `command`, which must succeed."""
    started = time.perf_counter()
    subprocess.run(command, env={**os.environ, **env}, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def median(values: list[float]) -> float:
    return statistics.median(values)


def header(title: str, command: str | None = None) -> str:
    cpu = platform.processor() or platform.machine()
    command = command or f"./noxw -s bench -- {title.split()[0].lower()}"
    return (
        f"# {title}\n\nMeasured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {os.cpu_count()} cores ({cpu}), "
        f"Python {platform.python_version()}. Regenerate with `{command}`.\n"
    )
