"""Test layers by folder: tests/unit (no servers), tests/integration (real servers started by fixtures),
tests/e2e (served and built service, the container image). The folder sets the marker."""

from __future__ import annotations

from pathlib import Path

import pytest

LAYERS = {"integration": pytest.mark.integration, "e2e": pytest.mark.e2e}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        layer = Path(str(item.fspath)).parent.name
        if layer in LAYERS:
            item.add_marker(LAYERS[layer])
