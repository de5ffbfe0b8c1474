"""The monitor command's run: read, print, write the report and log it to the version's run."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.errors import PipelineError
from pipeline.evidence import html
from pipeline.evidence.monitor import monitor, parse_since
from pipeline.settings import MonitorSettings

if TYPE_CHECKING:
    from mlflow import MlflowClient

REPORT_FOLDER = "monitor"  # in the version's run


def monitor_command(
    client: MlflowClient,
    settings: MonitorSettings,
    version: str | None,
    since: str | None,
    min_rows: int,
    report_path: Path | None,
) -> int:
    from pymongo import MongoClient
    from pymongo.errors import PyMongoError

    timeout = settings.mongo_timeout_ms
    mongo: MongoClient = MongoClient(settings.mongo_url, tz_aware=True, serverSelectionTimeoutMS=timeout)
    try:
        report = monitor(
            client,
            mongo.get_database(settings.mongo_database),
            settings.model_name,
            settings.champion_alias,
            version,
            parse_since(since),
            min_rows,
        )
    except PyMongoError as exc:
        raise PipelineError(
            f"the evidence store at MONGO_URL {settings.mongo_url} cannot be read ({str(exc)[:120]}): the served "
            "processes record into the job store's MongoDB; set MONGO_URL to it"
        ) from None
    finally:
        mongo.close()
    for line in report.summary_lines():
        print(line)
    print(report.table())
    for line in report.score_lines():
        print(line)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    name = f"monitor-{settings.model_name}-v{report.window.version}-{stamp}.html"
    path = report_path or settings.data_dir / "monitor" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    html.write(report, path)
    client.log_artifact(report.run_id, str(path), artifact_path=REPORT_FOLDER)
    print(f"report: {path} (logged to run {report.run_id}, {REPORT_FOLDER}/{path.name})")
    return 0
