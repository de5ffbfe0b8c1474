"""The model registry: versions, the champion alias, and its audited history."""

from __future__ import annotations

import getpass
import json
import socket
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from pipeline.errors import AliasError
from service.models.lineage import TAG_PREFIX
from service.models.registry import holder

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

HISTORY_TAG = f"{TAG_PREFIX}champion_history"
HISTORY_LIMIT = 50


def register(
    client: MlflowClient, name: str, model_uri: str, run_id: str, tags: dict[str, str], trained_by: str
) -> ModelVersion:
    """A new version of `name` from a logged model (`models:/m-...`), creating the registered model if needed;
    `trained_by`: the notebook, named in the model's and the version's descriptions."""
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name, description=f"Trained by {trained_by} (nbship).")
    # A tracking server needs the logged model's id beside its URI; a local store accepts either.
    model_id = model_uri.removeprefix("models:/") if model_uri.startswith("models:/m-") else None
    return client.create_model_version(
        name, model_uri, run_id=run_id, tags=tags, model_id=model_id, description=f"Trained by {trained_by}."
    )


def history(client: MlflowClient, name: str) -> list[str]:
    """Versions that held the alias, oldest first (moves by this tool only)."""
    tags = client.get_registered_model(name).tags
    return json.loads(tags.get(HISTORY_TAG, "[]"))


def move_alias(
    client: MlflowClient, name: str, alias: str, version: str, action: str, forced: bool = False
) -> str | None:
    """Give `alias` to `version`; record who/when/from/to (and whether a worse score was overridden) on the
    version and the model. Returns the old holder."""
    previous = holder(client, name, alias)
    from_version = str(previous.version) if previous else None
    client.set_registered_model_alias(name, alias, version)
    if action != "rollback":
        versions = [*history(client, name), version][-HISTORY_LIMIT:]
        client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(versions))
    audit = {
        "action": action,
        "by": f"{getpass.getuser()}@{socket.gethostname()}",
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "from": from_version or "",
        "to": version,
        "alias": alias,
        "forced": "true" if forced else "false",
    }
    for key, value in audit.items():
        client.set_model_version_tag(name, version, f"audit.{key}", value)
    client.set_registered_model_tag(name, "audit.last", json.dumps(audit))
    return from_version


def version(client: MlflowClient, name: str, version: str) -> ModelVersion:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version(name, version)
    except MlflowException:
        raise AliasError(f"model {name!r} has no version {version!r}") from None


def promote(client: MlflowClient, name: str, alias: str, to: str) -> str | None:
    """Give `alias` to version `to` whatever its score (pipeline/promotion.py compares scores first)."""
    version(client, name, to)
    return move_alias(client, name, alias, to, action="promote")


def rollback(client: MlflowClient, name: str, alias: str) -> tuple[str, str]:
    """Give the alias back to the version that held it before the current one. Returns (from, to)."""
    current = holder(client, name, alias)
    if current is None:
        raise AliasError(f"model {name!r} has no @{alias} to roll back")
    versions = history(client, name)
    current_version = str(current.version)
    while versions and versions[-1] == current_version:
        versions.pop()
    if not versions:
        raise AliasError(
            f"@{alias} of {name!r} (version {current_version}) has no earlier holder to roll back to"
        )
    target = versions[-1]
    move_alias(client, name, alias, target, action="rollback")
    client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(versions))
    return current_version, target
