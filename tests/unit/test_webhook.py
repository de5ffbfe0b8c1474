"""MLflow webhook deliveries (service.models.webhook): only a valid, fresh signature is acted on, and only an
alias event for the followed model nudges the followers."""

from __future__ import annotations

import json
import time

import pytest

from service.models import webhook

SECRET = "s3cret-of-the-webhook"
BODY = json.dumps(
    {
        "entity": "model_version_alias",
        "action": "created",
        "data": {"name": "m", "alias": "champion", "version": "2"},
    }
).encode()


def headers(body: bytes = BODY, secret: str = SECRET, at: int | None = None) -> dict[str, str]:
    stamp = str(int(time.time()) if at is None else at)
    return {
        "x-mlflow-delivery-id": "d-1",
        "x-mlflow-timestamp": stamp,
        "x-mlflow-signature": webhook.signature(secret, "d-1", stamp, body),
    }


def test_a_signed_alias_event_for_the_followed_model_is_accepted() -> None:
    event = webhook.verified_event(SECRET, headers(), BODY)
    assert webhook.names_alias(event, "m", "champion")
    assert not webhook.names_alias(event, "other", "champion")
    assert not webhook.names_alias(event, "m", "challenger")


def test_the_signature_matches_mlflows_own() -> None:
    from mlflow.webhooks.delivery import _generate_hmac_signature

    assert webhook.signature(SECRET, "d-1", "1700000000", BODY) == _generate_hmac_signature(
        SECRET, "d-1", "1700000000", BODY.decode()
    )


@pytest.mark.parametrize(
    ("given", "body", "message"),
    [
        (dict, BODY, "not a signed MLflow webhook delivery"),
        (lambda: headers(secret="another"), BODY, "the signature does not match WEBHOOK_SECRET"),
        (headers, BODY + b" ", "the signature does not match WEBHOOK_SECRET"),  # the body was changed
        (lambda: headers(at=int(time.time()) - 3600), BODY, r"the delivery is 360\d s old; at most 300 s"),
    ],
)
def test_unsigned_forged_changed_or_replayed_deliveries_are_refused(given, body, message) -> None:
    with pytest.raises(webhook.BadDelivery, match=message):
        webhook.verified_event(SECRET, given(), body)  # headers made now: the age is the test's own


def test_a_nudge_changes_what_watchers_see(tmp_path) -> None:
    path = webhook.nudge_file(tmp_path, "m")
    before = webhook.stamp(path)
    webhook.nudge(path)
    assert webhook.stamp(path) != before
