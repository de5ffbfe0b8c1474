"""`python -m service.models.check MODEL_DIR ROWS [MODEL_DIR ROWS ...]`: load each logged model exactly as the API
and the job worker load it, in a process of its own, and check that it answers its held-out rows as the notebook's
model did.

The pipeline runs it before it registers a version, in a fresh process with nothing of the notebook (no kernel
globals, no classes registered by its cells, not its folder on the path): a version that loads here loads where
it is served. For each model it prints one JSON line on stdout, a Verdict: `problem` null when the model passes,
else why (also on stderr, for a person), and the runtime that is to answer it, with the reason (its lean form
proven equal to it, or why TensorFlow keeps it: service.models.lean_check); it exits 0 when every model passes, 1
otherwise. Several models share one process (and
its TensorFlow import): the model zoo's tests check all their models in one.

`python -m service.models.check -` is the same check started ahead: it imports what the service imports
(TensorFlow: seconds) at once, then reads `MODEL_DIR ROWS ...` as a JSON list from one line of stdin. The pipeline
starts it beside the kernel, so the import is paid while the kernel imports its own, not after training. An
empty stdin (the pipeline stopped first) ends it quietly.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from service.models.contract import ContractError, ModelContract, Outputs
from service.models.lean import TENSORFLOW
from service.models.lean_check import lean_runtime
from service.models.scoring import HeldOut

OUTPUT_RTOL, OUTPUT_ATOL = 1e-3, 1e-4  # the served graph against Keras' own predict_on_batch, in float32


def answers_differ(contract: ModelContract, served: Outputs, notebook: Outputs) -> str | None:
    """How the served answers differ from the notebook's for the same rows; None when they match."""
    for output in contract.outputs:
        ours, theirs = served[output.name], notebook[output.name]
        where = f"output {output.name!r}" if not contract.single_output else "the answers"
        if ours.shape != theirs.shape:
            return (
                f"{where}: shape {list(ours.shape)} where the notebook's model answered {list(theirs.shape)}"
            )
        if not np.allclose(ours, theirs, rtol=OUTPUT_RTOL, atol=OUTPUT_ATOL):
            worst = float(np.max(np.abs(ours - theirs)))
            return f"{where}: values differ from the notebook's model's by up to {worst:.3g}"
    return None


@dataclass(frozen=True)
class Verdict:
    """What the check found: why the model would not serve (None when it would), and which runtime answers it."""

    problem: str | None
    runtime: str = TENSORFLOW
    reason: str = ""


def check(model_dir: Path, rows: Path) -> Verdict:
    """Whether the model in `model_dir` serves its held-out rows as trained, and in which runtime."""
    from service.models.loader import load_model_dir

    try:
        model = load_model_dir(model_dir, "candidate", "logged")
        held = HeldOut.load(rows).named(model.contract)
        n = len(next(iter(held.x.values())))
        served = model.contract.check_outputs(model.predict(held.x), n)
    except ContractError as exc:
        return Verdict(str(exc))
    except Exception as exc:  # what the model's own code or Keras raise while loading: the service would too
        return Verdict(f"{type(exc).__name__}: {str(exc)[:600]}")
    problem = answers_differ(model.contract, served, held.outputs)
    if problem:
        return Verdict(problem)
    runtime, reason = lean_runtime(model_dir, model, held.x)
    return Verdict(None, runtime, reason)


def main(argv: list[str]) -> int:
    if argv == ["-"]:
        from service.models import loader  # noqa: F401 - what loading needs, imported before it is needed
        from service.models.quiet import quiet

        quiet()
        import mlflow.keras  # noqa: F401
        import tensorflow  # noqa: F401

        line = sys.stdin.readline()
        if not line.strip():
            os._exit(0)
        argv = json.loads(line)
    if not argv or len(argv) % 2:
        print(
            "usage: python -m service.models.check MODEL_DIR ROWS [MODEL_DIR ROWS ...] (or -, then them on stdin)",
            file=sys.stderr,
        )
        return 2
    failed = False
    answers, sys.stdout = (
        sys.stdout,
        sys.stderr,
    )  # what loading prints goes to stderr: stdout holds only the answers
    for model_dir, rows in zip(argv[::2], argv[1::2], strict=True):
        verdict = check(Path(model_dir), Path(rows))
        print(json.dumps(asdict(verdict)), file=answers, flush=True)
        if verdict.problem:
            print(verdict.problem, file=sys.stderr, flush=True)
            failed = True
    # Skip the interpreter's teardown of TensorFlow (seconds): the answers are out.
    os._exit(1 if failed else 0)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
