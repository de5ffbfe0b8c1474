"""Lineage of a run: the code, notebook and parameters it came from, as MLflow tags."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

from service.models.lineage import NOTEBOOK_SHA_TAG, TAG_PREFIX
from service.settings import PROJECT_ROOT

# Set by the notebook on its run (see pipeline.notebook); read by the pipeline and the gate.
MODEL_URI_TAG = f"{TAG_PREFIX}model_uri"
DATA_SHA_TAG = f"{TAG_PREFIX}data_sha256"
INVOCATION_TAG = f"{TAG_PREFIX}invocation"
INVOCATION_ENV = "NBSHIP_INVOCATION"  # the kernel's environment: the run is tagged with it, and found by it
TASK_TAG = f"{TAG_PREFIX}task"


def notebook_label(notebook: Path) -> str:
    """How a notebook is named in tags and descriptions: its path in the checkout, or its full path elsewhere."""
    return str(notebook.relative_to(PROJECT_ROOT) if notebook.is_relative_to(PROJECT_ROOT) else notebook)


def notebook_sha256(path: Path) -> str:
    """Hash of the notebook's cell types and sources only: outputs and metadata do not change it."""
    import nbformat

    notebook = nbformat.read(path, as_version=4)
    digest = hashlib.sha256()
    for cell in notebook.cells:
        digest.update(cell.cell_type.encode())
        digest.update(b"\0")
        digest.update(cell.source.encode())
        digest.update(b"\0")
    return digest.hexdigest()


def git_commit(directory: Path) -> tuple[str, bool] | None:
    """(commit, dirty) of the checkout holding `directory`, or None outside git."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=directory, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return None
    return commit, dirty


def run_tags(notebook: Path, parameters: dict[str, Any]) -> dict[str, str]:
    tags = {
        f"{TAG_PREFIX}notebook": notebook_label(notebook),
        NOTEBOOK_SHA_TAG: notebook_sha256(notebook),
        f"{TAG_PREFIX}parameters": json.dumps(parameters, sort_keys=True),
    }
    found = git_commit(notebook.parent)
    if found:
        commit, dirty = found
        tags["mlflow.source.git.commit"] = commit
        tags[f"{TAG_PREFIX}git_dirty"] = str(dirty).lower()
    return tags
