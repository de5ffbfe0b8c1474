"""A record of every answered request and job, written to the job store's MongoDB off the client's path.

A record: the request's id (`X-Request-ID`, or the job's id), the time, what asked (`predict`, `infer`, `job`),
the model name and version that answered, the latency, the number of rows and each output's answer in short
(classifiers: the class and its probability, the confidence; multi-label: the classes on and the confidence;
regressions: the values). A sample of records (EVIDENCE_SAMPLE, decided by a hash of the id, so a retry with
the same id is decided alike) keeps the input rows too, encoded as the job store encodes a job's.

The client's path only appends to a bounded buffer (a deque append). A thread of its own builds the documents
and writes them in groups (one unordered `insert_many`, acknowledged, not journaled: a record lost in a crash
is evidence lost, not an answer). A full buffer, or a store that is down or refuses a group, drops records:
they are counted per version on `/metrics` (`nbship_evidence_records_total{outcome="dropped"}`) and, once the
store answers again, added to the version's tally in the store, so that a report across every process says
how many are missing. A warning is logged once per outage, not per record.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple, Protocol

import numpy as np
from pymongo import ASCENDING, MongoClient, UpdateOne
from pymongo.collection import Collection
from pymongo.errors import PyMongoError

from service.models.contract import Outputs, Rows, join_rows
from service.models.reference import summary
from service.models.row_bytes import decode_rows, encode_rows
from service.models.source import Model
from service.settings import EvidenceSettings

log = logging.getLogger(__name__)
RECORDS = "requests"
LABELS = "labels"
TALLIES = "evidence_tallies"
OUTCOMES = ("logged", "sampled", "dropped")  # on /metrics: written, written with inputs, lost


class Answered(Protocol):
    """One model call's outputs and the rows each request or job of it had (service.serving.predictions.Batch)."""

    @property
    def model(self) -> Model: ...

    @property
    def outputs(self) -> Outputs: ...

    @property
    def counts(self) -> list[int]: ...


@dataclass(frozen=True)
class Call:
    """An `Answered` of the job worker's: a micro-batch's outputs and each job's rows."""

    model: Model
    outputs: Outputs
    counts: list[int]


class _Pending(NamedTuple):  # a tuple: the cheapest thing to build on the client's path
    ident: str
    at: float  # epoch seconds
    kind: str
    answered: Answered
    position: int  # which request of the call
    rows: Rows
    latency_s: float


def sampled(ident: str, share: float) -> bool:
    """Whether the record of `ident` keeps its inputs: the same answer for the same id, in every process."""
    if share >= 1.0:
        return True
    digest = hashlib.blake2b(ident.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") < share * 2**64


class Recorder:
    """Records answers of one process; `add` is all the client's path pays."""

    def __init__(
        self,
        settings: EvidenceSettings,
        client: MongoClient | None = None,
        registry: Any = None,
    ) -> None:
        self._settings = settings
        self._buffer: deque[_Pending] = deque()
        self._capacity = settings.evidence_buffer
        self._group = settings.evidence_group
        self._flush_s = settings.evidence_flush_ms / 1000
        self._dropped_here: Counter[tuple[str, str]] = Counter()  # on the client's path, by version
        self._lock = threading.Lock()  # the writer's counts against `add`'s drop count
        # Per version, counts not yet added to the store's tallies (logged, sampled, dropped).
        self._untallied: dict[tuple[str, str], Counter[str]] = {}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._outage = False
        self._indexed = False
        self._metric = _records_counter(registry)
        self._client = client or store_client(settings)
        database = self._client.get_database(settings.mongo_database)
        self._records: Collection = database.get_collection(RECORDS)
        self._tallies: Collection = database.get_collection(TALLIES)
        self._thread = threading.Thread(target=self._run, name="evidence-writer", daemon=True)
        self._thread.start()

    def add(
        self, ident: str, kind: str, answered: Answered, index: int, rows: Rows, latency_s: float
    ) -> None:
        """Record request `index` of the call `answered` (its `rows`, answered in `latency_s`)."""
        if len(self._buffer) >= self._capacity:
            model = answered.model
            with self._lock:
                self._dropped_here[(model.name, model.version)] += 1
            return
        self._buffer.append(_Pending(ident, time.time(), kind, answered, index, rows, latency_s))
        if len(self._buffer) >= self._group:
            self._wake.set()

    def close(self, timeout_s: float = 5.0) -> None:
        """Write what is buffered (for at most `timeout_s`), then stop."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout_s)
        self._client.close()

    @property
    def client(self) -> MongoClient:
        """The store client records are written with (read by the `/model` window view too)."""
        return self._client

    def pending(self) -> int:
        return len(self._buffer)

    def _run(self) -> None:
        while True:
            stopping = self._stop.is_set()
            if not self._buffer:
                if self._dropped_here or self._untallied:  # drops to count, with no record to carry them
                    self._write_safely([])
                if stopping:
                    return
                self._wake.wait(self._flush_s)
                self._wake.clear()
                continue
            if len(self._buffer) < self._group and not stopping:
                self._wake.wait(self._flush_s)  # let a group fill, up to the flush interval
                self._wake.clear()
            self._write_safely(self._take())

    def _write_safely(self, taken: list[_Pending]) -> None:
        try:
            self._write(taken)
        except Exception:  # never let the writer die: what it held is counted as dropped
            log.exception("evidence writer: unexpected error")
            with self._lock:
                self._dropped_here.update(
                    (item.answered.model.name, item.answered.model.version) for item in taken
                )

    def _take(self) -> list[_Pending]:
        taken: list[_Pending] = []
        while self._buffer and len(taken) < self._group:
            taken.append(self._buffer.popleft())
        return taken

    def _write(self, pending: list[_Pending]) -> None:
        documents, versions, with_inputs = self._documents(pending)
        with self._lock:
            dropped, self._dropped_here = self._dropped_here, Counter()
        self._count("dropped", dropped)
        self._tally("dropped", dropped)
        try:
            self._ensure_indexes()
            if documents:
                self._records.insert_many(documents, ordered=False)
        except PyMongoError as exc:
            self._count("dropped", versions)
            self._tally("dropped", versions)
            if not self._outage:
                log.warning("evidence store unavailable, dropping records until it answers: %s", _short(exc))
            self._outage = True
            return
        if self._outage:
            log.warning("evidence store answers again")
        self._outage = False
        self._count("logged", versions)
        self._count("sampled", with_inputs)
        self._tally("logged", versions)
        self._tally("sampled", with_inputs)
        if not self._untallied:
            return
        try:  # what each version recorded and lost, all time: /model and the monitor read it
            self._tallies.bulk_write(
                [
                    UpdateOne({"_id": f"{name}/{version}"}, {"$inc": dict(counts)}, upsert=True)
                    for (name, version), counts in self._untallied.items()
                ],
                ordered=False,
            )
            self._untallied.clear()
        except PyMongoError:
            pass  # kept, for the next write

    def _tally(self, outcome: str, counts: Counter[tuple[str, str]]) -> None:
        for version, n in counts.items():
            if n:
                self._untallied.setdefault(version, Counter())[outcome] += n

    def _documents(
        self, pending: Sequence[_Pending]
    ) -> tuple[list[dict[str, Any]], Counter[tuple[str, str]], Counter[tuple[str, str]]]:
        """One bundle a version: its records as columns, every row's outputs in short, the sampled rows."""
        share = self._settings.evidence_sample
        summaries: dict[int, tuple[dict[str, dict[str, list[Any]]], list[int]]] = {}
        bundles: dict[tuple[str, str], _Bundle] = {}
        for item in pending:
            answered = item.answered
            model = answered.model
            key = id(answered)
            if key not in summaries:  # each call's outputs summed up once, for all its requests
                contract = model.contract
                outputs = {
                    output.name: summary(output, answered.outputs[output.name]) for output in contract.outputs
                }
                summaries[key] = (outputs, [0, *np.cumsum(answered.counts).tolist()])
            outputs, starts = summaries[key]
            version = (model.name, model.version)
            bundle = bundles.get(version) or bundles.setdefault(version, _Bundle())
            bundle.add(
                item, outputs, starts[item.position], starts[item.position + 1], sampled(item.ident, share)
            )
        documents = [bundle.document(name, version) for (name, version), bundle in bundles.items()]
        versions = Counter({version: len(bundle.ids) for version, bundle in bundles.items()})
        with_inputs = Counter({version: len(bundle.sampled) for version, bundle in bundles.items()})
        return documents, versions, with_inputs

    def _ensure_indexes(self) -> None:
        if self._indexed:
            return
        self._records.create_index([("model", ASCENDING), ("version", ASCENDING), ("t_last", ASCENDING)])
        self._records.create_index("t_last")
        self._records.create_index("at", expireAfterSeconds=self._settings.evidence_retention_s)
        self._indexed = True

    def _count(self, outcome: str, counts: Counter[tuple[str, str]]) -> None:
        for (name, version), n in counts.items():
            self._metric.labels(name, version, outcome).inc(n)


class _Bundle:
    """The records of one version in one write, as columns (one document: the store's work is per document)."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.times: list[float] = []
        self.kinds: list[str] = []
        self.latencies: list[float] = []
        self.n_rows: list[int] = []
        self.outputs: dict[str, dict[str, list[Any]]] = {}
        self.sampled: list[int] = []  # positions of the records that keep their inputs
        self.rows: list[Rows] = []

    def add(
        self, item: _Pending, outputs: dict[str, dict[str, list[Any]]], start: int, end: int, keep: bool
    ) -> None:
        if keep:
            self.sampled.append(len(self.ids))
            self.rows.append(item.rows)
        self.ids.append(item.ident)
        self.times.append(item.at)
        self.kinds.append(item.kind)
        self.latencies.append(round(item.latency_s * 1000, 3))
        self.n_rows.append(end - start)
        for name, parts in outputs.items():
            columns = self.outputs.setdefault(name, {part: [] for part in parts})
            for part, values in parts.items():
                columns[part] += values[start:end]

    def document(self, name: str, version: str) -> dict[str, Any]:
        document: dict[str, Any] = {
            "model": name,
            "version": version,
            "at": datetime.fromtimestamp(self.times[0], UTC),  # for the TTL index
            "t_first": min(
                self.times
            ),  # epoch seconds, for windows: nx-27017 compares datetimes to the second
            "t_last": max(self.times),
            "n": len(self.ids),
            "request_id": self.ids,
            "t": self.times,
            "kind": self.kinds,
            "latency_ms": self.latencies,
            "n_rows": self.n_rows,
            "outputs": self.outputs,
            "sampled": self.sampled,
        }
        if self.rows:
            document["inputs"] = encode_rows(join_rows(self.rows))
        return document


def expand(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    """A bundle's records, one dict each: request_id, t, at, kind, model, version, latency_ms, n_rows, outputs
    (each output's parts for the record's rows) and, for a sampled record, inputs (its rows by input name)."""
    sampled_rows: dict[int, Rows] = {}
    if bundle.get("sampled"):
        counts = [bundle["n_rows"][i] for i in bundle["sampled"]]
        rows = decode_rows({"n_rows": sum(counts), "inputs": bundle["inputs"]})
        starts = [0, *np.cumsum(counts).tolist()]
        for k, i in enumerate(bundle["sampled"]):
            sampled_rows[i] = {name: values[starts[k] : starts[k + 1]] for name, values in rows.items()}
    records = []
    start = 0
    for i, ident in enumerate(bundle["request_id"]):
        end = start + bundle["n_rows"][i]
        record = {
            "request_id": ident,
            "t": bundle["t"][i],
            "at": datetime.fromtimestamp(bundle["t"][i], UTC),
            "kind": bundle["kind"][i],
            "model": bundle["model"],
            "version": bundle["version"],
            "latency_ms": bundle["latency_ms"][i],
            "n_rows": bundle["n_rows"][i],
            "outputs": {
                name: {part: values[start:end] for part, values in parts.items()}
                for name, parts in bundle["outputs"].items()
            },
        }
        if i in sampled_rows:
            record["inputs"] = sampled_rows[i]
        records.append(record)
        start = end
    return records


def newest(
    records: Collection, query: dict[str, Any], limit: int, floor: float | None = None
) -> list[dict[str, Any]]:
    """The newest `limit` records of the bundles `query` selects, newest first (`floor`: only those at or after
    that epoch second): bundles are read newest first, and no further than the limit needs."""
    found: list[dict[str, Any]] = []
    for bundle in records.find(query).sort("t_last", -1):
        found += [record for record in expand(bundle) if floor is None or record["t"] >= floor]
        if len(found) >= limit:
            break
    return sorted(found, key=lambda record: -record["t"])[:limit]


def store_client(settings: EvidenceSettings) -> MongoClient:
    timeout = settings.mongo_timeout_ms
    return MongoClient(
        settings.mongo_url,
        tz_aware=True,
        serverSelectionTimeoutMS=timeout,
        connectTimeoutMS=timeout,
        socketTimeoutMS=max(timeout, 10_000),
    )


def _short(exc: Exception) -> str:
    text = str(exc)
    return text if len(text) <= 200 else text[:200] + "..."


_counters: dict[int, tuple[Any, Any]] = {}  # id of a registry -> (that registry, its counter)


def _records_counter(registry: Any) -> Any:
    """One counter per registry (prometheus_client's default one in a served process). Keyed by the registry's
    id and checked to be the same object: a registry collected and a new one at its address get their own."""
    from prometheus_client import REGISTRY
    from prometheus_client import Counter as Metric

    registry = registry or REGISTRY
    known = _counters.get(id(registry))
    if known is None or known[0] is not registry:
        metric = Metric(
            "nbship_evidence_records",
            "Records of answered requests and jobs: logged (written), sampled (written with their inputs), "
            "dropped (buffer full or store down).",
            ["model", "version", "outcome"],
            registry=registry,
        )
        known = _counters[id(registry)] = (registry, metric)
    return known[1]
