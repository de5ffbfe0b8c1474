"""Chaos soak of the job layer: jobs through the HTTP job API while workers, RabbitMQ and the store are killed.

One driver for `./noxw -s chaos` (tests/benchmarks/chaos_bench.py: 5,000 jobs and a no-fault baseline in the same
invocation, report in docs/benchmarks/chaos.md) and for the CI test (tests/e2e/test_chaos.py: a few hundred).

A phase runs a stack of its own on 127.0.0.1: nx-27017 on a fresh data dir, the service (`bentoml serve`), N
workers (`python -m service.jobs.worker`, each with its metrics on a port of its own) and queue names of its own on the
local RabbitMQ. Clients submit the jobs at concurrency C through `POST /jobs`, each with an Idempotency-Key, and
retry a submission that got a 503 or a transport error with the same key; a job is accepted when it got its 202.
With faults, a driver thread acts while the jobs are being submitted:
- every `kill_every_s` at most it SIGKILLs one worker chosen at random among those that are working (their
  finished-jobs counter moved within the last poll) while jobs are running in the store (a batch in hand), but
  never the last worker up: one loading the model (TensorFlow, about 17 s) is not chosen and another must be
  up, so kills roll over the workers; a new worker is started at once in the killed one's place;
- once `broker_at` of the jobs are accepted it restarts RabbitMQ: `rabbitmqctl stop_app`, `outage_s`, `start_app`;
- once `store_at` are accepted it SIGKILLs nx-27017 and starts it again on the same port and data dir after
  `outage_s`.
`frequent_kills` makes a config of kills only, as often as restarts allow, of workers serving a heavier model (so
that a working worker holds a batch), with one prediction attempt a job: the lease budget's case.
Each fault records the backlog at that moment (jobs queued and running in the store). The phase then waits until
every accepted job is final and checks the contract: every accepted job `succeeded`, with exactly one result write
(`result_writes`, counted by `JobStore.succeed`) and a result per row; no job the clients did not have accepted;
empty queues, the dead-letter queue included (no input here is poison, so anything in it is a fault of the job
layer); no process that exited unless the driver killed it. Every process is stopped by its PID at the end.
"""

from __future__ import annotations

import collections
import os
import random
import re
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pika
from pymongo import MongoClient
from pymongo.errors import PyMongoError

from service.settings import JobSettings
from support.job_servers import NX, delete_queues, fresh_job_settings, mongo_up, settings_env
from support.processes import alive, descendants, free_port, http_ok, spawn, stop, wait_until

ROOT = Path(__file__).resolve().parents[2]
FINISHED = re.compile(r'^nbship_jobs_finished_total\{state="succeeded"\} (\S+)$', re.MULTILINE)


@dataclass(frozen=True)
class ChaosConfig:
    jobs: int = 5000
    concurrency: int = 16
    workers: int = 2
    faults: bool = True
    kill_every_s: float = 5.0
    max_kills: int | None = None  # None: as many as the submission leaves time for
    broker_at: float = 0.3  # fraction of the jobs accepted when RabbitMQ is restarted
    store_at: float = 0.6  # ... when nx-27017 is killed and started again
    outage_s: float = 3.0  # how long the broker and the store stay down
    rate: float | None = None  # submissions per second over all clients; None: as fast as answered
    max_rows: int = 4  # each job has 1 to max_rows rows
    # Shorter than the default 60 s so that a killed worker's batch is taken over within the run; still far
    # longer than a batch takes (about 0.1 s for 256 rows of this model).
    lease_s: float = 10.0
    sweep_interval_s: float = 1.0
    settle_timeout_s: float = 900.0
    submit_timeout_s: float = 300.0  # how long one client keeps retrying one submission
    predictor: str | None = (
        None  # MODULE:FACTORY of the workers' model (support.fake_worker); None: the champion
    )
    restarts: bool = True  # restart the broker and the store once each (with `faults`); False: only kills
    max_attempts: int | None = None  # prediction attempts a job has; None: the default (MAX_ATTEMPTS)
    seed: int = 0

    def job_settings(self, mongo_url: str, amqp_url: str) -> JobSettings:
        """Production defaults (prefetch, batch size and wait, attempts, grace) but the lease and sweep."""
        defaults = JobSettings(_env_file=None)  # type: ignore[call-arg]
        keep = (
            "prefetch",
            "batch_size",
            "batch_wait_ms",
            "retry_delay_s",
            "publish_grace_s",
            "max_attempts",
            "max_lease_losses",
        )
        overrides = {name: getattr(defaults, name) for name in keep}
        if self.max_attempts is not None:
            overrides["max_attempts"] = self.max_attempts
        return fresh_job_settings(
            mongo_url,
            amqp_url,
            **overrides,
            lease_s=self.lease_s,
            sweep_interval_s=self.sweep_interval_s,
        )


def frequent_kills(base: ChaosConfig, kill_every_s: float = 1.0) -> ChaosConfig:
    """Kills only, as often as the workers' restarts allow, of workers that hold a batch (a heavier model, so
    that a working worker has leases in hand), with a short lease so that their jobs come back within the run.
    One prediction attempt a job: were a lost lease to spend an attempt, every job that lost one would fail."""
    return ChaosConfig(
        **{
            **base.__dict__,
            "workers": base.workers + 2,
            "kill_every_s": kill_every_s,
            "restarts": False,
            "predictor": "support.chaos:HeavierChampion",
            "lease_s": 3.0,
            "max_attempts": 1,
            "sweep_interval_s": 0.5,
            "rate": 60.0,  # submissions spread over the time in which restarted workers can be killed again
        }
    )


@dataclass(frozen=True)
class Fault:
    kind: str  # "worker killed", "broker restarted", "store restarted"
    at_s: float  # since the first submission
    took_s: float  # the outage: kill to new process started, stop to start again
    backlog: dict[str, int] | None  # queued and running jobs just before (None: the store did not answer)
    accepted: int  # jobs accepted by then

    @property
    def in_flight(self) -> bool:
        return self.backlog is not None and sum(self.backlog.values()) > 0


@dataclass
class Submission:
    key: str
    n_rows: int
    job_id: str | None = None
    answers: collections.Counter[str] = field(default_factory=collections.Counter)  # "503", "transport", ...

    @property
    def retries(self) -> int:
        return sum(self.answers.values())


@dataclass(frozen=True)
class PhaseResult:
    config: ChaosConfig
    submissions: list[Submission]
    faults: list[Fault]
    statuses: dict[str, int]
    result_writes: dict[int, int]  # writes per job -> jobs
    attempts: dict[int, int]  # prediction attempts per job -> jobs
    lease_losses: dict[int, int]  # leases lost with a worker (or the store) per job -> jobs
    missing: int  # accepted jobs with no document
    unexpected: int  # documents of jobs no client had accepted
    bad_results: int  # succeeded jobs without one prediction per row
    models: list[dict[str, str]]
    queues: dict[str, int]
    dead_letters: list[tuple[bytes, dict[str, Any]]]
    crashed: list[str]  # processes that exited without the driver killing them
    submit_s: float  # first submission to last 202
    wall_s: float  # first submission (store stamp) to last success (store stamp)
    logs: Path

    @property
    def accepted(self) -> int:
        return sum(1 for s in self.submissions if s.job_id)

    def answers(self) -> collections.Counter[str]:
        total: collections.Counter[str] = collections.Counter()
        for submission in self.submissions:
            total.update(submission.answers)
        return total

    def count(self, kind: str) -> int:
        return sum(1 for fault in self.faults if fault.kind == kind)

    @property
    def reclaimed(self) -> int:
        """Jobs claimed more than once: a worker (or the store) went away while they were in hand."""
        return sum(n for losses, n in self.lease_losses.items() if losses > 0)

    def problems(self) -> list[str]:
        """What breaks the job layer's contract (or the soak's own premises); empty when all held."""
        found = []
        if self.accepted < len(self.submissions):
            found.append(f"{len(self.submissions) - self.accepted} submissions never got a 202")
        if odd := {k: n for k, n in self.answers().items() if k != "503" and not k.startswith("transport")}:
            found.append(f"answers other than 202, 503 or a transport error: {odd}")
        if self.statuses != {"succeeded": self.accepted}:
            found.append(f"accepted {self.accepted}, final states {self.statuses}")
        if self.result_writes != {1: self.accepted}:
            found.append(f"result writes per job: {self.result_writes}")
        for what, n in (
            ("missing", self.missing),
            ("unexpected", self.unexpected),
            ("bad", self.bad_results),
        ):
            if n:
                found.append(f"{n} {what} jobs")
        if len(self.models) != 1:
            found.append(f"results from models {self.models}")
        if any(self.queues.values()):
            found.append(f"messages left in the queues: {self.queues}")
        if self.crashed:
            found.append(f"exited on their own: {self.crashed}")
        return found


class Processes:
    """Every process the phase starts, each in its own process group, stopped by its PID (newest first)."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self._started: list[subprocess.Popen[bytes]] = []
        self._killed: set[int] = set()
        self._children: set[int] = set()  # the service's own processes, seen while it ran

    def start(self, name: str, command: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        with open(self.logs / f"{name}.log", "ab") as log:
            process = spawn(command, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        self._started.append(process)
        return process

    def kill(self, process: subprocess.Popen[bytes]) -> None:
        self._killed.add(process.pid)
        with suppress(ProcessLookupError):
            os.killpg(process.pid, 9)
        process.wait()

    def remember_children(self, process: subprocess.Popen[bytes]) -> None:
        self._children |= descendants(process.pid)

    def crashed(self, names: dict[int, str]) -> list[str]:
        return [
            f"{names.get(p.pid, p.pid)} (exit {p.returncode})"
            for p in self._started
            if p.poll() is not None and p.pid not in self._killed
        ]

    def stop_all(self) -> list[int]:
        """Stop everything; returns the PIDs still alive afterwards (none, unless something is stuck)."""
        for process in reversed(self._started):
            stop(process, timeout_s=30)
        for pid in self._children:  # a server's worker that outlived its group leader
            if alive(pid):
                with suppress(ProcessLookupError):
                    os.kill(pid, 9)
        pids = {p.pid for p in self._started} | self._children
        time.sleep(0.2)
        return sorted(pid for pid in pids if alive(pid))


class HeavierChampion:
    """The packaged champion, `BATCH_S` slower a micro-batch: a heavier model, for the soak with frequent kills.

    With the champion itself a batch is in a worker's hands for a few milliseconds, so a worker killed while
    working has mostly written its results already and no lease is lost. A worker of this one holds a batch
    (its jobs' leases) most of the time it works: a kill then costs leases, which is what that soak is about.
    Its answers are the champion's (`python -m support.fake_worker support.chaos:HeavierChampion`, tests/ on PYTHONPATH).
    """

    BATCH_S = 0.1

    def __init__(self) -> None:
        from service.serving.packaged import load_packaged
        from service.settings import ServiceSettings

        self._model = load_packaged(ServiceSettings().bento_model_tag)
        self.name, self.version, self.contract = self._model.name, self._model.version, self._model.contract

    def predict(self, rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        time.sleep(self.BATCH_S)
        return self._model.predict(rows)


class Stack:
    """nx-27017, the service and the workers of one phase."""

    def __init__(self, config: ChaosConfig, env: dict[str, str], folder: Path, amqp_url: str) -> None:
        self.config = config
        self.folder = folder
        self.nx_port, self.port = free_port(), free_port()
        self.settings = config.job_settings(f"mongodb://127.0.0.1:{self.nx_port}", amqp_url)
        jobs_env = settings_env(self.settings)
        self.env = {k: v for k, v in env.items() if k not in ("API_KEYS", "METRICS_PORT")} | jobs_env
        self.url = f"http://127.0.0.1:{self.port}"
        self.processes = Processes(folder)
        self.names: dict[int, str] = {}
        self.workers: list[tuple[subprocess.Popen[bytes], int]] = []  # (process, metrics port) per slot
        self.nx: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.start_store()
        serve = ["bentoml", "serve", "service.service:PredictionService", "--host", "127.0.0.1"]
        service = self._start("service", [sys.executable, "-m", *serve, "--port", str(self.port)], self.env)
        self.workers = [self._start_worker() for _ in range(self.config.workers)]
        wait_until(http_ok(f"{self.url}/readyz"), 240, "the service", service)
        self.processes.remember_children(service)
        for process, port in self.workers:
            wait_until(lambda p=port: self.finished(p) is not None, 240, "a worker", process)

    def start_store(self) -> None:
        url, nx = self.settings.mongo_url, self.folder / "nx-27017"
        command = [
            NX, "--host", "127.0.0.1", "--port", str(self.nx_port), "--data-dir", str(nx / "data"),
            "--pid-file", str(nx / "nx.pid"), "--log-file", str(nx / "nx.log"),
        ]  # fmt: skip
        nx.mkdir(parents=True, exist_ok=True)
        self.nx = self._start("nx-27017", command, self.env)
        wait_until(lambda: mongo_up(url), 30, "nx-27017", self.nx)

    def _start_worker(self) -> tuple[subprocess.Popen[bytes], int]:
        port = free_port()
        command = [sys.executable, "-m", "service.jobs.worker"]
        if self.config.predictor:
            command = [sys.executable, "-m", "support.fake_worker", self.config.predictor]
        path = os.pathsep.join(filter(None, [str(ROOT / "tests"), self.env.get("PYTHONPATH")]))
        env = self.env | {"METRICS_PORT": str(port), "PYTHONPATH": path}
        return self._start("worker", command, env), port

    def _start(self, name: str, command: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        process = self.processes.start(name, command, env)
        self.names[process.pid] = name
        return process

    def finished(self, port: int) -> float | None:
        """The worker's finished-jobs counter; None while it is not serving metrics (loading the model)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1) as response:
                text = response.read().decode()
        except OSError:
            return None
        match = FINISHED.search(text)
        return float(match.group(1)) if match else 0.0

    def kill_worker(self, slot: int) -> None:
        self.processes.kill(self.workers[slot][0])
        self.workers[slot] = self._start_worker()

    def restart_store(self, outage_s: float) -> None:
        assert self.nx is not None
        self.processes.kill(self.nx)
        time.sleep(outage_s)
        self.start_store()

    def stop(self) -> list[int]:
        left = self.processes.stop_all()
        delete_queues(self.settings)
        return left


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=180)


def restart_broker(outage_s: float) -> None:
    """A real restart of the RabbitMQ application: every connection closed, durable queues recovered from disk.
    `stop_app`/`start_app` and not `stop` + `rabbitmq-server -detached`: the broker is the machine's, shared, so
    its node (configuration, owner, cookie) stays as whoever started it left it, and the outage is seconds."""
    rabbitmqctl("stop_app")
    try:
        time.sleep(outage_s)
    finally:
        rabbitmqctl("start_app")
        rabbitmqctl("await_startup")


def job_rows(config: ChaosConfig, index: int) -> list[list[float]]:
    rng = np.random.default_rng([config.seed, index])
    n_rows = int(rng.integers(1, config.max_rows + 1))
    return rng.integers(0, 17, size=(n_rows, 64)).astype(float).tolist()


class Clients:
    """`concurrency` clients submitting the jobs; each retries a 503 or a transport error with the same key."""

    def __init__(self, config: ChaosConfig, url: str) -> None:
        self.config = config
        self.url = url
        run = uuid.uuid4().hex[:8]
        self.submissions = [
            Submission(f"chaos-{run}-{i}", len(job_rows(config, i))) for i in range(config.jobs)
        ]
        self.accepted = 0
        self._lock = threading.Lock()
        self.started = time.monotonic()  # reset by `run`'s caller just before it runs
        self.done = threading.Event()

    def run(self) -> float:
        """Submit everything; returns the seconds from the first submission to the last 202."""
        limits = httpx.Limits(max_connections=self.config.concurrency)
        try:
            with (
                httpx.Client(base_url=self.url, timeout=30, limits=limits) as client,
                ThreadPoolExecutor(self.config.concurrency) as pool,
            ):
                list(pool.map(lambda i: self._submit(client, i), range(self.config.jobs)))
        finally:
            self.done.set()
        return time.monotonic() - self.started

    def _submit(self, client: httpx.Client, index: int) -> None:
        if self.config.rate:
            time.sleep(max(0.0, self.started + index / self.config.rate - time.monotonic()))
        submission = self.submissions[index]
        body = {"instances": job_rows(self.config, index)}
        headers = {"Idempotency-Key": submission.key}
        deadline = time.monotonic() + self.config.submit_timeout_s
        delay = 0.1
        while time.monotonic() < deadline:
            try:
                answer = client.post("/jobs", json=body, headers=headers)
            except httpx.TransportError as exc:
                submission.answers[f"transport ({type(exc).__name__})"] += 1
            else:
                if answer.status_code == 202:
                    submission.job_id = answer.json()["id"]
                    with self._lock:
                        self.accepted += 1
                    return
                submission.answers[str(answer.status_code)] += 1
                if answer.status_code != 503:
                    return  # anything but "retry later" is an answer, and a problem the report shows
            time.sleep(delay)
            delay = min(delay * 2, 2.0)

    def progress(self) -> float:
        return self.accepted / self.config.jobs


class Store:
    """The driver's own reads of the phase's store (counts while it runs, every document at the end)."""

    def __init__(self, settings: JobSettings) -> None:
        self._client: MongoClient[dict[str, Any]] = MongoClient(
            settings.mongo_url, serverSelectionTimeoutMS=1000, tz_aware=True
        )
        self.jobs = self._client[settings.mongo_database]["jobs"]

    def backlog(self) -> dict[str, int] | None:
        try:
            database = self.jobs.database
            return {
                state: int(database.command("count", "jobs", query={"status": {"$eq": state}})["n"])
                for state in ("queued", "running")
            }
        except PyMongoError:
            return None

    def close(self) -> None:
        self._client.close()


class FaultDriver:
    """Kills workers, restarts the broker and the store while the clients submit (see the module docstring)."""

    def __init__(self, config: ChaosConfig, stack: Stack, clients: Clients, store: Store) -> None:
        self.config, self.stack, self.clients, self.store = config, stack, clients, store
        self.faults: list[Fault] = []
        self.error: BaseException | None = None
        self._random = random.Random(config.seed)

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # reported by the phase, which must still stop everything
            self.error = exc

    def _run(self) -> None:
        config, clients, stack = self.config, self.clients, self.stack
        pending = {"broker restarted": config.broker_at, "store restarted": config.store_at}
        if not config.restarts:
            pending.clear()
        kills = 0
        next_kill = clients.started + config.kill_every_s
        counters = [stack.finished(port) for _, port in stack.workers]
        working: list[int] = []
        next_poll = 0.0
        while not clients.done.is_set():
            if time.monotonic() >= next_poll:  # which workers finished jobs since the last poll
                now = [stack.finished(port) for _, port in stack.workers]
                up = {slot for slot, after in enumerate(now) if after is not None}
                # Never the last worker up: the others keep working while it loads the model again.
                working = [
                    slot
                    for slot, (before, after) in enumerate(zip(counters, now, strict=True))
                    if before is not None and after is not None and after > before and up - {slot}
                ]
                counters, next_poll = now, time.monotonic() + 0.25
            restarts = [kind for kind, at in pending.items() if clients.progress() >= at]
            kill = (config.max_kills is None or kills < config.max_kills) and time.monotonic() >= next_kill
            if not (restarts or (kill and working)):
                time.sleep(0.05)
                continue
            # A fault waits for jobs in flight: a kill for a batch in hand (jobs running), a restart for any.
            backlog = self.store.backlog()
            if restarts and backlog and sum(backlog.values()):
                kind = restarts[0]
                del pending[kind]
                act = (
                    (lambda: restart_broker(config.outage_s))
                    if kind == "broker restarted"
                    else (lambda: stack.restart_store(config.outage_s))
                )
                self._fault(kind, act, backlog)
                next_poll = 0.0
            elif kill and working and backlog and backlog["running"]:
                slot = self._random.choice(working)
                self._fault("worker killed", lambda slot=slot: stack.kill_worker(slot), backlog)
                counters[slot] = None
                working.remove(slot)
                kills += 1
                next_kill = time.monotonic() + config.kill_every_s
            else:
                time.sleep(0.05)  # the store serves one command at a time: do not crowd it

    def _fault(self, kind: str, act: Callable[[], None], backlog: dict[str, int]) -> None:
        accepted = self.clients.accepted
        started = time.monotonic()
        act()
        took = time.monotonic() - started
        self.faults.append(Fault(kind, started - self.clients.started, took, backlog, accepted))


def run_phase(config: ChaosConfig, env: dict[str, str], folder: Path, amqp_url: str) -> PhaseResult:
    """Start a stack, submit the jobs (with faults if the config says so), wait, check; stop everything."""
    folder.mkdir(parents=True, exist_ok=True)
    stack = Stack(config, env, folder, amqp_url)
    try:
        stack.start()
        store = Store(stack.settings)
        try:
            return _measure(config, stack, store)
        finally:
            store.close()
    finally:
        left = stack.stop()
        if left:
            raise RuntimeError(f"processes still running after the phase: {left}")


def _measure(config: ChaosConfig, stack: Stack, store: Store) -> PhaseResult:
    clients = Clients(config, stack.url)
    driver = FaultDriver(config, stack, clients, store)
    thread = threading.Thread(target=driver.run, name="faults", daemon=True)
    clients.started = time.monotonic()
    if config.faults:
        thread.start()
    submit_s = clients.run()
    if config.faults:
        thread.join()
        if driver.error is not None:
            raise driver.error
    accepted = [s.job_id for s in clients.submissions if s.job_id]
    _settle(store, len(accepted), config.settle_timeout_s)
    queues = _drained_queues(stack.settings)
    return _check(config, stack, store, clients, driver.faults, queues, submit_s)


def _settle(store: Store, accepted: int, timeout_s: float) -> None:
    """Until every accepted job is final (or the timeout: the check then reports the jobs that are not)."""

    def final() -> bool:
        database = store.jobs.database
        counts = {
            state: int(database.command("count", "jobs", query={"status": {"$eq": state}})["n"])
            for state in ("succeeded", "failed")
        }
        return sum(counts.values()) >= accepted

    with suppress(TimeoutError):
        wait_until(final, timeout_s, "every accepted job final")


def _drained_queues(settings: JobSettings, timeout_s: float = 30) -> dict[str, int]:
    """Queue depths once main and retry are empty (duplicates of finished jobs are acked within moments)."""
    names = {"main": settings.job_queue, "retry": settings.retry_queue, "dead": settings.dead_letter_queue}

    def depths() -> dict[str, int]:
        connection = pika.BlockingConnection(pika.URLParameters(settings.amqp_url))
        try:
            channel = connection.channel()
            return {k: channel.queue_declare(q, passive=True).method.message_count for k, q in names.items()}
        finally:
            connection.close()

    deadline = time.monotonic() + timeout_s
    while (found := depths())["main"] + found["retry"] and time.monotonic() < deadline:
        time.sleep(1)
    return found


def dead_letters(settings: JobSettings) -> list[tuple[bytes, dict[str, Any]]]:
    connection = pika.BlockingConnection(pika.URLParameters(settings.amqp_url))
    try:
        channel = connection.channel()
        found: list[tuple[bytes, dict[str, Any]]] = []
        while True:
            method, properties, body = channel.basic_get(settings.dead_letter_queue, auto_ack=True)
            if method is None:
                return found
            found.append((body, dict(properties.headers or {})))
    finally:
        connection.close()


def _check(
    config: ChaosConfig,
    stack: Stack,
    store: Store,
    clients: Clients,
    faults: list[Fault],
    queues: dict[str, int],
    submit_s: float,
) -> PhaseResult:
    fields = {"status": 1, "attempts": 1, "lease_losses": 1, "result_writes": 1, "n_rows": 1, "model": 1}
    fields |= {"result": 1}
    fields |= {"created_at": 1, "finished_at": 1}
    documents = {d["_id"]: d for d in store.jobs.find({}, fields)}
    accepted = {s.job_id: s for s in clients.submissions if s.job_id}
    ours = [documents[job_id] for job_id in accepted if job_id in documents]
    succeeded = [d for d in ours if d["status"] == "succeeded"]
    models = [dict(m) for m in {tuple(sorted(d["model"].items())) for d in succeeded}]
    bad = sum(
        1
        for d in succeeded
        if len(d["result"]["predictions"]) != d["n_rows"] or d["n_rows"] != accepted[d["_id"]].n_rows
    )
    created = min((d["created_at"] for d in ours), default=None)
    finished = max((d["finished_at"] for d in succeeded), default=None)
    return PhaseResult(
        config=config,
        submissions=clients.submissions,
        faults=faults,
        statuses=dict(collections.Counter(d["status"] for d in ours)),
        result_writes=dict(collections.Counter(int(d.get("result_writes", 0)) for d in ours)),
        attempts=dict(collections.Counter(int(d.get("attempts", 0)) for d in ours)),
        lease_losses=dict(collections.Counter(int(d.get("lease_losses", 0)) for d in ours)),
        missing=len(accepted) - len(ours),
        unexpected=len(set(documents) - set(accepted)),
        bad_results=bad,
        models=models,
        queues=queues,
        dead_letters=dead_letters(stack.settings),
        crashed=stack.processes.crashed(stack.names),
        submit_s=submit_s,
        wall_s=(finished - created).total_seconds() if created and finished else float("nan"),
        logs=stack.folder,
    )
