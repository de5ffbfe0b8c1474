"""`./noxw -s bench -- pipeline`: `python -m pipeline train` against a plain training script, same run.

Both train the notebook's default model. The pipeline runs on a store of its own: the first run (which creates
the store) is reported apart, then repetitions alternate plain and pipeline; the figure is the ratio of medians.
"""

from __future__ import annotations

import argparse
import sys
import tempfile

from common import DOCS, ROOT, header, median, timed

from pipeline.params import declared

TARGET = 1.5


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench pipeline")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)

    defaults = {name: p.default for name, p in declared(ROOT / "notebooks" / "train.ipynb").items()}
    plain_args = [
        str(defaults[name])
        for name in ("epochs", "learning_rate", "batch_size", "hidden_units", "dropout", "seed")
    ]
    with tempfile.TemporaryDirectory(prefix="nbship-bench-") as data_dir:
        env = {
            "DATA_DIR": data_dir,
            "MODEL_NAME": "digits-bench",
            "MLFLOW_TRACKING_URI": "",
        }  # embedded store
        pipeline_cmd = [sys.executable, "-m", "pipeline", "train", "--no-progress"]
        plain_cmd = [sys.executable, str(ROOT / "tests/benchmarks/plain_train.py"), *plain_args]
        first = timed(pipeline_cmd, env)
        print(f"pipeline, new store: {first:.1f} s", flush=True)
        plain, pipeline = [], []
        for index in range(args.repeat):
            plain.append(timed(plain_cmd, env))
            pipeline.append(timed(pipeline_cmd, env))
            print(
                f"repetition {index + 1}: plain {plain[-1]:.1f} s, pipeline {pipeline[-1]:.1f} s", flush=True
            )

    ratio = median(pipeline) / median(plain)
    verdict = "meets" if ratio <= TARGET else "misses"
    params = ", ".join(f"{name}={defaults[name]}" for name in ("epochs", "batch_size", "hidden_units"))
    report = "\n".join(
        [
            header("Pipeline benchmark"),
            f"Model: the notebook's defaults ({params}); {args.repeat} repetitions, medians.\n",
            "| command | median wall time (s) | runs (s) |",
            "| --- | --- | --- |",
            f"| plain script (no papermill, no MLflow) | {median(plain):.1f} | "
            f"{', '.join(f'{v:.1f}' for v in plain)} |",
            f"| `python -m pipeline train` | {median(pipeline):.1f} | "
            f"{', '.join(f'{v:.1f}' for v in pipeline)} |",
            f"| `python -m pipeline train`, first run on a new store | {first:.1f} | |",
            "",
            f"**Ratio pipeline / plain: {ratio:.2f}** (target at most {TARGET}: {verdict}).",
            "",
        ]
    )
    DOCS.mkdir(parents=True, exist_ok=True)
    (DOCS / "pipeline.md").write_text(report)
    print(report)
    return 0
