"""Command line of the pipeline: `python -m pipeline {train,params,promote,rollback,monitor,ui,store,package,build,container,requirements}`."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from pipeline.errors import PipelineError
from pipeline.mlproject import drop_mlflow_run_default
from pipeline.settings import PROJECT_ROOT, MonitorSettings, PipelineSettings
from service.models.quiet import quiet


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipeline", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    # Every command that acts on the notebook's model takes the notebook as NOTEBOOK does.
    notebook = argparse.ArgumentParser(add_help=False)
    notebook.add_argument(
        "--notebook",
        type=Path,
        default=None,
        help="the training notebook, which names the model (default: the setting NOTEBOOK, else "
        "notebooks/train.ipynb); a relative path is taken from the current folder",
    )

    train = commands.add_parser(
        "train", parents=[notebook], help="execute the notebook, register and gate the model"
    )
    train.add_argument(
        "-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
        help="a notebook parameter (repeatable), e.g. -p epochs 10; `python -m pipeline params` lists them",
    )  # fmt: skip
    train.add_argument("--no-progress", action="store_true", help="no progress bar")

    promote = commands.add_parser(
        "promote",
        parents=[notebook],
        help="give @champion to VERSION by hand (audited); a worse score is refused without --force",
    )
    promote.add_argument("version")
    promote.add_argument(
        "--force",
        action="store_true",
        help="promote even a version that scores worse than @champion (audited)",
    )
    commands.add_parser(
        "rollback", parents=[notebook], help="give @champion back to the version that held it before"
    )
    commands.add_parser("ui", help="start the MLflow UI on the configured store")
    commands.add_parser("store", help="print the tracking URI of the configured store (MLFLOW_TRACKING_URI)")
    commands.add_parser(
        "params", parents=[notebook], help="list the notebook's parameters: type, default, allowed values"
    )
    package = commands.add_parser(
        "package", parents=[notebook], help="put @champion into the BentoML model store (reused if there)"
    )
    package.add_argument(
        "--env",
        action="store_true",
        help="then print MODEL_NAME=... and MODEL_TAG=..., the settings that serve it (for scripts)",
    )
    commands.add_parser(
        "build", parents=[notebook], help="package @champion, then build the service into a Bento"
    )
    commands.add_parser(
        "container",
        parents=[notebook],
        help="build the Bento, then its container image (bentoml containerize)",
    )
    monitor = commands.add_parser(
        "monitor",
        parents=[notebook],
        help="what the served version met: drift against its held-out rows, live scores from labels; an HTML "
        "report logged to its run",
    )
    monitor.add_argument("--version", help="the version to report on (default: the one @champion names)")
    monitor.add_argument(
        "--since", help="only records since then: a duration back from now (30m, 2h, 7d) or an ISO time"
    )
    monitor.add_argument(
        "--min-rows",
        type=int,
        default=100,
        help="sampled rows a window needs before its drift says anything (default 100)",
    )
    monitor.add_argument("--report", type=Path, help="write the HTML report here (default: under DATA_DIR)")
    commands.add_parser(
        "requirements",
        help="write docker/requirements.txt and requirements-lean.txt (the images' packages) from uv.lock",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    quiet()
    dropped = drop_mlflow_run_default(os.environ, Path.cwd()) if args.command == "train" else None
    try:
        settings = command_settings(args)
        if dropped:
            print(
                f"note: `mlflow run` passed MLflow's default store {dropped}; training into this project's store "
                f'{settings.tracking_uri}, as every command does (with MLFLOW_TRACKING_URI="$(python -m pipeline '
                'store)" `mlflow run` keeps its own record there too)',
                file=sys.stderr,
            )
        return _run(args, settings)
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code


def command_settings(args: argparse.Namespace) -> PipelineSettings:
    """The settings of every command, built here only: `--notebook` is given to them as NOTEBOOK would be, so
    that their validators take the model's and experiment's names from it. A relative path, either way, is
    taken from the current folder; a command that acts on the notebook's model refuses one that is not there
    (its names would be a guess)."""
    notebook: Path | None = getattr(args, "notebook", None)
    kind = MonitorSettings if args.command == "monitor" else PipelineSettings
    settings = kind() if notebook is None else kind(notebook=notebook)
    if hasattr(args, "notebook") and not settings.notebook.is_file():
        given = "--notebook" if notebook is not None else "NOTEBOOK"
        raise PipelineError(
            f"{given} names {settings.notebook}, which is not a file (a relative path is taken from the "
            f"current folder, {Path.cwd()})"
        )
    return settings


def _run(args: argparse.Namespace, settings: PipelineSettings) -> int:
    from pipeline import registry, tracking

    if args.command == "train":
        from pipeline.train import train

        result = train(settings, dict(args.parameter), progress_bar=not args.no_progress)
        print(f"run {result.run_id}: registered {result.model_name} version {result.version}")
        print(f"served by {result.runtime.runtime}: {result.runtime.reason}")
        print(result.decision.summary(settings.champion_alias))
        print(f"executed notebook: {result.executed_notebook} (also an artifact of run {result.run_id})")
        return 0
    if args.command == "params":
        from pipeline.params import declared

        for param in declared(settings.notebook).values():
            allowed = f" in {param.rule}" if param.rule else ""
            print(f"-p {param.name} ({param.type_name}{allowed}, default {param.default!r}): {param.help}")
        return 0
    if args.command == "store":
        print(settings.tracking_uri)
        return 0
    if args.command == "ui":
        from pipeline.ui import ui_command

        if not settings.is_embedded_store:
            tracking.check_reachable(settings.tracking_uri)
            print(f"the tracking server {settings.tracking_uri} serves its own UI")
            return 0
        command = ui_command(settings)
        print(f"MLflow UI on http://{settings.ui_host}:{settings.ui_port} (store: {settings.tracking_uri})")
        sys.stdout.flush()
        os.execv(command[0], command)
    if args.command == "package":
        from pipeline.package import package

        packaged = package(settings)
        state = "reused" if packaged.reused else "stored"
        print(f"{state} {settings.model_name} version {packaged.version} as BentoML model {packaged.tag}")
        if args.env:
            print(f"MODEL_NAME={settings.model_name}\nMODEL_TAG={packaged.tag}")
        return 0
    if args.command == "build":
        from pipeline.build import build

        bento, packaged = build(settings)
        print(
            f"built Bento {bento} serving {settings.model_name} version {packaged.version} ({packaged.tag})"
        )
        print(f"serve it: bentoml serve {bento}")
        return 0
    if args.command == "container":
        from pipeline.container import ContainerSettings, build_image

        bento, image = build_image(settings, ContainerSettings())
        size = "" if image.size_bytes is None else f", {image.size_bytes / 1e9:.2f} GB"
        print(f"built image {', '.join(image.tags)} with {image.backend} in {image.build_s:.0f} s{size}")
        engine = "docker" if image.backend == "docker" else "podman"
        job_layer = "-e AMQP_URL=... -e MONGO_URL=..."
        print(f"API:    {engine} run --rm -p 3000:3000 {job_layer} {image.tags[0]}")
        print(f"worker: {engine} run --rm {job_layer} {image.tags[0]} python -m service.jobs.worker")
        return 0
    if args.command == "requirements":
        from pipeline.container import write_requirements

        for written in write_requirements():
            print(f"wrote {written.relative_to(PROJECT_ROOT)}")
        return 0
    client = tracking.connect(settings)
    name, alias = settings.model_name, settings.champion_alias
    if args.command == "monitor":
        from pipeline.evidence.command import monitor_command

        assert isinstance(settings, MonitorSettings)
        return monitor_command(client, settings, args.version, args.since, args.min_rows, args.report)
    if args.command == "promote":
        from pipeline.promotion import promote

        promotion = promote(client, name, alias, args.version, settings.gate_metric, force=args.force)
        print(promotion.summary(name, alias))
    elif args.command == "rollback":
        previous, target = registry.rollback(client, name, alias)
        print(f"@{alias} of {name}: version {previous} -> {target} (rolled back)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
