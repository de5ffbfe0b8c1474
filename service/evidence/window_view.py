"""The current window's evidence as `GET /model` shows it: for the version answering now, across every process
that records into the store (the numbers a person checks before running `python -m pipeline monitor`).

    requests        records the version's processes wrote to the store (its tally, all time)
    latest          the newest LATEST records: their rows, the rows sampled, the rows labelled (POST /feedback)
    dropped         records of the version the served processes could not write (their tally in the store)
    most_drifted    the input features whose sampled rows are farthest from the version's held-out rows:
                    the Kolmogorov-Smirnov statistic for numbers, the total variation distance for categories
                    (no test, no threshold: the monitor says whether a feature drifted)
    this_process    records waiting in this process's buffer

Read from the store at most once every CACHE_S a process; a store that is down answers `{"store": "unavailable"}`
within its timeout and is not asked again before CACHE_S.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

import numpy as np
from pymongo import MongoClient
from pymongo.errors import PyMongoError

from service.evidence.records import LABELS, RECORDS, TALLIES, Recorder, newest
from service.models import reference as references
from service.models.contract import ModelContract, join_rows
from service.settings import EvidenceSettings

CACHE_S = 10.0
LATEST = 1000
SHOWN = 5


class WindowView:
    def __init__(self, settings: EvidenceSettings, recorder: Recorder, client: MongoClient) -> None:
        self._settings = settings
        self._recorder = recorder
        self._database = client.get_database(settings.mongo_database)
        self._lock = threading.Lock()
        self._cached: tuple[float, str, dict[str, Any]] | None = None

    def view(self, model: Any) -> dict[str, Any]:
        """`model`: the version answering (name, version, contract, reference)."""
        now = time.monotonic()
        with self._lock:
            cached = self._cached
            if cached is None or cached[1] != model.version or now - cached[0] > CACHE_S:
                self._cached = cached = (now, model.version, self._read(model))
        return {
            "recording": True,
            "sample": self._settings.evidence_sample,
            "version": model.version,
            **cached[2],
            "this_process": {"buffered": self._recorder.pending()},
        }

    def _read(self, model: Any) -> dict[str, Any]:
        query = {"model": {"$eq": model.name}, "version": {"$eq": model.version}}
        try:
            tally = self._database[TALLIES].find_one({"_id": f"{model.name}/{model.version}"}) or {}
            latest = newest(self._database[RECORDS], query, LATEST)
            ids = [record["request_id"] for record in latest]
            # Counted here: a count_documents is an aggregation on nx-27017, a copy of the collection.
            labelled = sum(1 for _ in self._database[LABELS].find({"request_id": {"$in": ids}}, {"_id": 1}))
        except PyMongoError:
            return {"store": "unavailable"}
        requests = int(tally.get("logged", 0))
        sampled = [record["inputs"] for record in latest if "inputs" in record]
        return {
            "requests": requests,
            "latest": {
                "records": len(latest),
                "rows": sum(record["n_rows"] for record in latest),
                "sampled_rows": sum(len(next(iter(rows.values()))) for rows in sampled),
                "labelled_rows": labelled,
            },
            "dropped": int(tally.get("dropped", 0)),
            "most_drifted": most_drifted(model.contract, model.reference, sampled),
        }


def most_drifted(
    contract: ModelContract, reference: dict[str, Any] | None, sampled: list[dict[str, np.ndarray]]
) -> list[dict[str, Any]]:
    if reference is None or not sampled:
        return []
    live = references.input_features(contract, join_rows(sampled), references.vocabularies(reference))
    found = []
    for name, described in reference["inputs"].items():
        values = live.get(name)
        if values is None:
            continue
        if described["kind"] == "number":
            statistic, measure = (
                ks_statistic(np.asarray(described["sample"]), np.asarray(values, float)),
                "ks",
            )
        else:
            statistic, measure = total_variation(described["counts"], values), "total_variation"
        found.append({"feature": name, measure: round(statistic, 4)})
    found.sort(key=lambda entry: -next(v for k, v in entry.items() if k != "feature"))
    return found[:SHOWN]


def ks_statistic(reference_sorted: np.ndarray, live: np.ndarray) -> float:
    """The largest distance between the two empirical distribution functions."""
    live = np.sort(live[np.isfinite(live)])
    if not len(live) or not len(reference_sorted):
        return 0.0
    points = np.concatenate([reference_sorted, live])
    below_reference = np.searchsorted(reference_sorted, points, side="right") / len(reference_sorted)
    below_live = np.searchsorted(live, points, side="right") / len(live)
    return float(np.abs(below_reference - below_live).max())


def total_variation(counts: dict[str, int], live: np.ndarray) -> float:
    served = Counter(references.category(value) for value in live)
    held_total, served_total = sum(counts.values()) or 1, sum(served.values()) or 1
    keys = set(counts) | set(served)
    return 0.5 * sum(abs(counts.get(k, 0) / held_total - served.get(k, 0) / served_total) for k in keys)
