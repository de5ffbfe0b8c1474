"""Files of BentoML's that the service uses by their place, not by an API (each place pinned by
tests/unit/test_bentoml_internals.py)."""

from __future__ import annotations

import os
from pathlib import Path


def metrics_dir() -> Path:
    """Where the service's `/metrics` reads other processes' samples (PROMETHEUS_MULTIPROC_DIR). BentoML empties
    it when the service starts, so a job worker started with PROMETHEUS_MULTIPROC_DIR set to it must start after
    the service."""
    return Path(os.environ.get("BENTOML_HOME", Path.home() / "bentoml")) / "prometheus_multiproc_dir"


def swagger_dir() -> Path:
    """Swagger UI's files as BentoML's package ships them, served by the service's own OpenAPI page."""
    from bentoml._internal import server

    return Path(server.__file__).parent / "static_content"
