"""Job layer benchmark through HTTP: `./noxw -s bench -- jobs [--jobs N] [--concurrency C[,C...]] [--runs R]`.

5,000 single-row jobs sent to `POST /jobs` at each concurrency (32 and 128 by default: keep-alive connections),
each case fed the same way and drained by 2 processes that predict:
1. the job layer: `bentoml serve` with 2 API workers and 2 job workers (`python -m service.jobs.worker`);
2. the RabbitMQ tutorial's classic workers behind the same service (prefetch_count=1, one read, one predict and
   one journaled update per message);
3. Celery (tests/benchmarks/celery_peer.py): a FastAPI front served by uvicorn with 2 workers, one `celery
   worker --concurrency 2` (prefork) configured for reliability, the MongoDB result backend.
Then the bulk case: one job of 10,000 rows through the job layer. Each case has a RabbitMQ virtual host and a
database of its own, on the same nx-27017 process (or MONGO_URL) and the local RabbitMQ, with the digits model
packaged into a private BentoML home (serve_bench's `digits`).

accepted/s: 202 answers over the time from the first request to the last answer. jobs/s: finished jobs over the
time from the first submission to the last success; p50/p99 from submission to success. The stamps: the job
layer and the classic case, the job's `created_at` (the API, when it builds the document) and `finished_at` (the
store's clock, `$currentDate`); Celery, `submitted_at` (the front, just before `delay`) and the result backend's
`date_done` (the worker, when it stores the result). A case still draining `--cap-s` seconds after its
submissions end is stopped and its rate is over the jobs it finished. CPU per job: utime + stime from /proc of
each process (and its children) between the moment the case's processes are ready and the end of the case;
for the job layer also the API's CPU a request of its no-op route with the same body. Median of `--runs` runs,
with the spread. Writes docs/benchmarks/jobs.md above its kept notes. `--profile DIR`: py-spy on the job
layer's processes (submissions and no-op requests apart) and every case's store commands and AMQP methods.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote, urlsplit

import httpx
import numpy as np
import pika
from common import DOCS, ROOT, header
from pymongo import MongoClient
from pymongo.collection import Collection
from serve_bench import digits, server_env
from support.job_servers import ensure_broker, fresh_job_settings, nx_server, settings_env
from support.processes import descendants, free_port, http_ok, running, wait_until

from service.jobs.queue import JobMessage, connection_parameters, declare_queues
from service.jobs.store import JobStore, connect_store
from service.models.contract import conform_rows
from service.models.row_bytes import decode_rows
from service.settings import JobSettings

CASES = ("job workers", "job workers, records off", "classic workers (tutorial)", "Celery")
OURS, BARE, CLASSIC, CELERY = CASES  # BARE: EVIDENCE=false, no record of each job (service/evidence)
API, STORE, BROKER, WORKERS_KIND = "API or front", "nx-27017", "RabbitMQ (beam.smp)", "workers"
WORKERS = 2  # API or front workers, and processes that predict, of each case
TICK_S = 1 / os.sysconf("SC_CLK_TCK")
HERE = Path(__file__).resolve().parent
# The production service with a no-op route added (noop_service.py), for the no-op figure: where it is, in one line.
NOOP_SERVICE, NOOP_PATH = "noop_service:NoopService", "/noop"
PROFILE_RATE = 200  # py-spy samples a second
KEPT = "<!-- Notes below this line are kept when the benchmark rewrites the figures above. -->"


class ClassicWorker:
    """The tutorial's worker: prefetch_count=1; per message one read, one predict, one update, one ack.

    It reads and writes the collection directly, as such a worker would: no claim, no lease. The result is the
    answer the job worker writes, with the same (journaled) write concern.
    """

    def __init__(self, settings: JobSettings, store: JobStore, model: Any) -> None:
        self._settings, self._store, self._model = settings, store, model
        self.stop = threading.Event()

    def run(self) -> None:
        connection = pika.BlockingConnection(connection_parameters(self._settings))
        channel = connection.channel()
        declare_queues(channel, self._settings)
        channel.basic_qos(prefetch_count=1)
        channel.basic_consume(self._settings.job_queue, self._callback)
        while not self.stop.is_set():
            connection.process_data_events(time_limit=0.2)
        connection.close()

    def _callback(self, channel, method, _properties, body: bytes) -> None:
        jobs = self._store._jobs
        job_id = JobMessage.decode(body).job_id
        document = jobs.find_one({"_id": job_id}, {"inputs": 1, "n_rows": 1})
        contract = self._model.contract
        rows = conform_rows(contract, decode_rows(document))
        result = contract.answer(self._model.predict(rows))
        jobs.update_one(
            {"_id": job_id},
            {"$set": {"status": "succeeded", "result": result}, "$currentDate": {"finished_at": True}},
        )
        channel.basic_ack(delivery_tag=method.delivery_tag)


def classic_worker() -> int:
    """`jobs_bench.py classic-worker`: one classic worker process on the packaged model, stopped by SIGTERM."""
    from service.models.quiet import quiet

    quiet()
    from service.serving.packaged import load_packaged
    from service.settings import ServiceSettings

    settings = JobSettings()
    store = connect_store(settings)
    store.ensure_indexes()  # the collection as the service keeps it (the TTL index costs nx-27017's reads)
    worker = ClassicWorker(settings, store, load_packaged(ServiceSettings().bento_model_tag))
    signal.signal(signal.SIGTERM, lambda *_: worker.stop.set())
    worker.run()
    return 0


# --- the client --------------------------------------------------------------------------------------------


async def post_all(port: int, body: bytes, jobs: int, concurrency: int, path: str = "/jobs") -> Counter[int]:
    """`jobs` POSTs of `body` to `path` on `concurrency` keep-alive connections; the status counts. Plain asyncio
    streams: an HTTP client library would cost this machine's two cores more than the API's own parsing."""
    request = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    todo = iter(range(jobs))  # shared by the connections: each request is sent once
    statuses: Counter[int] = Counter()

    async def connection() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in todo:
            writer.write(request)
            status = await reader.readline()
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            await reader.readexactly(length)
            statuses[int(status.split()[1]) if status else 0] += 1
        writer.close()

    await asyncio.gather(*(connection() for _ in range(concurrency)))
    return statuses


def timed_posts(
    port: int, body: bytes, jobs: int, concurrency: int, path: str = "/jobs"
) -> tuple[Counter[int], float]:
    """The status counts of `post_all` and its seconds, from the first request to the last answer."""
    started = time.monotonic()
    statuses = asyncio.run(post_all(port, body, jobs, concurrency, path))
    return statuses, time.monotonic() - started


# --- CPU of the processes ----------------------------------------------------------------------------------


def cpu_s(pids: list[int]) -> dict[int, tuple[float, float]]:
    """(utime, stime) of each live process, in seconds."""
    times = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        times[pid] = (int(fields[11]) * TICK_S, int(fields[12]) * TICK_S)  # fields 14 and 15 of proc(5)
    return times


def broker_pid(port: int) -> int | None:
    """The Erlang VM listening on the broker's port (read only: the broker is the machine's, not ours to stop).
    Not just any `beam.smp`: each `rabbitmqctl` runs one too, and a containerised broker may run beside it."""
    sockets = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # 0A: listening
                sockets.add(f"socket:[{fields[9]}]")
    for comm in Path("/proc").glob("[0-9]*/comm"):
        try:
            if comm.read_text().strip() == "beam.smp" and any(
                os.readlink(fd) in sockets for fd in (comm.parent / "fd").iterdir()
            ):
                return int(comm.parent.name)
        except OSError:
            continue
    return None


@dataclass
class CpuMeter:
    groups: dict[str, list[int]]  # process kind -> PIDs

    def __post_init__(self) -> None:
        self.started = {kind: cpu_s(pids) for kind, pids in self.groups.items()}
        self.client_started = time.process_time()

    def ms_per_job(self, jobs: int) -> dict[str, float]:
        """utime + stime a job, by kind, and the client's (this process)."""
        used = {
            kind: sum(self._used_s(kind, 0).values()) + sum(self._used_s(kind, 1).values())
            for kind in self.groups
        }
        used["client"] = time.process_time() - self.client_started
        return {kind: seconds * 1000 / max(jobs, 1) for kind, seconds in used.items()}

    def system_ms_per_job(self, jobs: int) -> dict[str, float]:
        """stime a job, by kind: the kernel's part (system calls, thread wake-ups)."""
        return {kind: sum(self._used_s(kind, 1).values()) * 1000 / max(jobs, 1) for kind in self.groups}

    def split(self, kind: str) -> list[float]:
        """CPU seconds of each process of a kind since the start, largest first (how evenly the work spread)."""
        user, system = self._used_s(kind, 0), self._used_s(kind, 1)
        return sorted((seconds + system.get(pid, 0.0) for pid, seconds in user.items()), reverse=True)

    def _used_s(self, kind: str, part: int) -> dict[int, float]:
        """utime (`part` 0) or stime (1) of each process of a kind since the start."""
        started = self.started[kind]
        return {
            pid: now[part] - started.get(pid, (0.0, 0.0))[part]
            for pid, now in cpu_s(self.groups[kind]).items()
        }


# --- profiles ---------------------------------------------------------------------------------------------


@contextmanager
def profiled(groups: dict[str, list[int]], folder: Path | None, jobs: int) -> Iterator[None]:
    """py-spy on every Python process of `groups` while the block runs (nothing when `folder` is None); then
    each process's heaviest functions, where they ran themselves and where they were on the stack, in samples
    and in milliseconds a job (of `jobs`), in `folder`/summary.md."""
    if folder is None:
        yield
        return
    folder.mkdir(parents=True, exist_ok=True)
    spy = str(Path(sys.executable).with_name("py-spy"))
    recorders = {}
    for kind, pids in groups.items():
        for pid in pids:
            if "python" not in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode():
                continue  # the broker's Erlang VM
            output = folder / f"{kind.split()[0].lower()}-{pid}.txt"
            command = [spy, "record", "--pid", str(pid), "--format", "raw", "--output", str(output)]
            # The API and the workers: samples holding the GIL (their CPU; an idle thread waiting on a lock is
            # not told apart without it). nx-27017: every sample, its SQLite commits release the GIL.
            gil = [] if kind.startswith("nx") else ["--gil"]
            command += [*gil, "--nonblocking", "--rate", str(PROFILE_RATE)]
            recorders[output] = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    try:
        yield
    finally:
        for recorder in recorders.values():
            recorder.send_signal(signal.SIGINT)  # py-spy writes what it sampled on SIGINT
        for recorder in recorders.values():
            recorder.wait(timeout=60)
        (folder / "summary.md").write_text("\n".join(profile_summary(output, jobs) for output in recorders))


def profile_summary(output: Path, jobs: int, top: int = 20) -> str:
    """The functions with most samples of a py-spy raw file: as the running frame, and anywhere on the stack;
    each also in milliseconds a job (a sample stands for 1/PROFILE_RATE s)."""
    own: Counter[str] = Counter()
    anywhere: Counter[str] = Counter()
    total = 0
    for line in output.read_text().splitlines() if output.exists() else []:
        stack, _, count = line.rpartition(" ")
        frames = [frame.rsplit(":", 1)[0] for frame in stack.split(";")[1:]]  # without the thread, the line
        if not frames:
            continue
        total += int(count)
        own[frames[-1]] += int(count)
        for frame in set(frames):
            anywhere[frame] += int(count)

    def rows(counts: Counter[str]) -> list[str]:
        return [
            f"| {100 * n / max(total, 1):.1f} | {n * 1000 / PROFILE_RATE / max(jobs, 1):.3f} | `{frame}` |"
            for frame, n in counts.most_common(top)
        ]

    ms = total * 1000 / PROFILE_RATE / max(jobs, 1)
    return "\n".join(
        [f"## {output.stem} ({total} samples, {ms:.3f} ms a job of {jobs})\n", "| % self | ms a job | function |",
         "|---|---|---|", *rows(own), "", "| % on stack | ms a job | function |", "|---|---|---|", *rows(anywhere), ""]
    )  # fmt: skip


@contextmanager
def counting_ops(env: dict[str, str], folder: Path | None) -> Iterator[dict[str, str]]:
    """The environment that makes a case's Python processes count their store commands and AMQP methods
    (op_counts/sitecustomize.py) into `folder`; unchanged when `folder` is None."""
    if folder is None:
        yield env
        return
    folder.mkdir(parents=True, exist_ok=True)
    path = os.pathsep.join([str(HERE / "op_counts"), env.get("PYTHONPATH", "")])
    yield env | {"PYTHONPATH": path, "OP_COUNTS_DIR": str(folder)}


def op_counts(folder: Path, groups: dict[str, list[int]], jobs: int) -> dict[str, dict[str, float]]:
    """Store commands and AMQP methods a job, by kind of process (from what each process counted)."""
    kinds = {pid: kind for kind, pids in groups.items() for pid in pids}
    totals: dict[str, Counter[str]] = {}
    for counts in folder.glob("*.json"):
        kind = kinds.get(int(counts.stem), "other")
        totals.setdefault(kind, Counter()).update(json.loads(counts.read_text()))
    return {
        kind: {op: n / max(jobs, 1) for op, n in sorted(counted.items())} for kind, counted in totals.items()
    }


def ops_summary(
    case: str, ops: dict[str, dict[str, float]], cpu_ms: dict[str, float], system_ms: dict[str, float]
) -> str:
    """A case's operations a job by process, and its CPU a job with the kernel's part of it."""
    lines = [f"## {case}\n", "| process | CPU ms a job | of which system |", "|---|---|---|"]
    lines += [f"| {kind} | {cpu_ms[kind]:.2f} | {system_ms[kind]:.2f} |" for kind in system_ms]
    lines += ["", "| process | operation | a job |", "|---|---|---|"]
    for kind, counted in ops.items():
        lines += [f"| {kind} | {op} | {n:.3f} |" for op, n in counted.items() if n >= 0.0005]
    return "\n".join(lines) + "\n\n"


# --- one case ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bench:
    env: dict[
        str, str
    ]  # the packaged model's (BENTOML_HOME, DATA_DIR, MODEL_NAME) and the server environment
    mongo_url: str
    nx_pid: int
    broker: str
    work: Path
    args: argparse.Namespace


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, stdout=subprocess.DEVNULL)


@contextmanager
def virtual_host(broker: str) -> Iterator[str]:
    """A RabbitMQ virtual host of its own for a case, with the broker URL's user, deleted with everything in it
    afterwards; yields its URL. Through `rabbitmqctl`: the broker is this machine's."""
    parts = urlsplit(broker)
    name = f"nbship-bench-{uuid.uuid4().hex[:8]}"
    rabbitmqctl("add_vhost", name)
    try:
        rabbitmqctl("set_permissions", "-p", name, parts.username or "guest", ".*", ".*", ".*")
        yield parts._replace(path="/" + quote(name, safe="")).geturl()
    finally:
        rabbitmqctl("delete_vhost", name)


def consumers(amqp_url: str, queue: str) -> int:
    """Consumers of `queue`; 0 while nobody has declared it."""
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        return connection.channel().queue_declare(queue, passive=True).method.consumer_count
    except pika.exceptions.ChannelClosedByBroker:
        return 0
    finally:
        if connection.is_open:
            connection.close()


class Stamps(Protocol):
    """Where a case's jobs say when they were submitted and when they succeeded."""

    def finished(self) -> int:
        """Jobs finished so far: one cheap count, asked once a second while the case drains."""
        ...

    def times(self) -> list[tuple[float, float]]:
        """(submitted, succeeded) of each job that succeeded, in epoch seconds."""
        ...


@dataclass
class JobStamps:
    """The job documents of the job layer and the classic workers: `created_at` and `finished_at`."""

    store: JobStore

    def finished(self) -> int:
        return self.store.counts(("succeeded",))["succeeded"]

    def times(self) -> list[tuple[float, float]]:
        documents = self.store._jobs.find(
            {"status": {"$eq": "succeeded"}}, {"created_at": 1, "finished_at": 1}
        )
        return [(doc["created_at"].timestamp(), doc["finished_at"].timestamp()) for doc in documents]


@dataclass
class CeleryStamps:
    """Celery's result documents: the front's `submitted_at`, returned by the task, and `date_done`."""

    results: Collection

    def finished(self) -> int:
        # Every document: the peer's worker writes only final states (no `task_track_started`).
        return int(self.results.database.command("count", self.results.name)["n"])

    def times(self) -> list[tuple[float, float]]:
        documents = self.results.find({"status": {"$eq": "SUCCESS"}}, {"result": 1, "date_done": 1})
        return [
            (json.loads(doc["result"])["submitted_at"], doc["date_done"].timestamp()) for doc in documents
        ]


@dataclass
class Served:
    port: int
    meter: CpuMeter
    stamps: Stamps


@contextmanager
def served_case(bench: Bench, case: str, tag: str, counts: Path | None) -> Iterator[Served]:
    """The case's processes on a virtual host and a database of their own; yields them once every process is
    ready, with a CPU meter started then. `counts`: a folder where each process counts its operations."""
    with ExitStack() as stack:
        amqp_url = stack.enter_context(virtual_host(bench.broker))
        env = stack.enter_context(counting_ops(bench.env | {"PYTHONPATH": python_path()}, counts))
        start = celery_processes if case == CELERY else job_layer_processes
        port, groups, stamps = start(bench, case, amqp_url, env, tag, stack)
        beam = broker_pid(urlsplit(amqp_url).port or 5672)
        processes = {API: groups[API], STORE: [bench.nx_pid], BROKER: [beam] if beam else []}
        yield Served(port, CpuMeter(processes | {WORKERS_KIND: groups[WORKERS_KIND]}), stamps)


def python_path() -> str:
    """The project, tests/ (support) and tests/benchmarks/ (the classic worker's and the peer's modules)."""
    return os.pathsep.join([str(ROOT), str(ROOT / "tests"), str(HERE)])


def tree(process: subprocess.Popen) -> list[int]:
    return [process.pid, *descendants(process.pid)]


def job_layer_processes(
    bench: Bench, case: str, amqp_url: str, env: dict[str, str], tag: str, stack: ExitStack
) -> tuple[int, dict[str, list[int]], Stamps]:
    """`bentoml serve` (with its no-op route) and the case's 2 workers: job workers or classic ones."""
    # The job worker's defaults: prefetch 256, B = 256 rows; T = 20 ms. Sweeps at the defaults too.
    settings = fresh_job_settings(
        bench.mongo_url, amqp_url, prefetch=256, batch_size=256, batch_wait_ms=20, lease_s=60.0,
        sweep_interval_s=5.0, publish_grace_s=10.0, evidence=case != BARE,
    )  # fmt: skip
    env = env | settings_env(settings) | {"WORKERS": str(WORKERS)}
    port = free_port()
    serve = [
        str(Path(sys.executable).with_name("bentoml")),
        "serve",
        NOOP_SERVICE,
        "--working-dir",
        str(HERE),
    ]
    serve += ["--host", "127.0.0.1", "--port", str(port)]
    if case in (OURS, BARE):
        worker = [sys.executable, "-m", "service.jobs.worker"]
    else:
        worker = [sys.executable, str(Path(__file__).resolve()), "classic-worker"]
    ready = http_ok(f"http://127.0.0.1:{port}/readyz")
    service = stack.enter_context(
        running(serve, ready, "the service", bench.work / f"serve-{tag}.log", 180, env=env, cwd=ROOT)
    )
    workers = [
        stack.enter_context(
            running(worker, lambda: True, "a worker", bench.work / f"worker-{tag}.log", env=env, cwd=ROOT)
        )
        for _ in range(WORKERS)
    ]
    wait_until(lambda: consumers(amqp_url, settings.job_queue) >= WORKERS, 180, "the workers")
    store = connect_store(settings)
    stack.callback(store.close)
    groups = {API: tree(service), WORKERS_KIND: [pid for w in workers for pid in tree(w)]}
    return port, groups, JobStamps(store)


def celery_processes(
    bench: Bench, case: str, amqp_url: str, env: dict[str, str], tag: str, stack: ExitStack
) -> tuple[int, dict[str, list[int]], Stamps]:
    """The Celery peer: its worker (once both of its processes have loaded the model) and its front (once both
    of its workers have started), on a database of its own."""
    import celery_peer

    database = f"celery{uuid.uuid4().hex[:12]}"
    env = env | {
        "PEER_BROKER_URL": amqp_url,
        "PEER_BACKEND_URL": f"{bench.mongo_url}/{database}?journal=true",
    }
    worker_log, front_log = bench.work / f"celery-worker-{tag}.log", bench.work / f"celery-front-{tag}.log"
    loaded = celery_peer.PROCESSES

    def worker_ready() -> bool:
        return (
            worker_log.read_text().count(celery_peer.MODEL_LOADED) >= loaded
            and consumers(amqp_url, "celery") > 0
        )

    worker = stack.enter_context(
        running([sys.executable, str(HERE / "celery_peer.py"), "worker"], worker_ready, "the Celery worker",
                worker_log, 180, env=env, cwd=ROOT)
    )  # fmt: skip
    port = free_port()
    uvicorn = [str(Path(sys.executable).with_name("uvicorn")), "--factory", "celery_peer:front"]
    uvicorn += ["--workers", str(WORKERS), "--host", "127.0.0.1", "--port", str(port), "--no-access-log"]
    front = stack.enter_context(
        running(uvicorn, lambda: front_log.read_text().count("Application startup complete") >= WORKERS,
                "the Celery front", front_log, 180, env=env, cwd=ROOT)
    )  # fmt: skip
    client: MongoClient = MongoClient(bench.mongo_url, tz_aware=True)
    stack.callback(client.close)
    results = client[database]["celery_taskmeta"]
    return port, {API: tree(front), WORKERS_KIND: tree(worker)}, CeleryStamps(results)


def single_row_case(bench: Bench, case: str, run: int, concurrency: int, body: bytes) -> dict[str, Any]:
    args = bench.args
    tag = f"{run}-{concurrency}-{CASES.index(case)}"
    folder = args.profile / f"c{concurrency}-run{run + 1}" if args.profile else None
    counts = folder / f"ops-{CASES.index(case)}" if folder else None
    with served_case(bench, case, tag, counts) as served:
        spied = folder / "jobs" if folder and case == OURS else None
        with profiled(served.meter.groups, spied, args.jobs):
            statuses, submit_s = timed_posts(served.port, body, args.jobs, concurrency)
            drain(served.stamps, statuses[202], args.cap_s)
        times = served.stamps.times()
        figures = case_figures(times, statuses, submit_s)
        figures["cpu_ms"] = served.meter.ms_per_job(len(times))
        figures["api_split"] = served.meter.split(API)
        if folder and counts:
            figures["ops"] = op_counts(counts, served.meter.groups, len(times))
            figures["system_ms"] = served.meter.system_ms_per_job(len(times))
            with (folder / "ops.md").open("a") as out:
                out.write(ops_summary(case, figures["ops"], figures["cpu_ms"], figures["system_ms"]))
        if case == OURS:
            figures["groups"] = submit_groups(served.port)
            noop_folder = folder / "noop" if folder else None
            figures["noop_ms"], figures["noop_rps"] = noop_cpu(
                served, body, args.jobs, concurrency, noop_folder
            )
            figures["bulk_s"] = bulk_case(served.port)
    return figures


def drain(stamps: Stamps, accepted: int, cap_s: float) -> None:
    """Until every accepted job finished, or `cap_s` after the submissions. Polled rarely, with one cheap count:
    the store serves one command at a time, polling must not slow the workers."""
    deadline = time.monotonic() + cap_s
    while stamps.finished() < accepted and time.monotonic() < deadline:
        time.sleep(1)


def case_figures(times: list[tuple[float, float]], statuses: Counter[int], submit_s: float) -> dict[str, Any]:
    latency_ms = [(finished - submitted) * 1000 for submitted, finished in times]
    wall = max(finished for _, finished in times) - min(submitted for submitted, _ in times)
    return {
        "statuses": dict(statuses),
        "done": len(times),
        "accepted_per_s": statuses[202] / submit_s,
        "jobs_per_s": len(times) / wall,
        "p50_ms": float(np.percentile(latency_ms, 50)),
        "p99_ms": float(np.percentile(latency_ms, 99)),
        "wall_s": wall,
        "submit_s": submit_s,
        "load": os.getloadavg()[0],
    }


def noop_cpu(
    served: Served, body: bytes, requests: int, concurrency: int, folder: Path | None
) -> tuple[float, float]:
    """The API's CPU milliseconds a request of the service's no-op route (the same body, parsed, nothing done),
    and its requests a second: what HTTP alone costs on this service."""
    api = {API: served.meter.groups[API]}
    meter = CpuMeter(api)
    with profiled(api, folder, requests):
        statuses, seconds = timed_posts(served.port, body, requests, concurrency, NOOP_PATH)
    return meter.ms_per_job(statuses[200])[API], statuses[200] / seconds


def submit_groups(port: int) -> tuple[int, float] | None:
    """Group commits of the service's submissions and their mean size, from /metrics (None: no such metric,
    the code before group commit: one insert per job)."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=30).text
    values = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in ("nbship_job_submit_group_size_count", "nbship_job_submit_group_size_sum"):
            values[name] = float(value)
    if len(values) < 2:
        return None
    count = int(values["nbship_job_submit_group_size_count"])
    return count, values["nbship_job_submit_group_size_sum"] / max(count, 1)


def bulk_case(port: int) -> float:
    """One job of 10,000 rows through the same API: seconds from its submission to its success (store stamps)."""
    body = {"instances": np.resize(digit_rows(), (10_000, 64)).tolist()}
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as client:
        answer = client.post("/jobs", json=body)
        answer.raise_for_status()
        url = answer.json()["url"]
        deadline = time.monotonic() + 120
        while (job := client.get(url).json())["status"] != "succeeded":
            if job["status"] == "failed" or time.monotonic() > deadline:
                raise RuntimeError(f"bulk job did not succeed: {job}")
            time.sleep(0.1)
    return float(job["timings"]["total_s"])


def digit_rows() -> np.ndarray:
    from sklearn.datasets import load_digits

    return np.asarray(load_digits().data, dtype=np.float32)


# --- the report --------------------------------------------------------------------------------------------

Results = dict[int, dict[str, list[dict[str, Any]]]]  # concurrency -> case -> the runs' figures


def spread(values: list[float], digits: int = 0) -> str:
    """The median, then the range of the runs."""
    fmt = f"{{:.{digits}f}}"
    median = fmt.format(statistics.median(values))
    return f"{median} ({fmt.format(min(values))}-{fmt.format(max(values))})"


def render(results: Results, args: argparse.Namespace) -> str:
    runs = len(next(iter(next(iter(results.values())).values())))
    lines = [
        header("Jobs benchmark"),
        f"{args.jobs} single-row jobs through `POST /jobs` at concurrency "
        f"{' and '.join(str(c) for c in results)} (keep-alive connections), each case drained by {WORKERS} "
        "processes that predict, on a RabbitMQ virtual host and a database of its own (one nx-27017, the "
        f"local RabbitMQ): the **job workers** behind `bentoml serve` with {WORKERS} API workers (`python -m "
        "service.jobs.worker`: prefetch 256, B=256 rows, T=20 ms); the **classic workers** of the RabbitMQ "
        "tutorial behind the same service (prefetch_count=1, one read, one predict and one journaled update per "
        f"message); **Celery** 5 (tests/benchmarks/celery_peer.py): a FastAPI front on uvicorn with {WORKERS} "
        f"workers, one `celery worker --concurrency {WORKERS}` (prefork) with `task_acks_late`, "
        "`task_reject_on_worker_lost`, `worker_prefetch_multiplier=1`, publisher confirms, and the MongoDB "
        "result backend writing journaled. Model: the digits MLP packaged by `pipeline package`, on the same "
        "fast path in every case.\n",
        "accepted/s: 202 answers a second of submission (first request to last answer). jobs/s: finished jobs "
        "over the time from the first submission to the last success; p50/p99 from submission to success. "
        "Stamps: job layer and classic, `created_at` (the API, building the job) and `finished_at` (the store, "
        "`$currentDate`); Celery, `submitted_at` (the front, before `delay`) and `date_done` (the worker, "
        f"storing the result). A case is stopped {args.cap_s:.0f} s after its submissions end; its rate is then "
        f"over the jobs it finished. Median of {runs} runs, range in brackets.\n",
    ]
    for concurrency, cases in results.items():
        lines += concurrency_section(concurrency, cases, args)
    lines += every_run(results)
    lines += footnotes(results)
    return "\n".join(lines)


def concurrency_section(
    concurrency: int, cases: dict[str, list[dict[str, Any]]], args: argparse.Namespace
) -> list[str]:
    lines = [
        f"## Concurrency {concurrency}\n",
        "| case | finished (of submitted) | accepted/s | jobs/s | p50 ms | p99 ms | first submit to last success s "
        "| submissions s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for case, runs in cases.items():
        done = "/".join(f"{r['done']}" for r in runs)
        lines.append(
            f"| {case} | {done} (of {args.jobs}) | {spread([r['accepted_per_s'] for r in runs])} "
            f"| {spread([r['jobs_per_s'] for r in runs])} | {spread([r['p50_ms'] for r in runs])} "
            f"| {spread([r['p99_ms'] for r in runs])} | {spread([r['wall_s'] for r in runs], 1)} "
            f"| {spread([r['submit_s'] for r in runs], 1)} |"
        )
    ours = cases.get(OURS, [])
    for peer in (BARE, CLASSIC, CELERY):
        if not ours or not cases.get(peer):
            continue
        for figure in ("jobs_per_s", "accepted_per_s") if peer == BARE else ("jobs_per_s",):
            ratios = [o[figure] / p[figure] for o, p in zip(ours, cases[peer], strict=True)]
            lines.append(
                f"\nJob workers / {peer}, {figure.replace('_per_s', '/s')}, per run then median: "
                f"{', '.join(f'{r:.2f}x' for r in ratios)}; **{statistics.median(ratios):.2f}x**."
            )
    if not ours:
        return lines
    kinds = list(ours[0]["cpu_ms"])
    lines += [
        "\nCPU milliseconds per finished job, by process (utime + stime, children included; `client` is this "
        "benchmark's own HTTP client):\n",
        "| case | " + " | ".join(kinds) + " | sum |",
        "|---|" + "---|" * (len(kinds) + 1),
    ]
    for case, runs in cases.items():
        cells = [spread([r["cpu_ms"][kind] for r in runs], 2) for kind in kinds]
        total = spread([sum(r["cpu_ms"].values()) for r in runs], 2)
        lines.append(f"| {case} | " + " | ".join(cells) + f" | {total} |")
    noop = [r["noop_ms"] for r in ours]
    api = [r["cpu_ms"][API] for r in ours]
    lines.append(
        f"\nThe service's API CPU a job of `POST /jobs` against a request of its no-op route (`{NOOP_PATH}`, the "
        f"same body parsed, nothing done; {spread([r['noop_rps'] for r in ours])} requests/s): "
        f"{spread(api, 2)} against {spread(noop, 2)} ms, "
        f"{spread([a / n for a, n in zip(api, noop, strict=True)], 2)}x.\n"
    )
    return lines


def every_run(results: Results) -> list[str]:
    kinds = [API, STORE, BROKER, WORKERS_KIND, "client"]
    lines = [
        "## Every run\n",
        "CPU ms a job by process: API or front, nx-27017, RabbitMQ, workers, client; load: the 1-minute load "
        "average at the end of the case.\n",
        "| run | c | case | accepted/s | jobs/s | p50 ms | p99 ms | API | nx | RabbitMQ | workers | client | sum "
        "| load |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for concurrency, cases in results.items():
        for case, runs in cases.items():
            for number, r in enumerate(runs, 1):
                cpu = " | ".join(f"{r['cpu_ms'][kind]:.2f}" for kind in kinds)
                lines.append(
                    f"| {number} | {concurrency} | {case} | {r['accepted_per_s']:.0f} | {r['jobs_per_s']:.0f} "
                    f"| {r['p50_ms']:.0f} | {r['p99_ms']:.0f} | {cpu} | {sum(r['cpu_ms'].values()):.2f} "
                    f"| {r['load']:.1f} |"
                )
    return lines


def footnotes(results: Results) -> list[str]:
    statuses = Counter[int]()
    loads = []
    lines = [""]
    for concurrency, cases in results.items():
        for case, runs in cases.items():
            for run in runs:
                statuses.update(run["statuses"])
                loads.append(run["load"])
            splits = "; ".join(
                " + ".join(f"{seconds:.1f}" for seconds in run["api_split"] if seconds >= 0.05)
                for run in runs
            )
            commits = "; ".join(
                f"{g[0]} inserts, {g[1]:.1f} jobs each" for run in runs if (g := run.get("groups"))
            )
            groups = f" Group commits per run: {commits}." if commits else ""
            lines.append(
                f"c={concurrency}, {case}: API or front processes' CPU s per run (largest first): {splits}.{groups}"
            )
    bulk = [run["bulk_s"] for cases in results.values() for run in cases.get(OURS, [])]
    lines += [
        f"\nHTTP statuses over all runs: {dict(sorted(statuses.items()))}. Load average (1 min) at the end of each "
        f"case: {spread(loads, 1)}.\n",
        f"Bulk: one job of 10,000 rows through the job layer's `POST /jobs`, submission to success: "
        f"{spread(bulk, 2)} s ({len(bulk)} runs).\n",
    ]
    return lines


def write_report(out: Path, report: str) -> None:
    """`report` in place of the figures above KEPT, keeping the notes below it."""
    kept = out.read_text().partition(KEPT)[2] if out.exists() else ""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(f"{report}\n{KEPT}{kept or chr(10)}")


def main(argv: list[str]) -> int:
    if argv[:1] == ["classic-worker"]:
        return classic_worker()
    parser = argparse.ArgumentParser(prog="run.py jobs", description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument(
        "--concurrency", type=lambda text: [int(c) for c in text.split(",")], default=[32, 128],
        help="connections of the client, a comma-separated list: each case runs at each",
    )  # fmt: skip
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--cases", type=lambda text: [CASES[int(i)] for i in text.split(",")], default=list(CASES),
        help="which cases, by number: 0 job workers, 1 the same with records off, 2 classic, 3 Celery",
    )  # fmt: skip
    parser.add_argument(
        "--cap-s", type=float, default=60.0, help="stop a case this long after its submissions"
    )
    parser.add_argument("--out", type=Path, default=DOCS / "jobs.md")
    parser.add_argument(
        "--profile", type=Path, default=None,
        help="py-spy the job layer's processes and count every case's store and broker operations into this folder",
    )  # fmt: skip
    args = parser.parse_args(argv)
    from service.models.quiet import quiet

    quiet()
    row = digit_rows()[:1].tolist()
    body = f'{{"instances": {row}}}'.encode()
    results: Results = {c: {case: [] for case in args.cases} for c in args.concurrency}
    with tempfile.TemporaryDirectory(prefix="nbship-jobs-bench-") as tmp:
        work = Path(tmp)
        subject = digits({"BENTOML_HOME": str(work / "bentoml")}, work / "digits-store")
        env = server_env(subject.env)
        broker = ensure_broker()
        with ExitStack() as stack:
            if os.environ.get("MONGO_URL"):
                mongo_url, nx_pid = os.environ["MONGO_URL"], 0
            else:
                mongo_url = stack.enter_context(nx_server(work / "nx", free_port()))
                nx_pid = int((work / "nx" / "nx.pid").read_text())
            bench = Bench(env, mongo_url, nx_pid, broker, work, args)
            for run in range(args.runs):
                for concurrency in args.concurrency:
                    for case in args.cases:
                        figures = single_row_case(bench, case, run, concurrency, body)
                        results[concurrency][case].append(figures)
                        print(
                            f"run {run + 1}, c={concurrency}, {case}: {figures}", file=sys.stderr, flush=True
                        )
    report = render(results, args)
    write_report(args.out, report)
    print(report)
    return 0


if __name__ == "__main__":  # a classic worker process (PYTHONPATH: the project, tests/ and tests/benchmarks/)
    raise SystemExit(main(sys.argv[1:]))
