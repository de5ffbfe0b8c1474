"""Settings of the prediction service, read from the environment and `.env` (no prefix: `MAX_BATCH_SIZE=64`).

Built once where the service is defined (BentoML needs the batching bounds to define the API) and passed down.
The MLflow side (store, registered name, alias) is `pipeline.settings.PipelineSettings`: packaging reads it.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from pipeline.settings import PROJECT_ROOT
from service.access import ApiKey, parse_api_keys

# The largest legitimate body, a job of 10,000 rows (MAX_ROWS_PER_JOB) of 64 numbers, measured as `json.dumps`
# writes it: 3.4 MB with the digits data's values (0.0 to 16.0), 13.2 MB with full-precision float64 values.
DEFAULT_MAX_BODY_BYTES = 16 * 2**20


class ServiceSettings(BaseSettings):
    # Errors never echo their input: API_KEYS holds secrets.
    model_config = SettingsConfigDict(
        env_file=(PROJECT_ROOT / ".env", ".env"), extra="ignore", hide_input_in_errors=True
    )

    model_name: str = Field(
        default="digits-classifier", description="Registered MLflow model name, also its BentoML model name."
    )
    model_tag: str | None = Field(
        default=None,
        description="BentoML model tag to serve; default: `<model_name>:latest`, set by packaging.",
    )
    batching: bool = Field(
        default=True, description="Adaptive batching of /predict (off: one call a request)."
    )
    max_batch_size: int = Field(
        default=64, ge=1, description="Adaptive batching: most rows in one model call."
    )
    max_latency_ms: int = Field(
        default=1000,
        ge=1,
        description="Adaptive batching: hard bound; a request queued this long gets 503.",
    )
    max_rows: int = Field(default=64, ge=1, description="Most rows in one request.")
    inline_predict_ms: float = Field(
        default=2.0,
        ge=0.0,
        description=(
            "A model call of a batch size whose last call took at most this long runs on the worker's event "
            "loop; longer ones (a heavy model) run in a thread, so that the loop keeps serving (0: always)."
        ),
    )
    host: str = "127.0.0.1"
    port: int = Field(default=3000, ge=1, le=65535)
    workers: int = Field(default=1, ge=1, description="Worker processes; each uses about one core.")
    access_log: bool = Field(default=False, description="One log line per request (costs throughput).")
    reuse_port: bool = Field(
        default=True,
        description=(
            "Each worker listens on its own socket (SO_REUSEPORT), so the kernel spreads new connections, "
            "keep-alive pools included, over the workers."
        ),
    )
    tracing: bool = Field(
        default=False,
        description=(
            "OpenTelemetry spans per request (exporter and sample rate from BentoML's configuration). Off: the "
            "tracing middleware skips every path; at BentoML's default sample rate (0) it records nothing anyway, "
            "and it costs about a quarter of a worker's CPU per request."
        ),
    )
    timeout_s: int = Field(default=30, ge=1, description="Request timeout.")
    noop_endpoint: bool = Field(default=False, description="Add POST /noop, the HTTP ceiling for benchmarks.")
    tf_intra_op_threads: int = Field(default=1, ge=0, description="TensorFlow threads per op, per worker.")
    tf_inter_op_threads: int = Field(default=1, ge=0, description="TensorFlow concurrent ops, per worker.")
    api_keys: Annotated[tuple[ApiKey, ...], NoDecode, BeforeValidator(parse_api_keys)] = Field(
        default=(),
        description=(
            "Comma-separated NAME:KEY pairs; when set, every route but health, readiness, metrics and the "
            "OpenAPI document needs `Authorization: Bearer KEY`, and jobs belong to the key's NAME."
        ),
    )
    max_body_bytes: int = Field(
        default=DEFAULT_MAX_BODY_BYTES, ge=1024, description="Largest request body; larger is a 413."
    )

    @model_validator(mode="after")
    def _rows_fit_a_batch(self) -> ServiceSettings:
        # A request larger than a batch would be a batch of its own, over MAX_BATCH_SIZE (service/batch_dispatcher.py).
        if self.max_rows > self.max_batch_size:
            raise ValueError(
                f"MAX_ROWS ({self.max_rows}) must not exceed MAX_BATCH_SIZE ({self.max_batch_size})"
            )
        return self

    @property
    def tracing_config(self) -> dict[str, Any]:
        """BentoML's `tracing` service configuration: with tracing off, every path is excluded from it."""
        return {} if self.tracing else {"excluded_urls": ["."]}  # a regex matching every URL

    @property
    def bento_model_tag(self) -> str:
        return self.model_tag or f"{bento_model_name(self.model_name)}:latest"


def bento_model_name(registered_name: str) -> str:
    """A BentoML model name for an MLflow registered name (BentoML accepts lowercase, digits, `-`, `_`, `.`)."""
    name = re.sub(r"[^a-z0-9._-]+", "-", registered_name.lower()).strip("-._")
    if not name:
        raise ValueError(f"cannot make a BentoML model name of {registered_name!r}")
    return name
