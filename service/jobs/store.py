"""The job store: one MongoDB document per job, written so MongoDB 7 and nx-27017 behave alike.

What keeps both servers alike (see DESIGN.md): timestamps only at insert or with `$currentDate`; the lease
is a number (epoch seconds), because nx stores a `$set` datetime as a string and its `$lt` against
`$currentDate` stamps was seen to miss; the owner and idempotency key are hashed into `_id`, so no unique index
over a field that may be missing is needed; a write error is never read by its code, the document is read back
instead. Every write is durable before anyone relies on it, except two whose loss is harmless: the outbox flag
(a duplicate publish) and the claim. Journals are sequential on both servers (MongoDB's journal, nx-27017's
SQLite write-ahead log), so a journaled write makes every write before it durable too: a group of new jobs
(one `insert_many`) and a micro-batch's results (one bulk write) are each written unjournaled and followed
by one journaled write (`_journal`), and only then is a submission answered or a message acked; the one after
the results makes the claim before them durable too. A claim lost in a crash leaves the job queued, the result
write then matches nothing and the worker requeues the message instead of acking it. On nx-27017 every
document written is its own SQLite commit, and a journaled commit is an fsync: this saves one fsync per new
job, per claim and per result (measured in docs/benchmarks/jobs.md).

Query shapes are the ones nx-27017 runs as indexed SQL (measured, see docs/benchmarks/jobs.md), with the same
meaning on MongoDB: `{"status": {"$eq": s}}` (a bare `{"status": s}` also matches arrays, which nx writes as an
OR over `json_each` that no index serves), lookups by `_id`, and counts with the `count` command
(`count_documents` is an aggregation there, which copies the whole collection into a temporary table).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
from pymongo import MongoClient, UpdateOne
from pymongo.collection import Collection
from pymongo.errors import BulkWriteError, ConnectionFailure, PyMongoError, WriteError
from pymongo.write_concern import WriteConcern

from service.models.contract import STRING, Rows, rows_in
from service.models.row_bytes import decode_rows, encode_rows
from service.settings import JobSettings

STATES = ("queued", "running", "succeeded", "failed")
FINAL_STATES = ("succeeded", "failed")
KEY_NAMESPACE = b"nbship.job-id.v2"
# Fields a poller sees (and the owner, checked before showing them); the inputs and claim bookkeeping stay.
VIEW = {"inputs": 0, "claim": 0, "lease_until": 0, "published": 0, "payload_sha256": 0}
# What a worker needs of a claimed job.
CLAIMED = {
    "inputs": 1,
    "dtype": 1,
    "row_shape": 1,
    "n_rows": 1,
    "attempts": 1,
    "lease_losses": 1,
    "created_at": 1,
    "claim": 1,
}


class StoreUnavailable(Exception):
    """The store cannot be reached: nothing was written."""


class IdempotencyConflict(Exception):
    """An idempotency key already names a job with different rows: answering with that job would be wrong."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"the idempotency key was already used for job {job_id} with different instances")
        self.job_id = job_id


@dataclass(frozen=True)
class Job:
    id: str
    status: str
    n_rows: int
    created: bool  # False when an idempotency key returned an existing job


@dataclass(frozen=True)
class Submission:
    """A job to create: its rows (checked already), optional idempotency key, and the owner (see `create`)."""

    rows: Rows  # by input name
    idempotency_key: str | None = None
    owner: str = ""


@dataclass(frozen=True)
class ClaimedJob:
    id: str
    claim: str  # the claim token: results are written only while the claim is still this one
    rows: Rows  # by input name ("" for a job stored before inputs were named: the model's only input)
    attempts: int  # prediction attempts, this one included; a lost lease gives its attempt back
    created_at: dt.datetime
    lease_losses: int = 0  # leases of this job that ran out in a worker's hands


@dataclass(frozen=True)
class Outcome:
    """A finished prediction for one claimed job."""

    job: ClaimedJob
    result: dict[str, Any]  # the answer as /predict gives it (service.models.contract.ModelContract.answer)


def job_id_for(idempotency_key: str | None, owner: str = "") -> str:
    """128 random bits; with an idempotency key, a digest of the owner and the key, so the same key names the
    same job only for the same owner, and nobody can compute the id without knowing both."""
    if not idempotency_key:
        return secrets.token_hex(16)
    parts = (KEY_NAMESPACE, owner.encode(), idempotency_key.encode())
    framed = b"".join(len(part).to_bytes(4, "big") + part for part in parts)  # unambiguous: no separator
    return hashlib.sha256(framed).hexdigest()[:32]


def payload_digest(rows: Rows) -> str:
    """What identifies a submission's rows: each input's name, values, dtype and shape."""
    digest = hashlib.sha256()
    for name in sorted(rows):
        values = rows[name]
        digest.update(f"{name}\0{values.dtype.str}{values.shape}\0".encode())
        digest.update(
            repr(values.tolist()).encode()
            if values.dtype == STRING
            else np.ascontiguousarray(values).tobytes()
        )
    return digest.hexdigest()


def is_job_id(text: str) -> bool:
    return len(text) == 32 and all(c in "0123456789abcdef" for c in text)


@contextmanager
def _reachable() -> Iterator[None]:
    try:
        yield
    except ConnectionFailure as exc:
        raise StoreUnavailable(f"job store unreachable: {exc}") from exc


class JobStore:
    def __init__(self, client: MongoClient, settings: JobSettings, collection: str = "jobs") -> None:
        self._client = client
        self._settings = settings
        database = client.get_database(settings.mongo_database)
        self._jobs: Collection = database.get_collection(collection, write_concern=WriteConcern(w=1, j=True))
        self._unjournaled: Collection = database.get_collection(collection, write_concern=WriteConcern(w=1))
        # A journaled write that always writes (a write that matches nothing may not reach the journal): the
        # results before it are on disk once it is. A document per store client, so writers do not contend.
        self._journal_marks: Collection = database.get_collection(
            f"{collection}_journal_marks",
            write_concern=WriteConcern(w=1, j=True),  # nx refuses dotted names
        )
        self._token = uuid.uuid4().hex

    def close(self) -> None:
        self._client.close()

    def ensure_indexes(self) -> None:
        with _reachable():
            self._jobs.create_index([("status", 1), ("created_at", 1)])
            self._jobs.create_index("finished_at", expireAfterSeconds=self._settings.retention_s)

    def create(self, rows: Rows, idempotency_key: str | None = None, owner: str = "") -> Job:
        """`owner`: the API key name that submits the job ("" without keys); only it can see the job."""
        outcome = self.create_many([Submission(rows, idempotency_key, owner)])[0]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def create_many(self, submissions: Sequence[Submission]) -> list[Job | Exception]:
        """Every submission in one unordered `insert_many`, made durable by one journaled write before this
        returns (as a journaled insert of each would be, for one fsync); an outcome per submission, in order: the
        job (`created` False when its idempotency key named an existing job with the same rows, which may be
        another submission of this same call), or the exception that submission alone raises
        (IdempotencyConflict, or the server's write error). StoreUnavailable when the store cannot be reached:
        then nothing was written. One bad document does not fail the others: the server writes the rest."""
        documents = [_document(submission) for submission in submissions]
        with _reachable():
            try:
                self._unjournaled.insert_many(documents, ordered=False)
                failed: dict[int, PyMongoError] = {}
            except BulkWriteError as exc:
                if exc.details.get("writeConcernErrors"):
                    raise  # not written as asked: none of them may be answered as accepted
                # Which documents failed, never why: the error codes differ between the servers (DESIGN.md).
                failed = {error["index"]: _write_error(error) for error in exc.details["writeErrors"]}
            self._journal()  # from here every document written above is on disk, as a journaled insert is
            existing = self._existing([documents[index]["_id"] for index in failed])
        outcomes: list[Job | Exception] = []
        for index, (submission, document) in enumerate(zip(submissions, documents, strict=True)):
            n_rows = rows_in(submission.rows)
            if index not in failed:
                outcomes.append(Job(document["_id"], "queued", n_rows, created=True))
                continue
            found = existing.get(document["_id"])
            if submission.idempotency_key is None or found is None:
                outcomes.append(failed[index])
            elif found.get("payload_sha256") != document["payload_sha256"]:
                outcomes.append(IdempotencyConflict(document["_id"]))
            else:
                outcomes.append(Job(document["_id"], found["status"], found["n_rows"], created=False))
        return outcomes

    def _journal(self) -> None:
        """Return once every write this client made before is on disk: one journaled write, which waits for the
        journal up to it (sequential on both servers). One fsync on nx-27017 instead of one per document."""
        self._journal_marks.update_one({"_id": self._token}, {"$inc": {"n": 1}}, upsert=True)

    def _existing(self, job_ids: list[str]) -> dict[str, dict[str, Any]]:
        if not job_ids:
            return {}
        cursor = self._jobs.find({"_id": {"$in": job_ids}}, {"status": 1, "n_rows": 1, "payload_sha256": 1})
        return {document["_id"]: document for document in cursor}

    def get(self, job_id: str, owner: str = "") -> dict[str, Any] | None:
        """The job if `owner` submitted it, else None, as for an unknown id (a job written before owners were
        stored belongs to "")."""
        with _reachable():
            document = self._jobs.find_one({"_id": job_id}, VIEW)
        if document is None or document.pop("owner", "") != owner:
            return None
        return document

    def mark_published(self, job_ids: Sequence[str]) -> None:
        with _reachable():
            self._unjournaled.update_many({"_id": {"$in": list(job_ids)}}, {"$set": {"published": True}})

    def claim(self, job_ids: Sequence[str]) -> list[ClaimedJob]:
        """Claim the claimable jobs among `job_ids`: queued, or running with an expired lease.

        Two budgets (DESIGN.md): a queued job starts a prediction attempt (`attempts` + 1) if it has attempts
        left; an expired lease taken over counts a lost lease (`lease_losses` + 1) instead, and the attempt
        it interrupted is run again under the same number, if the job has lease losses left (the sweeper fails
        the others). Each update is atomic per document on both servers and tags the claimed jobs with one
        fresh token, one read returns exactly those; a job another worker holds is not returned. All select
        by `_id` first, so none scans the collection; the second update runs only when the first one did not
        claim every job (a redelivery, or a take-over).
        """
        token = uuid.uuid4().hex
        now = time.time()
        ids = list(job_ids)
        claimed = {"status": "running", "claim": token, "lease_until": now + self._settings.lease_s}
        with _reachable():
            fresh = self._unjournaled.update_many(
                {
                    "_id": {"$in": ids},
                    "status": {"$eq": "queued"},
                    "attempts": {"$lt": self._settings.max_attempts},
                },
                {"$set": claimed, "$inc": {"attempts": 1}, "$currentDate": {"started_at": True}},
            )
            if fresh.modified_count < len(ids):
                self._unjournaled.update_many(
                    {
                        "_id": {"$in": ids},
                        "status": {"$eq": "running"},
                        "lease_until": {"$lt": now},
                        **self._lease_losses_left(),
                    },
                    {"$set": claimed, "$inc": {"lease_losses": 1}, "$currentDate": {"started_at": True}},
                )
            documents = self._jobs.find({"_id": {"$in": ids}, "claim": {"$eq": token}}, CLAIMED)
            return [_claimed(doc) for doc in documents]

    def _lease_losses_left(self) -> dict[str, Any]:
        """Jobs whose next lost lease is not their last allowed one. A job written before lease losses were
        counted has none: `$exists`, as nx-27017 has no `$not`."""
        below = {"$lt": self._settings.max_lease_losses - 1}
        return {"$or": [{"lease_losses": below}, {"lease_losses": {"$exists": False}}]}

    def succeed(self, outcomes: Sequence[Outcome], model: dict[str, str]) -> int:
        """Every result of a micro-batch in one round trip; returns how many were written (claims still ours)."""
        if not outcomes:
            return 0
        writes = [
            UpdateOne(
                {"_id": outcome.job.id, "claim": outcome.job.claim, "status": "running"},
                {
                    "$set": {
                        "status": "succeeded",
                        "result": outcome.result,
                        "model": model,
                    },
                    "$currentDate": {"finished_at": True},
                    # How often a result landed: exactly once is the contract, and the chaos soak counts it.
                    "$inc": {"result_writes": 1},
                },
            )
            for outcome in outcomes
        ]
        with _reachable():
            written = self._unjournaled.bulk_write(writes, ordered=False).modified_count
            self._journal()
            return written

    def retry(self, job: ClaimedJob, error: str) -> bool:
        """Give a failed attempt back to the queue; the caller publishes it to the retry queue."""
        with _reachable():
            updated = self._jobs.update_one(
                {"_id": job.id, "claim": job.claim, "status": "running"},
                {"$set": {"status": "queued", "error": error, "published": True}},
            )
            return updated.modified_count == 1

    def fail(self, job: ClaimedJob, error: str, lease_lost: bool = False) -> bool:
        """Fail for good; `lease_lost`: the job's lease ran out once too often, and that loss is counted."""
        update: dict[str, Any] = {
            "$set": {"status": "failed", "error": error},
            "$currentDate": {"finished_at": True},
        }
        if lease_lost:
            update["$inc"] = {"lease_losses": 1}
        with _reachable():
            updated = self._jobs.update_one({"_id": job.id, "claim": job.claim, "status": "running"}, update)
            return updated.modified_count == 1

    def expired_out_of_lease_budget(self, limit: int = 100) -> list[ClaimedJob]:
        """Jobs whose lease ran out with their last allowed lease loss (a job that kills every worker that takes
        it), as their holder would see them: the caller fails them with `fail(..., lease_lost=True)`, which also
        takes care of a holder that was only slow. Neither `claim` nor `requeue_expired` takes them."""
        with _reachable():
            cursor = self._jobs.find(
                {
                    "status": {"$eq": "running"},
                    "lease_until": {"$lt": time.time()},
                    "lease_losses": {"$gte": self._settings.max_lease_losses - 1},
                },
                CLAIMED,
            ).limit(limit)
            return [_claimed(doc) for doc in cursor]

    def requeue_expired(self) -> int:
        """Expired leases with lease losses left (a worker died): queued again, for the sweeper to publish. The
        loss is counted, and the prediction attempt it interrupted is given back: it did not end."""
        with _reachable():
            requeued = self._jobs.update_many(
                {
                    "status": {"$eq": "running"},
                    "lease_until": {"$lt": time.time()},
                    **self._lease_losses_left(),
                },
                {
                    "$set": {"status": "queued", "published": False},
                    "$inc": {"attempts": -1, "lease_losses": 1},
                },
            )
            return requeued.modified_count

    def unpublished(self, limit: int = 1000) -> list[dict[str, Any]]:
        """Queued jobs whose publish was never confirmed, after a grace period for submissions in flight."""
        cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=self._settings.publish_grace_s)
        with _reachable():
            cursor = self._jobs.find(
                {"status": {"$eq": "queued"}, "published": False, "created_at": {"$lt": cutoff}},
                {"n_rows": 1},
            ).limit(limit)
            return list(cursor)

    def counts(self, states: Sequence[str] = STATES) -> dict[str, int]:
        """Jobs per state, each an index count on both servers."""
        database, name = self._jobs.database, self._jobs.name
        with _reachable():
            return {
                state: int(database.command("count", name, query={"status": {"$eq": state}})["n"])
                for state in states
            }


def _claimed(document: dict[str, Any]) -> ClaimedJob:
    return ClaimedJob(
        id=document["_id"],
        claim=document["claim"],
        rows=decode_rows(document),
        attempts=document["attempts"],
        created_at=document["created_at"],
        lease_losses=document.get("lease_losses", 0),
    )


def _document(submission: Submission) -> dict[str, Any]:
    rows = submission.rows
    document: dict[str, Any] = {
        "_id": job_id_for(submission.idempotency_key, submission.owner),
        "owner": submission.owner,
        "status": "queued",
        "n_rows": rows_in(rows),
        "inputs": encode_rows(rows),
        "attempts": 0,
        "lease_losses": 0,
        "published": False,
        "created_at": dt.datetime.now(dt.UTC),
    }
    if submission.idempotency_key:
        document["idempotency_key"] = submission.idempotency_key
        document["payload_sha256"] = payload_digest(rows)
    return document


def _write_error(error: dict[str, Any]) -> PyMongoError:
    return WriteError(error.get("errmsg", "write error"), error.get("code"), error)


def connect_store(settings: JobSettings) -> JobStore:
    """A store client; reaching the server waits for the first operation (at most `mongo_timeout_ms`)."""
    timeout = settings.mongo_timeout_ms
    client: MongoClient = MongoClient(
        settings.mongo_url,
        tz_aware=True,
        serverSelectionTimeoutMS=timeout,
        connectTimeoutMS=timeout,
        socketTimeoutMS=max(timeout, 30_000),  # a 10,000-row bulk write takes longer than a connect
    )
    return JobStore(client, settings)
