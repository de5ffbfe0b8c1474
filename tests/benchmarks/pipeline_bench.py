"""`./noxw -s bench -- pipeline`: `python -m pipeline train` against a plain training script, same run.

Both train the notebook's default model. The pipeline runs on a store of its own: the first run (which creates
the store) is reported apart, then repetitions alternate plain and pipeline; the figure is the ratio of medians.
Then one default run of each example notebook, and the task metrics by hand against `mlflow.models.evaluate` on
the same static predictions (why pipeline/metrics.py computes them itself).
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

        examples = {}
        for notebook in sorted((ROOT / "notebooks" / "examples").glob("*.ipynb")):
            command = [*pipeline_cmd, "--notebook", str(notebook)]
            examples[notebook.name] = timed(command, env | {"MODEL_NAME": notebook.stem.replace("_", "-")})
            print(f"{notebook.name}: {examples[notebook.name]:.1f} s", flush=True)
    by_hand, evaluate = metric_costs()

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
            "One run of each example notebook with its default parameters (`python -m pipeline train --notebook`):",
            "",
            "| notebook | wall time (s) |",
            "| --- | --- |",
            *(f"| `notebooks/examples/{name}` | {seconds:.1f} |" for name, seconds in examples.items()),
            "",
            "Test metrics of the digits classifier's 360 held-out rows, median of 5 calls in one process:",
            "",
            "| | ms | what it gives |",
            "| --- | --- | --- |",
            f"| `pipeline.metrics.score` (scikit-learn) | {by_hand * 1000:.1f} | accuracy, macro F1, log-loss |",
            f"| `mlflow.models.evaluate` on static predictions | {evaluate * 1000:.1f} | labels only: no log-loss |",
            "",
        ]
    )
    DOCS.mkdir(parents=True, exist_ok=True)
    (DOCS / "pipeline.md").write_text(report)
    print(report)
    return 0


def metric_costs() -> tuple[float, float]:
    """Seconds per call: the pipeline's own scores, and MLflow's evaluator on the same static predictions."""
    import time

    import numpy as np
    import pandas as pd
    from support.digits import CLASS_NAMES, load_split

    from service.models import metrics
    from service.models.contract import ModelContract, Tensor
    from service.models.quiet import quiet

    quiet()
    import mlflow

    split = load_split()
    contract = ModelContract.single(
        "classification",
        Tensor((64,), np.dtype("float32")),
        Tensor((10,), np.dtype("float32")),
        tuple(CLASS_NAMES),
    )
    outputs = np.random.default_rng(0).dirichlet(np.ones(10), size=len(split.x_test)).astype(np.float32)
    frame = pd.DataFrame({"prediction": outputs.argmax(axis=1), "target": split.y_test})

    def seconds(call) -> float:
        runs = []
        for _ in range(5):
            started = time.perf_counter()
            call()
            runs.append(time.perf_counter() - started)
        return median(runs)

    def evaluate() -> None:
        with tempfile.TemporaryDirectory() as store:
            mlflow.set_tracking_uri(f"sqlite:///{store}/mlflow.db")
            with mlflow.start_run():
                mlflow.models.evaluate(
                    data=frame, predictions="prediction", targets="target", model_type="classifier"
                )

    by_hand = seconds(lambda: metrics.score(contract, {contract.output.name: outputs}, split.y_test))
    return by_hand, seconds(evaluate)
