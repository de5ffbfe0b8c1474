"""Chaos soak: `./noxw -s chaos [-- --jobs N --concurrency C --kill-every-s S]` (see tests/support/chaos.py).

Three phases in one invocation, each on a stack of its own: a baseline without faults; the soak: workers SIGKILLed
every few seconds (only working ones) and restarted, RabbitMQ restarted once, nx-27017 killed and restarted once;
frequent kills: workers holding batches killed as often as restarts allow, so that jobs lose leases again and
again (the lease budget, not the attempts budget). Workers serve the project's @champion (DATA_DIR). Writes docs/benchmarks/chaos.md and
exits 1 if the job layer's contract did not hold.
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import sys
import tempfile
from pathlib import Path

from common import DOCS, header
from support.chaos import ChaosConfig, HeavierChampion, PhaseResult, frequent_kills, run_phase
from support.job_servers import ensure_broker

from service.settings import JobSettings


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="run.py chaos", description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--kill-every-s", type=float, default=5.0)
    parser.add_argument("--frequent-kill-every-s", type=float, default=1.0)
    args = parser.parse_args(argv)
    from service.models.quiet import quiet

    quiet()
    amqp_url = ensure_broker()
    base = ChaosConfig(
        jobs=args.jobs, concurrency=args.concurrency, workers=args.workers, kill_every_s=args.kill_every_s
    )
    work = Path(tempfile.mkdtemp(prefix="nbship-chaos-"))
    env = dict(os.environ)
    results = []
    phases = {
        "baseline": ChaosConfig(**{**base.__dict__, "faults": False}),
        "chaos": base,
        "frequent kills": frequent_kills(base, args.frequent_kill_every_s),
    }
    for name, config in phases.items():
        result = run_phase(config, env, work / name.replace(" ", "-"), amqp_url)
        print(f"{name}: {summary(result)}", file=sys.stderr)
        results.append((name, result))
    report = render(base, results)
    DOCS.mkdir(parents=True, exist_ok=True)
    (DOCS / "chaos.md").write_text(report)
    print(report)
    problems = [f"{name}: {problem}" for name, result in results for problem in result.problems()]
    if not dict(results)["frequent kills"].reclaimed:
        problems.append(
            "frequent kills: no kill cost a lease (the phase tested nothing the chaos phase did not)"
        )
    if problems:
        print("\n".join(["the contract did not hold:", *problems, f"logs: {work}"]), file=sys.stderr)
        return 1
    shutil.rmtree(work, ignore_errors=True)
    return 0


def summary(result: PhaseResult) -> str:
    return (
        f"accepted {result.accepted}, {dict(result.answers())} retried, faults "
        f"{[(f.kind, round(f.at_s, 1)) for f in result.faults]}, states {result.statuses}, writes "
        f"{result.result_writes}, queues {result.queues}, {result.wall_s:.1f} s, problems {result.problems()}"
    )


def render(config: ChaosConfig, results: list[tuple[str, PhaseResult]]) -> str:
    phases = dict(results)
    baseline, chaos, frequent = phases["baseline"], phases["chaos"], phases["frequent kills"]
    often = frequent.config
    job = JobSettings(_env_file=None)  # type: ignore[call-arg]  # the defaults the soak runs with
    lines = [
        header("Chaos soak", command="./noxw -s chaos"),
        f"{config.jobs} jobs of 1 to {config.max_rows} rows submitted through `POST /jobs` of the served service at "
        f"concurrency {config.concurrency}, each with its own Idempotency-Key; a client retries a 503 or a "
        "transport error with the same key (backoff 0.1 s doubling to 2 s); a job counts as accepted at its 202. "
        f"Stack per phase on 127.0.0.1: nx-27017 (fresh data dir), the service (1 server worker), "
        f"{config.workers} job workers (`python -m service.jobs.worker`, the @champion Keras model), the local "
        f"RabbitMQ (queues of the phase's own). Job settings: the defaults (prefetch {job.prefetch}, "
        f"B={job.batch_size} rows, T={job.batch_wait_ms} ms, {job.max_attempts} attempts, "
        f"{job.max_lease_losses} lost leases, publish grace "
        f"{job.publish_grace_s:.0f} s) but the lease, {config.lease_s:.0f} s instead of 60 s, and the sweep "
        f"interval, {config.sweep_interval_s:.0f} s instead of 5 s, so that a killed worker's batch is taken "
        "over within the run.\n",
        "Faults, during the submission only (the drain that follows is left alone): at most every "
        f"{config.kill_every_s:.0f} s a SIGKILL of one worker chosen at random among the *working* ones (its "
        "finished-jobs counter moved in the last 0.25 s poll) while the store shows jobs running (a batch in "
        "hand), never the last worker up (a new worker loads TensorFlow and the model for about 17 s, so kills "
        "roll over the two workers), a new worker started at once in its place; "
        f"RabbitMQ restarted once at {config.broker_at:.0%} of the jobs accepted (`rabbitmqctl stop_app`, "
        f"{config.outage_s:.0f} s, `start_app`: the machine's broker is shared, so its node stays as it is); "
        f"nx-27017 SIGKILLed once at {config.store_at:.0%} and started again on the same port and data dir after "
        f"{config.outage_s:.0f} s.\n",
        f"Frequent kills, the two budgets' case: kills only, at most every {often.kill_every_s:g} s, of "
        f"{often.workers} workers serving a heavier model (the champion plus {HeavierChampion.BATCH_S * 1000:.0f} ms "
        "a micro-batch, so that a working worker holds a batch and its leases most of the time), a lease of "
        f"{often.lease_s:g} s and a sweep every {often.sweep_interval_s:g} s so that the killed workers' jobs come "
        f"back within the run, submissions paced at {often.rate:g} a second. Every kill of a worker holding jobs "
        f"costs those jobs a lost lease, which counts against MAX_LEASE_LOSSES ({job.max_lease_losses}), not "
        f"against MAX_ATTEMPTS, here {often.max_attempts}: were a lost lease to spend an attempt, every job that "
        "lost one would end `failed`. Its time is not comparable with the baseline's (another "
        "model, paced).\n",
        "| | baseline | chaos | frequent kills |",
        "|---|---|---|---|",
    ]

    def row(title: str, value: object) -> None:
        cells = " | ".join(str(value_of(result, value)) for result in (baseline, chaos, frequent))
        lines.append(f"| {title} | {cells} |")

    row("jobs accepted (202)", lambda r: f"{r.accepted} of {len(r.submissions)}")
    row(
        "client retries: 503 / transport errors", lambda r: f"{retries(r, '503')} / {retries(r, 'transport')}"
    )
    row("workers killed (SIGKILL)", lambda r: r.count("worker killed"))
    row(
        "RabbitMQ restarts / nx-27017 restarts",
        lambda r: f"{r.count('broker restarted')} / {r.count('store restarted')}",
    )
    row("final states", lambda r: states(r.statuses))
    row("result writes per job (writes: jobs)", lambda r: states(r.result_writes))
    row("prediction attempts per job (attempts: jobs)", lambda r: states(r.attempts))
    row("lost leases per job (losses: jobs)", lambda r: states(r.lease_losses))
    row("jobs that lost a lease and then succeeded", lambda r: r.reclaimed)
    row("dead-letter queue", lambda r: len(r.dead_letters) or "empty")
    row("main / retry queue at the end", lambda r: f"{r.queues['main']} / {r.queues['retry']}")
    row("processes that exited on their own", lambda r: ", ".join(r.crashed) or "none")
    row("submission phase (first submit to last 202) s", lambda r: f"{r.submit_s:.1f}")
    row("**first submit to last success** s", lambda r: f"**{r.wall_s:.1f}**")
    row("contract", lambda r: "held" if not r.problems() else "; ".join(r.problems()))
    lines.append(
        f"\nTime with faults / without: **{chaos.wall_s / baseline.wall_s:.2f}x** "
        f"({chaos.wall_s:.1f} s / {baseline.wall_s:.1f} s).\n"
    )
    lines += [
        "Faults of the chaos phase (backlog: jobs queued / running in the store just before; the outage: kill to "
        "the new process started, or stop to started again):\n",
        "| at s | fault | outage s | accepted by then | backlog queued / running |",
        "|---|---|---|---|---|",
    ]
    for fault in chaos.faults:
        backlog = f"{fault.backlog['queued']} / {fault.backlog['running']}" if fault.backlog else "store down"
        lines.append(
            f"| {fault.at_s:.1f} | {fault.kind} | {fault.took_s:.1f} | {fault.accepted} | {backlog} |"
        )
    kills = [fault.at_s for fault in frequent.faults]
    gaps = [b - a for a, b in itertools.pairwise(kills)]
    lines.append(
        f"\nFrequent kills: {len(kills)} workers killed in {frequent.submit_s:.0f} s of submission"
        + (f", one every {sum(gaps) / len(gaps):.1f} s on average" if gaps else "")
        + f"; {frequent.reclaimed} jobs lost a lease and still succeeded, the most by one job "
        f"{max(frequent.lease_losses, default=0)}, with one prediction attempt each.\n"
    )
    for name, result in (("chaos", chaos), ("frequent kills", frequent)):
        if result.dead_letters:
            lines += [f"\nDead letters of the {name} phase:\n"]
            lines += [f"- `{body!r}` {headers}" for body, headers in result.dead_letters]
    return "\n".join(lines) + "\n"


def value_of(result: PhaseResult, value: object) -> object:
    return value(result) if callable(value) else value


def retries(result: PhaseResult, kind: str) -> int:
    return sum(n for key, n in result.answers().items() if key.startswith(kind))


def states(counts: dict) -> str:
    return ", ".join(f"{key}: {n}" for key, n in sorted(counts.items())) or "none"
