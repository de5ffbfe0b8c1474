"""The one error shape (service.http.error_shape) as the tests expect it: a detail, and one entry saying where."""

from __future__ import annotations

from typing import Any


def one_error(detail: str, loc: list[Any], kind: str) -> dict[str, Any]:
    return {"detail": detail, "errors": [{"loc": loc, "msg": detail, "type": kind}]}
