"""Quiet logs in the service and the worker: a bad request is the client's error, answered with a 400, not a server
traceback; a broker that is down is one warning of ours per job or reconnect, not pika's traceback per attempt."""

from __future__ import annotations

import logging

from pydantic import ValidationError

# BentoML logs every exception of an API call, with its traceback, on this logger before answering it.
API_ERROR_LOGGER = "bentoml._internal.server.http_app"


class DropClientErrors(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not isinstance(error, ValidationError)


def drop_client_errors() -> None:
    logger = logging.getLogger(API_ERROR_LOGGER)
    if not any(isinstance(existing, DropClientErrors) for existing in logger.filters):
        logger.addFilter(DropClientErrors())


def quiet_broker_client() -> None:
    """pika logs an ERROR with a traceback for every failed connection attempt (hundreds a minute while RabbitMQ
    restarts); the job layer reports those failures itself (a warning per job left for the sweeper, or per
    worker reconnect)."""
    logging.getLogger("pika").setLevel(logging.CRITICAL)
