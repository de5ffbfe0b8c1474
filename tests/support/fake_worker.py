"""A job worker answering with a model of the test's own: `python -m support.fake_worker MODULE:FACTORY` (tests/ on
PYTHONPATH). The production worker's own loop, settings and logs (service.jobs.worker.run); only the model differs."""

from __future__ import annotations

import argparse
import importlib

from service.jobs.worker import configure_logging, run
from service.models.source import ModelSource
from service.settings import WorkerSettings


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m support.fake_worker")
    parser.add_argument("factory", help="MODULE:FACTORY returning the model the worker answers with")
    spec = parser.parse_args().factory
    configure_logging()
    module, _, attribute = spec.partition(":")
    model = getattr(importlib.import_module(module), attribute)()
    return run(WorkerSettings(), ModelSource(model))


if __name__ == "__main__":
    raise SystemExit(main())
