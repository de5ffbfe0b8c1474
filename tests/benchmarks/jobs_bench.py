"""Job layer benchmark through HTTP: `./noxw -s bench -- jobs [--jobs N] [--concurrency C] [--runs R] [--cap-s S]`.

5,000 single-row jobs sent to `POST /jobs` at concurrency 32 (keep-alive connections) of `bentoml serve` with 2 API
workers, drained by (1) 2 job workers (`python -m service.jobs.worker`) and (2) 2 classic workers of the RabbitMQ
tutorial (prefetch_count=1, one predict and one store update per message), fed through the same HTTP submission;
then the bulk case: one job of 10,000 rows. Each case has a service, a database and queues of its own, on the
same nx-27017 process (or MONGO_URL) and the local RabbitMQ, with the digits model packaged into a private BentoML
home (serve_bench's `digits`). jobs/s: finished jobs over the time from the first submission to the last success
(store stamps); a case still draining `--cap-s` seconds after its first submission is stopped and its rate is over
the jobs it finished. CPU per job: utime + stime from /proc of each process (and its children) between the moment
the case's processes are ready and the end of the case. Median of `--runs` runs, with the spread. Writes
docs/benchmarks/jobs.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pika
from common import DOCS, ROOT, header
from serve_bench import digits, server_env
from support.job_servers import delete_queues, ensure_broker, fresh_job_settings, nx_server, settings_env
from support.processes import descendants, free_port, http_ok, running, wait_until

from service.jobs.queue import JobMessage, connection_parameters, declare_queues
from service.jobs.store import JobStore, connect_store
from service.settings import JobSettings

CASES = ("job workers", "classic workers (tutorial)")
WORKERS = 2  # API workers, and job workers of each kind
TICK_S = 1 / os.sysconf("SC_CLK_TCK")


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
        rows = np.frombuffer(document["inputs"], dtype="<f4").reshape(document["n_rows"], -1)
        result = self._model.contract.answer(self._model.predict(rows))
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


async def post_all(port: int, body: bytes, jobs: int, concurrency: int) -> Counter[int]:
    """`jobs` POST /jobs on `concurrency` keep-alive connections; the status counts. Plain asyncio streams: an
    HTTP client library would cost this machine's two cores more than the API's own parsing."""
    request = (
        f"POST /jobs HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
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


# --- CPU of the processes ----------------------------------------------------------------------------------


def cpu_s(pids: list[int]) -> dict[int, float]:
    """utime + stime of each live process, in seconds."""
    times = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        times[pid] = (int(fields[11]) + int(fields[12])) * TICK_S  # fields 14 and 15 of proc(5)
    return times


def beam_pid() -> int | None:
    """RabbitMQ's Erlang VM (read only: the broker is the machine's, not ours to stop)."""
    for comm in Path("/proc").glob("[0-9]*/comm"):
        try:
            if comm.read_text().strip() == "beam.smp":
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
        used = {}
        for kind, pids in self.groups.items():
            now = cpu_s(pids)
            used[kind] = sum(now[pid] - self.started[kind].get(pid, 0.0) for pid in now) * 1000 / max(jobs, 1)
        used["client"] = (time.process_time() - self.client_started) * 1000 / max(jobs, 1)
        return used

    def split(self, kind: str) -> list[float]:
        """CPU seconds of each process of a kind since the start, largest first (how evenly the work spread)."""
        now = cpu_s(self.groups[kind])
        return sorted((now[pid] - self.started[kind].get(pid, 0.0) for pid in now), reverse=True)


# --- profiles ---------------------------------------------------------------------------------------------


@contextmanager
def profiled(groups: dict[str, list[int]], folder: Path | None) -> Iterator[None]:
    """py-spy on every Python process of `groups` while the block runs (nothing when `folder` is None); then
    each process's heaviest functions, by samples where they ran themselves and where they were on the stack,
    in `folder`/summary.md."""
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
            recorders[output] = subprocess.Popen([*command, *gil, "--nonblocking"], stdout=subprocess.DEVNULL)
    try:
        yield
    finally:
        for recorder in recorders.values():
            recorder.send_signal(signal.SIGINT)  # py-spy writes what it sampled on SIGINT
        for recorder in recorders.values():
            recorder.wait(timeout=60)
        (folder / "summary.md").write_text("\n".join(profile_summary(output) for output in recorders))


def profile_summary(output: Path, top: int = 15) -> str:
    """The functions with most samples of a py-spy raw file: as the running frame, and anywhere on the stack."""
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
        return [f"| {100 * n / max(total, 1):.1f} | `{frame}` |" for frame, n in counts.most_common(top)]

    return "\n".join(
        [f"## {output.stem} ({total} samples)\n", "| % self | function |", "|---|---|", *rows(own), "",
         "| % on stack | function |", "|---|---|", *rows(anywhere), ""]
    )  # fmt: skip


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


def consumers(settings: JobSettings) -> int:
    connection = pika.BlockingConnection(connection_parameters(settings))
    try:
        channel = connection.channel()
        declare_queues(channel, settings)
        return channel.queue_declare(settings.job_queue, passive=True).method.consumer_count
    finally:
        connection.close()


@contextmanager
def served_case(bench: Bench, case: str, tag: str) -> Iterator[tuple[int, JobSettings, CpuMeter]]:
    """The service and the case's workers on a database and queues of their own; yields the port, the
    settings and a CPU meter started once every process is ready."""
    # The job worker's defaults: prefetch 256, B = 256 rows; T = 20 ms. Sweeps at the defaults too.
    settings = fresh_job_settings(
        bench.mongo_url, bench.broker, prefetch=256, batch_size=256, batch_wait_ms=20, lease_s=60.0,
        sweep_interval_s=5.0, publish_grace_s=10.0,
    )  # fmt: skip
    env = bench.env | settings_env(settings) | {"WORKERS": str(WORKERS), "PYTHONPATH": str(ROOT)}
    port = free_port()
    serve = [str(Path(sys.executable).with_name("bentoml")), "serve", "service.service:PredictionService"]
    serve += ["--host", "127.0.0.1", "--port", str(port)]
    if case == CASES[0]:
        worker = [sys.executable, "-m", "service.jobs.worker"]
    else:
        worker = [sys.executable, str(Path(__file__).resolve()), "classic-worker"]
        env["PYTHONPATH"] += os.pathsep.join(["", str(ROOT / "tests"), str(ROOT / "tests" / "benchmarks")])
    ready = http_ok(f"http://127.0.0.1:{port}/readyz")
    with ExitStack() as stack:
        service = stack.enter_context(
            running(serve, ready, "the service", bench.work / f"serve-{tag}.log", 180, env=env, cwd=ROOT)
        )
        workers = [
            stack.enter_context(
                running(worker, lambda: True, "a worker", bench.work / f"worker-{tag}.log", env=env, cwd=ROOT)
            )
            for _ in range(WORKERS)
        ]
        wait_until(lambda: consumers(settings) >= WORKERS, 180, "the workers")
        beam = beam_pid()
        meter = CpuMeter(
            {
                "API (bentoml serve)": [service.pid, *descendants(service.pid)],
                "nx-27017": [bench.nx_pid],
                "RabbitMQ (beam.smp)": [beam] if beam else [],
                "workers": [pid for w in workers for pid in (w.pid, *descendants(w.pid))],
            }
        )
        try:
            yield port, settings, meter
        finally:
            stack.close()
            delete_queues(settings)


def single_row_case(bench: Bench, case: str, run: int, body: bytes) -> dict[str, Any]:
    args = bench.args
    with served_case(bench, case, f"{run}-{CASES.index(case)}") as (port, settings, meter):
        profile = args.profile / f"run{run + 1}" if args.profile and case == CASES[0] else None
        store = connect_store(settings)
        try:
            with profiled(meter.groups, profile):
                posting = time.monotonic()
                statuses = asyncio.run(post_all(port, body, args.jobs, args.concurrency))
                submit_s = time.monotonic() - posting
                # Poll rarely, with an index count: the server serialises commands, polling must not slow
                # the workers.
                deadline = time.monotonic() + args.cap_s
                accepted = statuses[202]
                while store.counts(("succeeded",))["succeeded"] < accepted and time.monotonic() < deadline:
                    time.sleep(1)
            documents = list(store._jobs.find({}, {"created_at": 1, "finished_at": 1}))
        finally:
            store.close()
        cpu = meter.ms_per_job(sum(1 for document in documents if "finished_at" in document))
        api_split = meter.split("API (bentoml serve)")
        groups = submit_groups(port)
        bulk = bulk_case(port) if case == CASES[0] else None
    created = [document["created_at"].timestamp() for document in documents]
    finished = [document["finished_at"].timestamp() for document in documents if "finished_at" in document]
    latency = [
        (document["finished_at"] - document["created_at"]).total_seconds() * 1000
        for document in documents
        if "finished_at" in document
    ]
    wall = max(finished) - min(created)
    return {
        "statuses": dict(statuses),
        "done": len(finished),
        "jobs_per_s": len(finished) / wall,
        "p50_ms": float(np.percentile(latency, 50)),
        "p99_ms": float(np.percentile(latency, 99)),
        "wall_s": wall,
        "submit_s": submit_s,
        "cpu_ms": cpu,
        "bulk_s": bulk,
        "load": os.getloadavg()[0],
        "groups": groups,
        "api_split": api_split,
    }


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


def spread(values: list[float], digits: int = 0) -> str:
    """The median, then the range of the runs."""
    fmt = f"{{:.{digits}f}}"
    median = fmt.format(statistics.median(values))
    return f"{median} ({fmt.format(min(values))}-{fmt.format(max(values))})"


def render(results: dict[str, list[dict[str, Any]]], args: argparse.Namespace) -> str:
    fast, classic = (results[case] for case in CASES)
    ratios = [f["jobs_per_s"] / c["jobs_per_s"] for f, c in zip(fast, classic, strict=True)]
    lines = [
        header("Jobs benchmark"),
        f"{args.jobs} single-row jobs through `POST /jobs` at concurrency {args.concurrency} (keep-alive "
        f"connections) against `bentoml serve` with {WORKERS} API workers, drained by {WORKERS} job workers "
        f"(`python -m service.jobs.worker`: prefetch 256, B=256 rows, T=20 ms), then by {WORKERS} classic workers "
        "(prefetch_count=1, one predict and one journaled update per message) fed by the same HTTP submission; "
        "each case with a service, database and queues of its own, on one nx-27017 and the local RabbitMQ. "
        "Model: the digits MLP packaged by `pipeline package`. jobs/s: finished jobs over the time from the "
        f"first submission to the last success (store stamps). A case is stopped {args.cap_s:.0f} s after its "
        "submissions end; a stopped case's rate is over the jobs it finished (the classic case: its pace "
        f"does not change as it drains). Median of {len(fast)} runs, range in brackets.\n",
        "| workers | finished (of submitted) | jobs/s | p50 ms | p99 ms | first submit to last success s "
        "| submissions s |",
        "|---|---|---|---|---|---|---|",
    ]
    for case, runs in results.items():
        done = "/".join(f"{r['done']}" for r in runs)
        lines.append(
            f"| {case} | {done} (of {args.jobs}) | {spread([r['jobs_per_s'] for r in runs])} "
            f"| {spread([r['p50_ms'] for r in runs])} | {spread([r['p99_ms'] for r in runs])} "
            f"| {spread([r['wall_s'] for r in runs], 1)} | {spread([r['submit_s'] for r in runs], 1)} |"
        )
    lines.append(f"\nJob workers / classic workers, per run then median: {', '.join(f'{r:.1f}x' for r in ratios)}; "
                 f"**{statistics.median(ratios):.1f}x**.\n")  # fmt: skip
    kinds = list(fast[0]["cpu_ms"])
    lines += [
        "CPU milliseconds per finished job, by process (utime + stime, children included; `client` is this "
        "benchmark's own HTTP client), median of the runs:\n",
        "| workers | " + " | ".join(kinds) + " | sum |",
        "|---|" + "---|" * (len(kinds) + 1),
    ]
    for case, runs in results.items():
        cells = [spread([r["cpu_ms"][kind] for r in runs], 2) for kind in kinds]
        total = spread([sum(r["cpu_ms"].values()) for r in runs], 2)
        lines.append(f"| {case} | " + " | ".join(cells) + f" | {total} |")
    statuses = Counter[int]()
    for runs in results.values():
        for run in runs:
            statuses.update(run["statuses"])
    loads = [run["load"] for runs in results.values() for run in runs]
    for case, runs in results.items():
        groups = [run["groups"] for run in runs]
        shown = "; ".join(
            f"{g[0]} inserts, {g[1]:.1f} jobs each" if g else "one insert a job" for g in groups
        )
        splits = "; ".join(
            " + ".join(f"{seconds:.1f}" for seconds in run["api_split"] if seconds >= 0.05) for run in runs
        )
        lines.append(
            f"\n{case}: group commits per run: {shown}. API processes' CPU s per run (largest first): {splits}."
        )
    lines += [
        f"\nHTTP statuses over all runs: {dict(sorted(statuses.items()))}. Load average (1 min) at the end of each "
        f"case: {spread(loads, 1)}.\n",
        f"Bulk: one job of 10,000 rows through `POST /jobs`, submission to success: "
        f"{spread([r['bulk_s'] for r in fast], 2)} s.\n",
    ]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if argv[:1] == ["classic-worker"]:
        return classic_worker()
    parser = argparse.ArgumentParser(prog="run.py jobs", description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--cap-s", type=float, default=60.0, help="stop a case this long after its submissions"
    )
    parser.add_argument("--out", type=Path, default=DOCS / "jobs.md")
    parser.add_argument(
        "--profile", type=Path, default=None, help="py-spy the job workers' case's processes into this folder"
    )
    args = parser.parse_args(argv)
    from service.models.quiet import quiet

    quiet()
    row = digit_rows()[:1].tolist()
    body = f'{{"instances": {row}}}'.encode()
    results: dict[str, list[dict[str, Any]]] = {case: [] for case in CASES}
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
                for case in CASES:
                    figures = single_row_case(bench, case, run, body)
                    results[case].append(figures)
                    print(f"run {run + 1}, {case}: {figures}", file=sys.stderr, flush=True)
    report = render(results, args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report)
    print(report)
    return 0


if __name__ == "__main__":  # a classic worker process (PYTHONPATH: the project, tests/ and tests/benchmarks/)
    raise SystemExit(main(sys.argv[1:]))
