"""MLflow webhooks for followers: `POST /hooks/mlflow` wakes every follower on this host at once, instead of at
its next poll.

MLflow's tracking server signs each delivery (`X-MLflow-Signature: v1,<base64 HMAC-SHA256>` of
`<delivery id>.<timestamp>.<body>` with the webhook's secret). A delivery is accepted only with a valid
signature made with WEBHOOK_SECRET and a timestamp at most five minutes old (a replayed delivery is refused).
A `model_version_alias.created` event for the followed model and alias touches a nudge file in the data folder;
every follower on this host (each API worker, each job worker) watches it and asks the registry at once. The
registry stays the one source of truth: the event only says "look now", and the switch is checked as always.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

MAX_AGE_S = 300
SIGNATURE_VERSION = "v1"


class BadDelivery(ValueError):
    """Not a delivery to act on: the message says why (never the secret)."""


def signature(secret: str, delivery_id: str, timestamp: str, body: bytes) -> str:
    signed = f"{delivery_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode()}"


def verified_event(
    secret: str, headers: dict[str, str], body: bytes, now: float | None = None
) -> dict[str, Any]:
    """The delivery's JSON, once its signature and age are checked; BadDelivery otherwise."""
    delivery_id = headers.get("x-mlflow-delivery-id", "")
    timestamp = headers.get("x-mlflow-timestamp", "")
    given = headers.get("x-mlflow-signature", "")
    if not (delivery_id and timestamp and given):
        raise BadDelivery(
            "not a signed MLflow webhook delivery (X-MLflow-Signature, -Timestamp, -Delivery-Id)"
        )
    if not hmac.compare_digest(given.encode(), signature(secret, delivery_id, timestamp, body).encode()):
        raise BadDelivery("the signature does not match WEBHOOK_SECRET")
    try:
        age = (time.time() if now is None else now) - int(timestamp)
    except ValueError:
        raise BadDelivery("X-MLflow-Timestamp is not a Unix time") from None
    if abs(age) > MAX_AGE_S:
        raise BadDelivery(f"the delivery is {age:.0f} s old; at most {MAX_AGE_S} s are accepted")
    try:
        event = json.loads(body)
    except ValueError:
        raise BadDelivery("the body is not valid JSON") from None
    if not isinstance(event, dict):
        raise BadDelivery("the body is not an MLflow event")
    return event


def names_alias(event: dict[str, Any], model: str, alias: str) -> bool:
    data = event.get("data")
    if not isinstance(data, dict):
        return False
    return (
        event.get("entity") == "model_version_alias"
        and event.get("action") == "created"
        and data.get("name") == model
        and data.get("alias") == alias
    )


def nudge_file(data_dir: Path, model: str) -> Path:
    return data_dir / "follow" / f"{model}.nudge"


def nudge(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(str(time.time_ns()))  # a new content and mtime: every watcher sees a change


def stamp(path: Path) -> int:
    """What a watcher compares: the nudge file's modification time (0 when there is none)."""
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return 0
