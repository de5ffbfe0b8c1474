"""A bad request is the client's error, answered with a 4xx, not a server traceback: BentoML logs every exception
of an API call, validation errors included, with its traceback before answering it."""

from __future__ import annotations

import logging

from pydantic import ValidationError

API_ERROR_LOGGER = "bentoml._internal.server.http_app"  # where BentoML's `log_exception` writes


class DropClientErrors(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not isinstance(error, ValidationError)


def drop_client_errors() -> None:
    logger = logging.getLogger(API_ERROR_LOGGER)
    if not any(isinstance(existing, DropClientErrors) for existing in logger.filters):
        logger.addFilter(DropClientErrors())
