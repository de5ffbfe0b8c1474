"""docs/settings.md, made from the settings classes themselves (names, defaults, descriptions), so the reference
cannot drift from the code: `python tests/support/settings_doc.py` writes it; tests/unit/test_readme.py checks it."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "settings.md"


def sections() -> list[tuple[str, type]]:
    from pipeline.container import ContainerSettings
    from pipeline.settings import PipelineSettings
    from service.settings import (
        EvidenceSettings,
        JobSettings,
        ServiceSettings,
        Settings,
        SourceSettings,
        UiSettings,
        WorkerSettings,
    )
    from service.stack.__main__ import StackSettings

    return [
        ("Every process: the data folder, the tracking store, the model", Settings),
        ("Which version answers (the API and the job worker)", SourceSettings),
        ("The API (`bentoml serve service.service:PredictionService`)", ServiceSettings),
        ("The job layer (the API and the job worker)", JobSettings),
        ("The job worker (`python -m service.jobs.worker`)", WorkerSettings),
        (
            "Live evidence: records of answers, labels (the API and the job worker; `python -m pipeline monitor`)",
            EvidenceSettings,
        ),
        ("The pipeline (`python -m pipeline ...`)", PipelineSettings),
        ("The MLflow UI (`python -m pipeline ui`, and the stack)", UiSettings),
        ("The image build (`python -m pipeline container`)", ContainerSettings),
        ("The local stack (`./noxw -s stack`)", StackSettings),
    ]


def own_fields(cls: type) -> dict[str, FieldInfo]:
    """The fields `cls` declares itself, not those of the classes it combines."""
    inherited = {name for base in cls.__mro__[1:] for name in getattr(base, "model_fields", {})}
    return {name: info for name, info in cls.model_fields.items() if name not in inherited}  # type: ignore[attr-defined]


def shown_default(info: FieldInfo) -> str:
    if info.default_factory is not None:
        return "see meaning"
    value: Any = info.default
    if value is PydanticUndefined or value is None or value in ((), ""):
        return "none"
    if isinstance(value, Path):
        return f"`{value.relative_to(ROOT)}` in the checkout" if value.is_relative_to(ROOT) else f"`{value}`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    return f"`{value}`"


def render() -> str:
    lines = [
        "# Settings",
        "",
        "Every setting is read from the environment or a `.env` file (the checkout's, then the current folder's),",
        "by its name in capitals without a prefix: `MAX_BATCH_SIZE=64`. Each process builds its settings once, when",
        "it starts. This page is made from the settings classes (`python tests/support/settings_doc.py`); a test",
        "keeps it equal to them.",
    ]
    for title, cls in sections():
        lines += ["", f"## {title}", "", "| variable | default | meaning |", "| --- | --- | --- |"]
        for name, info in own_fields(cls).items():
            meaning = (info.description or "").replace("|", "\\|")
            lines.append(f"| `{name.upper()}` | {shown_default(info)} | {meaning} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    DOC.write_text(render())
    print(f"wrote {DOC.relative_to(ROOT)}")
