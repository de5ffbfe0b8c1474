"""One version's window of live evidence, read from the store the served processes record into: the records of
that version alone (since a time, if given), the sampled inputs, every answer's outputs in short, and the labels
sent for them (`POST /feedback`) joined by request id and row. A window never mixes versions: a switch of
`@champion` starts the new version's own.

Only the newest `limit` records are read (a window of millions would be read for a sample anyway); the counts
of requests, rows and drops are the store's own.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pymongo.database import Database

from service.evidence.records import LABELS, RECORDS, TALLIES, newest
from service.models.contract import ModelContract, Rows, join_rows

READ_LIMIT = 50_000
ID_CHUNK = 1000


@dataclass(frozen=True)
class Labelled:
    """A labelled row: what the version answered for it (its output's summary entry) and the label."""

    output: str
    answered: dict[str, Any]  # the row's entry of each summary part: class and confidence, labels, or value
    label: Any
    delay_s: float  # from the answer to the label


@dataclass
class Window:
    name: str
    version: str
    since: dt.datetime | None
    requests: int = 0  # records of the version in the window, in the store
    read: int = 0  # records read (the newest, at most READ_LIMIT)
    rows: int = 0  # rows answered by the records read
    first: dt.datetime | None = None
    last: dt.datetime | None = None
    dropped: int = 0  # records of the version the served processes could not write (all time)
    inputs: Rows = field(default_factory=dict)  # the sampled rows
    outputs: dict[str, dict[str, list[Any]]] = field(default_factory=dict)  # every row read, by output
    labelled: list[Labelled] = field(default_factory=list)
    unmatched_labels: int = 0  # labels of rows no record read answered

    @property
    def sampled_rows(self) -> int:
        return len(next(iter(self.inputs.values()))) if self.inputs else 0


def read(
    database: Database,
    contract: ModelContract,
    name: str,
    version: str,
    since: dt.datetime | None = None,
    limit: int = READ_LIMIT,
) -> Window:
    window = Window(name, version, since)
    query: dict[str, Any] = {"model": {"$eq": name}, "version": {"$eq": version}}
    floor = since.timestamp() if since is not None else None
    if floor is not None:  # by epoch seconds: nx-27017 compares datetimes to the second
        query["t_last"] = {"$gte": floor}
    window.requests = sum(_within(bundle["t"], floor) for bundle in database[RECORDS].find(query, {"t": 1}))
    tally = database[TALLIES].find_one({"_id": f"{name}/{version}"})
    window.dropped = int(tally.get("dropped", 0)) if tally else 0
    records = newest(database[RECORDS], query, limit, floor)
    window.read = len(records)
    if not records:
        return window
    window.first, window.last = records[-1]["at"], records[0]["at"]
    window.rows = sum(record["n_rows"] for record in records)
    sampled = [record["inputs"] for record in records if "inputs" in record]
    if sampled:
        window.inputs = join_rows(sampled)
    window.outputs = {
        output.name: {
            part: [value for record in records for value in record["outputs"][output.name][part]]
            for part in records[0]["outputs"][output.name]
        }
        for output in contract.outputs
    }
    _join_labels(database, records, window)
    return window


def _join_labels(database: Database, records: list[dict[str, Any]], window: Window) -> None:
    by_id: dict[str, dict[str, Any]] = {}
    for record in reversed(records):  # oldest first: a request id used twice keeps its newest record
        by_id[record["request_id"]] = record
    for label in _labels(database, list(by_id)):
        record = by_id.get(label["request_id"])
        parts = record["outputs"].get(label["output"]) if record else None
        row = label["row"]
        if record is None or parts is None or row >= record["n_rows"]:
            window.unmatched_labels += 1
            continue
        delay = (label["at"] - record["at"]).total_seconds()
        answered = {part: values[row] for part, values in parts.items()}
        window.labelled.append(Labelled(label["output"], answered, label["label"], delay))


def _labels(database: Database, request_ids: list[str]) -> Iterator[dict[str, Any]]:
    for start in range(0, len(request_ids), ID_CHUNK):
        chunk = request_ids[start : start + ID_CHUNK]
        yield from database[LABELS].find({"request_id": {"$in": chunk}})


def recorded_since(database: Database, since: dt.datetime) -> int:
    """Records of any version since `since`."""
    floor = since.timestamp()
    return sum(_within(b["t"], floor) for b in database[RECORDS].find({"t_last": {"$gte": floor}}, {"t": 1}))


def _within(times: list[float], floor: float | None) -> int:
    return len(times) if floor is None else sum(t >= floor for t in times)


def median(values: list[float]) -> float | None:
    return float(np.median(values)) if values else None
