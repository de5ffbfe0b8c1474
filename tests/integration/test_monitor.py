"""`python -m pipeline monitor` on the digits champion, with records made by the served path's own recorder in
the MongoDB-protocol server and labels sent through `POST /feedback`'s app: rows of the model's own
distribution drift nowhere, rows with two pixels shifted drift in those two and no other input, the live
accuracy is the accuracy of the labelled rows, dropped records are reported, and the HTML report lands in
the version's run."""

from __future__ import annotations

import datetime as dt
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry
from pymongo import MongoClient
from support.digits import load_split
from support.job_servers import settings_env

from service.evidence import feedback
from service.evidence.records import TALLIES, Call, Recorder
from service.models import registry
from service.models.lean import ONNX_RUNTIME
from service.models.loader import load_model_dir
from tests.conftest import run_pipeline

SHIFTED = (20, 43)  # pixels with a spread of values in the digits data
pytestmark = pytest.mark.usefixtures("champion_store")


@pytest.fixture(scope="module")
def lean_champion(champion_store):
    """The champion as the served processes hold it (its lean form: no TensorFlow call needed)."""
    client = registry.connect(f"sqlite:///{champion_store.data_dir / 'mlflow.db'}")
    version = client.get_model_version("digits-classifier", champion_store.version)
    with tempfile.TemporaryDirectory() as tmp:
        folder = registry.download_model(client, str(version.source), Path(tmp))
        return load_model_dir(folder, "digits-classifier", champion_store.version, runtime=ONNX_RUNTIME)


def record(recorder: Recorder, model, rows: np.ndarray, prefix: str) -> list[str]:
    """The rows answered in requests of 1 to 4 rows, as the API records them; returns the request ids."""
    ids, start, sizes = [], 0, [1, 2, 3, 4]
    while start < len(rows):
        size = sizes[len(ids) % 4]
        batch = {"pixels": rows[start : start + size]}
        call = Call(model, model.predict(batch), [len(batch["pixels"])])
        ident = f"{prefix}-{len(ids)}"
        recorder.add(ident, "predict", call, 0, batch, 0.001)
        ids.append(ident)
        start += size
    return ids


def monitor(champion_store, settings, *args: str) -> str:
    done = run_pipeline(champion_store, "monitor", *args, **settings_env(settings))
    assert done.returncode == 0, done.stderr
    return done.stdout


def drifted_inputs(output: str) -> set[str]:
    return {
        line.split()[0]
        for line in output.splitlines()
        if line.startswith("  pixels[") and line.rstrip().endswith("yes")
    }


def test_monitor_names_the_shifted_pixels_scores_labels_and_reports_drops(
    champion_store, lean_champion, job_settings, tmp_path
) -> None:
    settings = job_settings.model_copy(update={"evidence_sample": 1.0, "evidence_flush_ms": 20})
    split = load_split()
    same, shifted = split.x_train[:500], split.x_train[500:1000].copy()
    shifted[:, list(SHIFTED)] = np.clip(shifted[:, list(SHIFTED)] + 8, 0, 16)

    recorder = Recorder(settings, registry=CollectorRegistry())
    same_ids = record(recorder, lean_champion, same, "same")
    while recorder.pending():
        time.sleep(0.05)
    time.sleep(0.3)  # the group in hand written

    # Labels for every third request, through the route's own app (checked against the model's contract).
    app = feedback.feedback_app(settings)
    feedback.serve(app, lambda: lean_champion.contract)
    sizes = [[1, 2, 3, 4][i % 4] for i in range(len(same_ids))]
    offsets = np.cumsum([0, *sizes])
    labels = [
        {"id": ident, "row": row, "label": int(split.y_train[offsets[i] + row])}
        for i, ident in enumerate(same_ids[:-1])  # the last request may hold fewer rows
        if i % 3 == 0
        for row in range(sizes[i])
    ]
    with TestClient(app) as client:
        answer = client.post("/", json={"labels": labels})
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"stored": len(labels)}
    rows = same[[offsets[same_ids.index(label["id"])] + label["row"] for label in labels]]
    predicted = lean_champion.predict({"pixels": rows})["probabilities"].argmax(axis=1)
    accuracy = float(np.mean(predicted == [label["label"] for label in labels]))
    database = MongoClient(settings.mongo_url)[settings.mongo_database]
    tally = {"_id": f"digits-classifier/{champion_store.version}"}
    database[TALLIES].update_one(tally, {"$inc": {"dropped": 7}}, upsert=True)

    first = monitor(champion_store, settings)
    assert f"digits-classifier version {champion_store.version} (@champion)" in first
    assert "500 rows answered, 500 rows sampled, 7 records dropped" in first
    assert "drifted: 0 of 64 input features" in first  # rows of the model's own distribution
    assert f"live accuracy {accuracy:.3f}" in first and f"on {len(labels):,} labelled rows" in first

    between = dt.datetime.now(dt.UTC)
    time.sleep(0.05)
    recorder = Recorder(settings, registry=CollectorRegistry())
    record(recorder, lean_champion, shifted, "shifted")
    recorder.close()
    report = tmp_path / "report.html"
    recent = monitor(champion_store, settings, "--since", between.isoformat(), "--report", str(report))
    assert "500 rows answered, 500 rows sampled" in recent
    assert drifted_inputs(recent) == {f"pixels[{p}]" for p in SHIFTED}
    assert "drifted: 2 of 64 input features" in recent
    assert "no labels yet" in recent  # the labelled requests are outside this window
    page = report.read_text()
    assert all(f"pixels[{p}]: Kolmogorov-Smirnov" in page for p in SHIFTED)
    client = registry.connect(f"sqlite:///{champion_store.data_dir / 'mlflow.db'}")
    assert "monitor/report.html" in [a.path for a in client.list_artifacts(champion_store.run_id, "monitor")]
    too_few = monitor(champion_store, settings, "--since", between.isoformat(), "--min-rows", "600")
    assert "not enough to say anything about drift: 500 sampled rows, 600 needed" in too_few
