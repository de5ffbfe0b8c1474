"""What `python -m pipeline package` packaged last, recorded in the project's data folder (DATA_DIR), so that a
bare `bentoml serve service.service:PredictionService` (neither MODEL_TAG nor MODEL_NAME set) serves it.

A file of the project's, not the BentoML store's newest model: the store (~/bentoml) is shared by every project
on the machine and its `latest` is kept per model name, so its newest model may be another project's or another
notebook's, and packaging a version already stored (after a rollback) makes nothing new. The record names exactly
the model and tag the last `package` made the one to serve, beside the MLflow store it came from. A Bento (and
its image) sets MODEL_TAG and never reads it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from pydantic import BaseModel

RECORD = "packaged.json"  # in DATA_DIR


class LastPackaged(BaseModel):
    model_name: str  # the registered MLflow model
    model_tag: str  # its BentoML model, name:version


def record(data_dir: Path, packaged: LastPackaged) -> None:
    """Written whole or not at all: a service starting meanwhile reads the previous record or this one."""
    data_dir.mkdir(parents=True, exist_ok=True)
    partial = data_dir / f".{RECORD}.{os.getpid()}"
    partial.write_text(packaged.model_dump_json())
    partial.replace(data_dir / RECORD)


def last_packaged(data_dir: Path) -> LastPackaged | None:
    """None when nothing was packaged with this data folder (or the record is not one)."""
    try:
        return LastPackaged.model_validate(json.loads((data_dir / RECORD).read_text()))
    except (OSError, ValueError):  # a pydantic ValidationError is a ValueError
        return None
