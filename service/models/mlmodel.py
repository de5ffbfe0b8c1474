"""An MLflow model's description (its `MLmodel` file) read as the YAML and JSON it is, without importing MLflow.

`import mlflow` costs a process about 150 MB (pandas, pyarrow, scipy, OpenTelemetry where installed): more than a
lean version's whole runtime. Serving a version needs only its flavors, its signature and its metadata, so the
loader reads them here; MLflow is imported only where MLflow runs the model (TensorFlow's path, pyfunc) or talks to a
registry (a follower). tests/unit/test_contract.py reads each signature form MLflow writes both ways.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


@dataclass(frozen=True)
class Spec:
    """One entry of a signature: a tensor (`dtype`, `shape` with -1 for the batch) or a column (`type`)."""

    name: str | None
    type: str  # "tensor", or a column's type: "double", "float", "long", "integer", "string", ...
    dtype: str = ""
    shape: tuple[int, ...] = ()


@dataclass(frozen=True)
class MLmodel:
    flavors: dict[str, Any]
    metadata: dict[str, Any]
    inputs: tuple[Spec, ...] | None  # None: no signature
    outputs: tuple[Spec, ...] | None

    @staticmethod
    def read(model_dir: Path) -> MLmodel:
        described = yaml.safe_load((Path(model_dir) / "MLmodel").read_text()) or {}
        signature = described.get("signature") or {}
        return MLmodel(
            flavors=described.get("flavors") or {},
            metadata=described.get("metadata") or {},
            inputs=_specs(signature.get("inputs")),
            outputs=_specs(signature.get("outputs")),
        )


def tensors_only(specs: tuple[Spec, ...]) -> bool:
    return all(spec.type == "tensor" for spec in specs)


def _specs(text: str | None) -> tuple[Spec, ...] | None:
    if not text:
        return None
    found = []
    for entry in json.loads(text):
        tensor = entry.get("tensor-spec") or {}
        found.append(
            Spec(
                entry.get("name"),
                str(entry.get("type")),
                str(tensor.get("dtype", "")),
                tuple(int(d) for d in tensor.get("shape", ())),
            )
        )
    return tuple(found)
