"""`python -m pipeline build`: package the champion, then `bentoml build` the service into a Bento.

The Bento serves the version it was built with: the model's name and tag become envs of the Bento (and so of its
image, the API and the worker alike), added to bentofile.yaml's own for the build, and it installs the packages
that version's runtime needs (no TensorFlow for a version with a lean form)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from pipeline.errors import PipelineError
from pipeline.package import Packaged, package
from pipeline.settings import PROJECT_ROOT, PipelineSettings
from service.models.quiet import QUIET_ENV

TAG_MARKER = "__tag__:"


def build(
    settings: PipelineSettings, bentofile: Path = PROJECT_ROOT / "bentofile.yaml"
) -> tuple[str, Packaged]:
    """Returns the Bento's tag and the model it holds (the packaged champion, made the store's latest)."""
    packaged = package(settings)
    served = {"MODEL_NAME": settings.model_name, "MODEL_TAG": packaged.tag}
    with tempfile.TemporaryDirectory() as tmp:
        serving = Path(tmp) / bentofile.name
        definition = with_requirements(yaml.safe_load(bentofile.read_text()), packaged.runtime)
        serving.write_text(yaml.safe_dump(with_envs(definition, served)))
        command = [
            sys.executable, "-m", "bentoml", "build", "-f", str(serving), "--output", "tag", str(PROJECT_ROOT),
        ]  # fmt: skip
        done = subprocess.run(
            command, cwd=PROJECT_ROOT, env=tool_env() | served, capture_output=True, text=True
        )
    tags = [line.split(TAG_MARKER, 1)[1] for line in done.stdout.splitlines() if TAG_MARKER in line]
    if done.returncode != 0 or not tags:
        raise PipelineError(
            f"bentoml build failed ({done.returncode}):\n{done.stderr.strip() or done.stdout}"
        )
    return tags[-1].strip(), packaged


def with_requirements(bentofile: dict[str, Any], runtime: str) -> dict[str, Any]:
    """The Bento's definition installing the image group the version's runtime needs (pipeline/container.py):
    without TensorFlow for a version with a lean form."""
    from pipeline.container import IMAGES

    _, requirements = IMAGES[runtime]
    python = {**bentofile.get("python", {}), "requirements_txt": str(requirements.relative_to(PROJECT_ROOT))}
    return {**bentofile, "python": python}


def with_envs(bentofile: dict[str, Any], envs: dict[str, str]) -> dict[str, Any]:
    """The Bento's definition with `envs` added to (or replacing those of the same name in) its `envs`."""
    kept = [env for env in bentofile.get("envs", []) if env["name"] not in envs]
    return {**bentofile, "envs": [*kept, *({"name": k, "value": v} for k, v in envs.items())]}


def tool_env() -> dict[str, str]:
    """This environment, quiet, with uv on PATH: `bentoml build` needs it (it bootstraps uv with pip, which the
    project's environment lacks, when uv is not on PATH) and so does the image build. `./noxw` installs uv into
    .tools/bin; a shell with only the venv activated has it nowhere else."""
    env = {**QUIET_ENV, **os.environ}
    env["PATH"] = os.pathsep.join(
        [str(Path(sys.executable).parent), env.get("PATH", ""), str(PROJECT_ROOT / ".tools" / "bin")]
    )
    return env
