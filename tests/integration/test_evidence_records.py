"""Records of answered requests and jobs (service/evidence/records.py) on the MongoDB-protocol server: written in
groups off the caller's path, inputs kept for the hashed sample, dropped and counted (never blocking) when the
store is away, and the drops tallied in the store once it answers again."""

from __future__ import annotations

import time

import numpy as np
from prometheus_client import CollectorRegistry
from pymongo import MongoClient
from support.job_servers import nx_server
from support.models import DIGITS_LIKE
from support.processes import free_port, wait_until

from service.evidence.records import RECORDS, TALLIES, Call, Recorder, expand, sampled


class Version:
    name, version, contract = "digits", "3", DIGITS_LIKE


def _call(n_rows: list[int], seed: int = 0) -> tuple[Call, list[dict[str, np.ndarray]]]:
    rng = np.random.default_rng(seed)
    rows = [{"pixels": rng.random((n, 64), dtype=np.float32)} for n in n_rows]
    logits = rng.random((sum(n_rows), 10))
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return Call(Version(), {"probabilities": probabilities.astype(np.float32)}, list(n_rows)), rows


def _sample(registry: CollectorRegistry, outcome: str) -> float:
    value = registry.get_sample_value(
        "nbship_evidence_records_total", {"model": "digits", "version": "3", "outcome": outcome}
    )
    return value or 0.0


def test_each_request_is_recorded_with_its_outputs_and_a_hashed_sample_keeps_its_inputs(job_settings) -> None:
    settings = job_settings.model_copy(update={"evidence_sample": 0.5, "evidence_flush_ms": 50})
    registry = CollectorRegistry()
    recorder = Recorder(settings, registry=registry)
    call, rows = _call([1, 3, 2])
    ids = [f"req-{i}" for i in range(3)]
    for i, ident in enumerate(ids):
        recorder.add(ident, "predict", call, i, rows[i], 0.002 * (i + 1))
    recorder.close()

    client = MongoClient(settings.mongo_url, tz_aware=True)
    bundles = list(client[settings.mongo_database][RECORDS].find())
    assert len(bundles) == 1 and bundles[0]["n"] == 3  # one document a version a write: the store's work
    found = {d["request_id"]: d for bundle in bundles for d in expand(bundle)}
    assert sorted(found) == ids
    classes = call.outputs["probabilities"].argmax(axis=1).tolist()
    starts = [0, 1, 4, 6]
    for i, ident in enumerate(ids):
        record = found[ident]
        assert (record["model"], record["version"], record["kind"], record["n_rows"]) == ("digits", "3", "predict", len(rows[i][
            "pixels"]))  # fmt: skip
        assert record["outputs"]["probabilities"]["class"] == classes[starts[i] : starts[i + 1]]
        assert np.allclose(
            record["outputs"]["probabilities"]["confidence"],
            call.outputs["probabilities"][starts[i] : starts[i + 1]].max(axis=1),
        )
        assert record["latency_ms"] == round(2.0 * (i + 1), 3)
        assert ("inputs" in record) == sampled(ident, 0.5)
        if "inputs" in record:
            assert np.array_equal(record["inputs"]["pixels"], rows[i]["pixels"])
    kept = sum(sampled(ident, 0.5) for ident in ids)
    assert (_sample(registry, "logged"), _sample(registry, "sampled"), _sample(registry, "dropped")) == (
        3,
        kept,
        0,
    )
    client.close()


def test_the_sample_is_decided_by_the_id_alone_and_near_its_share() -> None:
    ids = [f"{i:08x}" for i in range(20_000)]
    share = sum(sampled(ident, 0.1) for ident in ids) / len(ids)
    assert 0.09 < share < 0.11
    assert [sampled(ident, 0.1) for ident in ids[:200]] == [sampled(ident, 0.1) for ident in ids[:200]]
    assert all(sampled(ident, 1.0) for ident in ids[:100]) and not any(
        sampled(ident, 0.0) for ident in ids[:100]
    )


def test_a_store_that_is_down_drops_and_counts_records_without_holding_the_caller_then_tallies_them(
    job_settings, tmp_path
) -> None:
    port = free_port()  # nothing listens there yet
    settings = job_settings.model_copy(
        update={
            "mongo_url": f"mongodb://127.0.0.1:{port}",
            "mongo_timeout_ms": 300,
            "evidence_buffer": 100,
            "evidence_group": 50,
            "evidence_flush_ms": 20,
        }
    )
    registry = CollectorRegistry()
    recorder = Recorder(settings, registry=registry)
    call, rows = _call([1])
    for i in range(1_000):  # the writer is stuck on the unreachable store: the buffer fills, then drops
        recorder.add(f"down-{i}", "job", call, 0, rows[0], 0.001)
    assert recorder.pending() <= 100
    time.sleep(1.0)  # the writer gives up on at least one group, then counts it
    with nx_server(tmp_path / "nx", port) as url:
        assert url.endswith(f":{port}")
        recorder.add("after", "job", call, 0, rows[0], 0.001)
        recorder.close(timeout_s=10)
        client = MongoClient(url, tz_aware=True)
        database = client[settings.mongo_database]
        written = sum(bundle["n"] for bundle in database[RECORDS].find())
        tally = database[TALLIES].find_one({"_id": "digits/3"})
        client.close()
    dropped = _sample(registry, "dropped")
    assert written >= 1  # "after", at least, the first record once the store answers
    assert written + dropped == 1_001  # each record is written or counted as dropped, none vanishes
    assert dropped >= 900  # at most the buffer (100) and a group in hand outlived the outage
    assert tally is not None and (tally["dropped"], tally["logged"]) == (dropped, written)
    assert _sample(registry, "logged") == written


def test_the_job_worker_records_each_finished_job_under_its_id(
    job_settings, store, submitter, start_worker, fake_model, kit
) -> None:
    settings = job_settings.model_copy(update={"evidence_sample": 1.0, "evidence_flush_ms": 20})
    recorder = Recorder(settings, registry=CollectorRegistry())
    start_worker(fake_model, recorder=recorder)
    jobs = [submitter.submit(kit.array(n, first_pixel=n)) for n in (1, 4, 2)]
    results = kit.wait_final(store, [job.id for job in jobs])
    client = MongoClient(settings.mongo_url, tz_aware=True)
    bundles = client[settings.mongo_database][RECORDS]
    expanded: dict[str, dict] = {}
    wait_until(
        lambda: (
            len(expanded.update({r["request_id"]: r for b in bundles.find() for r in expand(b)}) or expanded)
            == 3
        ),
        10,
        "3 job records",
    )
    for job in jobs:
        record = expanded[job.id]
        assert record["kind"] == "job"
        assert (record["model"], record["version"], record["n_rows"]) == ("fake-digits", "7", job.n_rows)
        assert record["outputs"]["probabilities"]["class"] == results[job.id]["result"]["predictions"]
        assert record["inputs"]["pixels"][:, 0].tolist() == [job.n_rows] * job.n_rows
        assert record["latency_ms"] > 0
    client.close()
    recorder.close()
