"""The job store on the MongoDB-protocol server, and the nx-27017 differences DESIGN.md lists, pinned: if an
upgrade changes one of them, a test here fails and the store's workarounds can be revisited."""

from __future__ import annotations

import datetime as dt
import time

import numpy as np
import pytest
from pymongo import MongoClient, ReturnDocument
from pymongo.errors import PyMongoError

from service.jobs.store import IdempotencyConflict, Job, Outcome, connect_store


def test_claim_is_exclusive_until_the_lease_expires(job_settings) -> None:
    store = connect_store(job_settings.model_copy(update={"lease_s": 0.5}))
    job = store.create({"pixels": np.ones((2, 64), dtype=np.float32)})
    first = store.claim([job.id])
    assert [(c.id, c.attempts, c.lease_losses, c.rows["pixels"].shape) for c in first] == [
        (job.id, 1, 0, (2, 64))
    ]
    assert store.claim([job.id]) == []  # held
    time.sleep(0.6)
    second = store.claim([job.id])
    # A lost lease, not a second prediction attempt: the interrupted attempt runs again under its number.
    assert [(c.attempts, c.lease_losses) for c in second] == [(1, 1)]
    # The first claim's late result is refused: one result per job, from the current claim holder.
    assert store.succeed([Outcome(first[0], {"predictions": [0, 0]})], {"name": "m", "version": "1"}) == 0
    assert store.succeed([Outcome(second[0], {"predictions": [0, 0]})], {"name": "m", "version": "1"}) == 1
    assert store.claim([job.id]) == []  # finished
    store.close()


def test_expired_leases_are_requeued_or_failed_when_out_of_lease_budget(job_settings) -> None:
    settings = job_settings.model_copy(update={"lease_s": 0.1, "max_attempts": 1, "max_lease_losses": 3})
    store = connect_store(settings)
    once, often = (store.create({"pixels": np.zeros((1, 64), dtype=np.float32)}) for _ in range(2))
    for _ in range(2):  # lost twice: more often than max_attempts, each time taken over by a claim
        store.claim([often.id])
        time.sleep(0.2)
    claimed = {c.id: (c.attempts, c.lease_losses) for c in store.claim([once.id, often.id])}
    assert claimed == {once.id: (1, 0), often.id: (1, 2)}  # the store returns them in no particular order
    time.sleep(0.2)
    # `often`'s next loss is its third: no claim takes it, the requeue leaves it to the sweeper.
    assert store.claim([often.id]) == []
    assert [(job.id, job.attempts, job.lease_losses) for job in store.expired_out_of_lease_budget()] == [
        (often.id, 1, 2)
    ]
    assert store.requeue_expired() == 1
    assert {k: store.get(once.id)[k] for k in ("status", "attempts", "lease_losses")} == {
        "status": "queued",
        "attempts": 0,  # the interrupted attempt is given back
        "lease_losses": 1,
    }
    assert store.get(often.id)["status"] == "running"  # the worker's sweeper fails and dead-letters it
    (held,) = store.expired_out_of_lease_budget()
    assert store.fail(held, "lost", lease_lost=True)
    assert {k: store.get(often.id)[k] for k in ("status", "attempts", "lease_losses")} == {
        "status": "failed",
        "attempts": 1,
        "lease_losses": 3,
    }
    assert [d["_id"] for d in store.unpublished()] == []  # inside the publish grace period
    store.close()


def test_a_job_written_before_lease_losses_were_counted_is_still_requeued_and_claimed(job_settings) -> None:
    store = connect_store(job_settings.model_copy(update={"lease_s": 0.1}))
    job = store.create({"pixels": np.zeros((1, 64), dtype=np.float32)})
    raw = MongoClient(job_settings.mongo_url)[job_settings.mongo_database]["jobs"]
    raw.update_one({"_id": job.id}, {"$unset": {"lease_losses": ""}})
    (claimed,) = store.claim([job.id])
    assert claimed.lease_losses == 0
    time.sleep(0.2)
    assert [(c.attempts, c.lease_losses) for c in store.claim([job.id])] == [(1, 1)]  # taken over
    raw.update_one({"_id": job.id}, {"$unset": {"lease_losses": ""}})
    time.sleep(0.2)
    assert store.requeue_expired() == 1
    assert {k: store.get(job.id)[k] for k in ("status", "attempts", "lease_losses")} == {
        "status": "queued",
        "attempts": 0,
        "lease_losses": 1,
    }
    raw.database.client.close()
    store.close()


def test_a_reused_idempotency_key_with_other_rows_is_a_conflict(store) -> None:
    rows = np.ones((2, 64), dtype=np.float32)
    first = store.create({"pixels": rows}, "order-7")
    assert store.create({"pixels": rows.copy()}, "order-7") == Job(first.id, "queued", 2, created=False)
    for other in (rows[:1], rows + 1):
        with pytest.raises(IdempotencyConflict, match=first.id):
            store.create({"pixels": other}, "order-7")


def test_a_job_is_seen_only_by_its_owner_and_idempotency_keys_are_per_owner(store) -> None:
    rows = np.ones((2, 64), dtype=np.float32)
    alices = store.create({"pixels": rows}, "order-7", owner="alice")
    bobs = store.create({"pixels": rows + 1}, "order-7", owner="bob")  # other rows: no conflict, another job
    assert alices.created and bobs.created and alices.id != bobs.id
    assert store.create({"pixels": rows}, "order-7", owner="alice") == Job(
        alices.id, "queued", 2, created=False
    )
    assert store.get(alices.id, "alice")["n_rows"] == 2 and "owner" not in store.get(alices.id, "alice")
    assert store.get(alices.id, "bob") is None and store.get(alices.id) is None
    anonymous = store.create({"pixels": rows})
    assert store.get(anonymous.id)["status"] == "queued" and store.get(anonymous.id, "alice") is None


def test_counts_and_claims_do_not_scan_the_collection_on_nx(store, is_nx) -> None:
    """The query shapes the store uses, as nx-27017 translates them: a bare `{"status": s}` cannot use an
    index there, `{"$eq": s}` can; `count_documents` copies the collection, the `count` command does not."""
    if not is_nx:
        pytest.skip("nx-27017 only")
    from neosqlite import Connection

    local = Connection(":memory:")["jobs"]
    translate = local.query_engine.sql_translator.translate_match
    assert "EXISTS" in translate({"status": "queued"})[0]
    assert translate({"status": {"$eq": "queued"}})[0] == "WHERE json_extract(data, '$.status') = ?"
    store.create({"pixels": np.ones((1, 64), dtype=np.float32)})
    assert store.counts() == {"queued": 1, "running": 0, "succeeded": 0, "failed": 0}


@pytest.fixture
def raw(job_settings):
    client: MongoClient = MongoClient(job_settings.mongo_url, tz_aware=True)
    yield client[job_settings.mongo_database]["pins"]
    client.close()


def test_pin_set_of_a_datetime_is_stored_as_a_string_on_nx(raw, is_nx) -> None:
    now = dt.datetime.now(dt.UTC)
    raw.insert_one({"_id": 1, "at_insert": now})
    raw.update_one({"_id": 1}, {"$set": {"by_set": now}, "$currentDate": {"by_current_date": True}})
    document = raw.find_one({"_id": 1})
    assert isinstance(document["at_insert"], dt.datetime)
    assert isinstance(document["by_current_date"], dt.datetime)
    assert isinstance(document["by_set"], str if is_nx else dt.datetime)


def test_pin_find_one_and_update_answers_none_on_error_on_nx(raw, is_nx) -> None:
    raw.insert_one({"_id": 1, "n": "text"})
    update = {"$inc": {"n": 1}}  # $inc of a string is an error on both servers
    if is_nx:
        assert raw.find_one_and_update({"_id": 1}, update, return_document=ReturnDocument.AFTER) is None
    else:
        with pytest.raises(PyMongoError):
            raw.find_one_and_update({"_id": 1}, update)


def test_pin_index_names_differ_on_nx(raw, is_nx) -> None:
    returned = raw.create_index([("status", 1), ("created_at", 1)])
    assert returned == "status_1_created_at_1"
    listed = set(raw.index_information()) - {"_id_"}
    assert listed == ({"idx_pins_status_created_at"} if is_nx else {"status_1_created_at_1"})


def test_named_inputs_and_strings_round_trip_and_a_job_stored_before_names_still_decodes(store) -> None:
    from service.models.contract import STRING

    rows = {
        "alcohol": np.array([[12.5], [13.0]], dtype=np.float32),
        "region": np.array([["north"], ["süd"]], dtype=STRING),
        "counts": np.array([[1, 2], [3, 4]], dtype=np.int32),
    }
    job = store.create(rows, "order-9")
    (claimed,) = store.claim([job.id])
    assert claimed.rows.keys() == rows.keys()
    for name, values in rows.items():
        assert claimed.rows[name].dtype == values.dtype and claimed.rows[name].tolist() == values.tolist()
    with pytest.raises(IdempotencyConflict):
        store.create(rows | {"region": np.array([["north"], ["sud"]], dtype=STRING)}, "order-9")
    # The format before inputs were named: one unnamed array, its dtype and row shape beside it.
    old = np.arange(4, dtype=np.float32).reshape(2, 2)
    store._jobs.insert_one(
        {
            "_id": "0" * 32, "owner": "", "status": "queued", "n_rows": 2, "inputs": old.tobytes(),
            "dtype": "<f4", "row_shape": [2], "attempts": 0, "lease_losses": 0, "published": True,
            "created_at": dt.datetime.now(dt.UTC),
        }
    )  # fmt: skip
    (legacy,) = store.claim(["0" * 32])
    assert list(legacy.rows) == [""] and legacy.rows[""].tolist() == old.tolist()


def test_pin_a_datetime_bound_compares_to_the_second_in_find_on_nx(raw, is_nx) -> None:
    """Why records are selected by epoch seconds (`t`), not by their datetime (`at`, kept for the TTL index)."""
    second = dt.datetime(2026, 12, 6, 20, 54, 56, tzinfo=dt.UTC)
    raw.insert_one({"_id": 1, "at": second + dt.timedelta(milliseconds=231), "t": second.timestamp() + 0.231})
    later = second + dt.timedelta(milliseconds=300)
    by_datetime = [d["_id"] for d in raw.find({"at": {"$gte": later}})]
    assert by_datetime == ([1] if is_nx else [])  # nx: same second, so "later" matches
    assert [d["_id"] for d in raw.find({"t": {"$gte": later.timestamp()}})] == []
