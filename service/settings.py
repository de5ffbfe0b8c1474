"""Settings of what runs in the image, read from the environment and `.env` without a prefix (`MAX_BATCH_SIZE=64`).

`Settings` declares what every deployable shares (the data folder, the tracking store, the registered model's
name, the gate's metric) and the one way of reading them; each deployable has one class, built once at its entry
point and passed down: `ServiceSettings` (the API, `service/service.py`), `WorkerSettings` (the job worker),
`PipelineSettings` (`pipeline/settings.py`) and the local stack's (`service/stack`). The sections they combine:
`SourceSettings` (which version answers) and `JobSettings` (the job layer's broker, store and budgets).
"""

from __future__ import annotations

import hmac
import re
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from service.models.last_packaged import last_packaged
from service.models.metrics import HIGHER_IS_BETTER, is_metric

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# The largest legitimate body, a job of 10,000 rows (MAX_ROWS_PER_JOB) of 64 numbers, measured as `json.dumps`
# writes it: 3.4 MB with the digits data's values (0.0 to 16.0), 13.2 MB with full-precision float64 values.
DEFAULT_MAX_BODY_BYTES = 16 * 2**20
SQLITE = "sqlite:///"  # a SQLite tracking store's URI: this, then the file's path


class Settings(BaseSettings):
    # The project's .env wherever the command runs from; a .env in the current folder overrides it. Errors never
    # echo their input: some settings hold secrets.
    model_config = SettingsConfigDict(
        env_file=(PROJECT_ROOT / ".env", ".env"), extra="ignore", hide_input_in_errors=True
    )

    data_dir: Path = Field(
        default=PROJECT_ROOT / ".nbship",
        description="Project data folder: the embedded MLflow store, its artifacts and executed notebooks.",
    )
    mlflow_tracking_uri: str | None = Field(
        default=None,
        description="Any MLflow tracking server or store; default: SQLite under DATA_DIR (`python -m pipeline "
        "store` prints it). A relative SQLite path (`sqlite:///my.db`) is taken from the current folder.",
    )
    model_name: str = Field(
        default="",
        description="The registered MLflow model (also its BentoML model's name). The pipeline's default: the "
        "notebook's `registered_model_name` parameter, else the notebook file's name; the API's and the worker's: "
        "the packaged model's (MODEL_TAG), which `./noxw -s serve`, `stack` and `container` set.",
    )
    gate_metric: str | None = Field(
        default=None,
        description="Metric a version is judged on; default by task: test_accuracy (classifiers), test_rmse "
        "(regressors).",
    )

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, path: Path) -> Path:
        return path.expanduser().resolve()

    @field_validator("mlflow_tracking_uri")
    @classmethod
    def _unset_when_empty_and_absolute(cls, uri: str | None) -> str | None:
        # A SQLite file is named absolutely, so that every process given the URI (the notebook's kernel runs in
        # the notebook's folder) opens the same file.
        path = sqlite_file(uri) if uri else None
        if not uri or path is None:
            return uri or None
        query = uri.partition("?")[2]
        return f"{SQLITE}{path}" + (f"?{query}" if query else "")

    @field_validator("gate_metric")
    @classmethod
    def _known_metric(cls, metric: str | None) -> str | None:
        if metric and not is_metric(metric):
            raise ValueError(
                f"unknown metric {metric!r}; one of {', '.join(HIGHER_IS_BETTER)} (`OUTPUT/metric` for one output "
                "of several)"
            )
        return metric or None

    @property
    def store_file(self) -> Path:
        """The embedded store's SQLite file (used unless MLFLOW_TRACKING_URI names another store)."""
        return self.data_dir / "mlflow.db"

    @property
    def embedded_uri(self) -> str:
        return f"{SQLITE}{self.store_file}"

    @property
    def tracking_uri(self) -> str:
        return self.mlflow_tracking_uri or self.embedded_uri

    @property
    def is_embedded_store(self) -> bool:
        """The SQLite file under data_dir, whether by default or named (`python -m pipeline store` prints it)."""
        return self.tracking_uri == self.embedded_uri


def sqlite_file(uri: str) -> Path | None:
    """The file a SQLite tracking URI names, absolute (a relative path is taken from the current folder, as
    SQLAlchemy takes it); None for any other store and for an in-memory database."""
    path = uri.removeprefix(SQLITE).partition("?")[0] if uri.startswith(SQLITE) else ""
    return Path(path).resolve() if path and path != ":memory:" else None


class UiSettings(Settings):
    """The MLflow UI on the embedded store (`python -m pipeline ui`, started by the local stack too)."""

    ui_host: str = Field(default="127.0.0.1", description="Interface of the MLflow UI.")
    ui_port: int = Field(default=5000, ge=1, le=65535, description="Port of the MLflow UI.")


class SourceSettings(Settings):
    """Which model answers, in the API and the job worker alike (service/models/source.py)."""

    model_tag: str | None = Field(
        default=None,
        description="BentoML model tag to serve; default: `<model_name>:latest` when MODEL_NAME is set, else the "
        "model `python -m pipeline package` packaged last with this DATA_DIR.",
    )
    follow_alias: str | None = Field(
        default=None,
        description="Follow this registry alias (e.g. champion): switch to each version it names, checked first. "
        "Unset: serve the packaged model only (pinned).",
    )
    follow_interval_s: float = Field(default=2.0, gt=0, description="How often a follower asks the registry.")
    webhook_secret: SecretStr | None = Field(
        default=None,
        description="The secret of an MLflow webhook on model_version_alias.created: POST /hooks/mlflow with a "
        "valid signature makes every follower on this host ask the registry at once.",
    )
    serve_runtime: Literal["auto", "tensorflow"] = Field(
        default="auto",
        description="auto: a version's lean form (ONNX Runtime, no TensorFlow) where the pipeline proved it equal, "
        "else TensorFlow; tensorflow: always TensorFlow (to compare, or to rule the lean form out).",
    )
    tf_intra_op_threads: int = Field(
        default=1,
        ge=0,
        description="Threads per op, per process: TensorFlow's, and ONNX Runtime's for a lean version.",
    )
    tf_inter_op_threads: int = Field(default=1, ge=0, description="TensorFlow concurrent ops, per process.")

    @property
    def bento_model_tag(self) -> str:
        """The packaged model to serve: MODEL_TAG, else the latest packaged version of MODEL_NAME, else what
        `python -m pipeline package` packaged last with this data folder."""
        if self.model_tag:
            return self.model_tag
        if self.model_name:
            return f"{bento_model_name(self.model_name)}:latest"
        last = last_packaged(self.data_dir)
        if last is None:
            raise ValueError(
                f"nothing was packaged with DATA_DIR {self.data_dir}: run `python -m pipeline package` (with the "
                "NOTEBOOK you trained), or set MODEL_TAG (the packaged model to serve) or MODEL_NAME (its latest "
                "packaged version)"
            )
        return last.model_tag


class JobSettings(Settings):
    """The job layer: broker, store, queues, a job's budgets and the worker's micro-batches."""

    amqp_url: str = Field(
        default="amqp://guest:guest@127.0.0.1:5672/%2F", description="RabbitMQ, the job layer's broker."
    )
    mongo_url: str = Field(
        default="mongodb://127.0.0.1:27017",
        description="MongoDB (or a MongoDB-protocol server), the job store.",
    )
    mongo_database: str = Field(default="nbship", description="The job store's database.")
    mongo_timeout_ms: int = Field(default=2000, ge=100, description="Server selection and socket timeout.")
    job_queue: str = Field(default="nbship.jobs", description="Main queue; `.retry` and `.dead` are derived.")
    prefetch: int = Field(default=256, ge=1, description="Unacknowledged messages a worker holds.")
    batch_size: int = Field(default=256, ge=1, description="B: rows per micro-batch.")
    batch_wait_ms: int = Field(default=20, ge=0, description="T: longest wait to fill a micro-batch.")
    max_attempts: int = Field(
        default=5,
        ge=1,
        description=(
            "Prediction attempts of a job before it fails for good: a failed prediction (an exception) is retried "
            "with backoff until then. A lease lost with its worker does not count: see MAX_LEASE_LOSSES."
        ),
    )
    max_lease_losses: int = Field(
        default=20,
        ge=1,
        description=(
            "Leases of a job that may run out in a worker's hands (killed, or cut off from the store): at this "
            "many the job fails for good, as one that kills every worker that takes it must end too. Larger than "
            "MAX_ATTEMPTS, so that a healthy job survives many worker deaths."
        ),
    )
    retry_delay_s: float = Field(default=2.0, ge=0.0, description="First retry delay, doubled per attempt.")
    lease_s: float = Field(default=60.0, gt=0.0, description="A claim older than this is claimable again.")
    sweep_interval_s: float = Field(
        default=5.0,
        gt=0.0,
        description="How often a worker's sweeper requeues expired leases and publishes unconfirmed jobs.",
    )
    publish_grace_s: float = Field(
        default=10.0, ge=0.0, description="A queued job unconfirmed for this long is republished."
    )
    retention_s: int = Field(default=7 * 24 * 3600, ge=60, description="TTL of finished jobs.")
    max_rows_per_job: int = Field(default=10_000, ge=1, description="Most rows in one job; more is a 422.")
    submit_group_max: int = Field(
        default=64, ge=1, description="Submissions an API worker writes and publishes together, at most."
    )
    submit_group_wait_ms: float = Field(
        default=5.0,
        ge=0.0,
        description="Longest a submission waits for the group in flight before a second group starts.",
    )

    @property
    def retry_queue(self) -> str:
        return f"{self.job_queue}.retry"

    @property
    def dead_letter_queue(self) -> str:
        return f"{self.job_queue}.dead"


class EvidenceSettings(JobSettings):
    """Records of answered requests and jobs (service/evidence): kept in the job store's MongoDB, off the
    client's path; labels sent to `POST /feedback` beside them."""

    evidence: bool = Field(
        default=True,
        description="Record each answered request and job (id, time, version, latency, outputs) in the job store.",
    )
    evidence_sample: float = Field(
        default=0.1,
        ge=0.0,
        le=1.0,
        description="Share of records that keep their input rows too (for drift), decided by a hash of the id.",
    )
    evidence_buffer: int = Field(
        default=10_000,
        ge=1,
        description="Records a process holds for the store at most; more (the store slow or down) are dropped and "
        "counted, never an answer slowed.",
    )
    evidence_group: int = Field(default=500, ge=1, description="Records written in one insert, at most.")
    evidence_flush_ms: float = Field(
        default=500.0, gt=0.0, description="Longest a record waits in its process before it is written."
    )
    evidence_retention_s: int = Field(
        default=30 * 24 * 3600, ge=60, description="TTL of records and labels in the store."
    )
    max_labels: int = Field(default=1000, ge=1, description="Most labels in one `POST /feedback`.")


class WorkerSettings(EvidenceSettings, SourceSettings):
    """The job worker (`python -m service.jobs.worker`)."""

    summary_interval_s: float = Field(
        default=60.0, gt=0.0, description="How often a worker logs its one-line summary (INFO)."
    )
    metrics_port: int | None = Field(
        default=None, ge=1, le=65535, description="Worker metrics on METRICS_HOST:PORT when not multiprocess."
    )
    metrics_host: str = Field(
        default="127.0.0.1",
        description="Interface of the worker's metrics (0.0.0.0 in the image: its own network).",
    )


class ApiKey(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    key: SecretStr  # repr and logs show '**********'


MIN_KEY_LENGTH = 32
_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
_KEY = re.compile(r"[A-Za-z0-9._~+/=-]+")  # RFC 6750 b64token: what a Bearer header can carry as is


def parse_api_keys(value: Any) -> tuple[ApiKey, ...]:
    """`API_KEYS`: comma-separated `name:key` pairs, or nothing. Errors name the entry by position and never
    show a key (an entry without a colon may be a key)."""
    if not isinstance(value, str):
        return tuple(value)  # already parsed (keys given in code)
    if not value.strip():
        return ()
    keys: list[ApiKey] = []
    for position, entry in enumerate(value.split(","), start=1):
        where = f"API_KEYS entry {position}"
        name, colon, key = entry.strip().partition(":")
        if not entry.strip():
            raise ValueError(f"{where} is empty: a trailing or doubled comma?")
        if not colon:
            raise ValueError(f"{where} is not NAME:KEY")
        if not _NAME.fullmatch(name):
            raise ValueError(f"{where}: the name must be 1 to 64 letters, digits, '.', '_' or '-'")
        if len(key) < MIN_KEY_LENGTH or not _KEY.fullmatch(key):
            raise ValueError(
                f"{where} ({name}): the key must be at least {MIN_KEY_LENGTH} characters of letters, digits "
                "and -._~+/= (make one with `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)"
            )
        for other in keys:
            if other.name == name:
                raise ValueError(f"{where}: the name {name!r} is already used")
            if hmac.compare_digest(other.key.get_secret_value(), key):
                raise ValueError(f"{where} ({name}): same key as {other.name!r}; each name needs its own key")
        keys.append(ApiKey(name=name, key=SecretStr(key)))
    return tuple(keys)


class ServiceSettings(EvidenceSettings, SourceSettings):
    """The API (`service/service.py`): HTTP, batching, access; the job layer it submits to; which model answers."""

    batching: bool = Field(
        default=True, description="Adaptive batching of /predict (off: one call a request)."
    )
    max_batch_size: int = Field(
        default=64, ge=1, description="Adaptive batching: most rows in one model call."
    )
    max_latency_ms: int = Field(
        default=1000, ge=1, description="Adaptive batching: hard bound; a request queued this long gets 503."
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
    host: str = Field(
        default="127.0.0.1",
        description="Interface the API listens on (0.0.0.0 in the image: its own network).",
    )
    port: int = Field(default=3000, ge=1, le=65535, description="Port the API listens on.")
    workers: int = Field(default=1, ge=1, description="Worker processes; each uses about one core.")
    access_log: bool = Field(default=False, description="One log line per request (costs throughput).")
    reuse_port: bool = Field(
        default=True,
        description="Each worker listens on its own socket (SO_REUSEPORT), so the kernel spreads new "
        "connections, keep-alive pools included, over the workers.",
    )
    tracing: bool = Field(
        default=False,
        description="OpenTelemetry spans per request (exporter and sample rate from BentoML's configuration). "
        "Off, the tracing middleware skips every path (on, it costs about a quarter of a worker's CPU).",
    )
    timeout_s: int = Field(default=30, ge=1, description="Request timeout.")
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
        # A request larger than a batch would be a batch of its own, over MAX_BATCH_SIZE (service/serving/dispatcher.py).
        if self.max_rows > self.max_batch_size:
            raise ValueError(
                f"MAX_ROWS ({self.max_rows}) must not exceed MAX_BATCH_SIZE ({self.max_batch_size})"
            )
        return self

    @property
    def tracing_config(self) -> dict[str, Any]:
        """BentoML's `tracing` service configuration: with tracing off, every path is excluded from it."""
        return {} if self.tracing else {"excluded_urls": ["."]}  # a regex matching every URL


S = TypeVar("S", bound=Settings)


def named_after(settings: S, registered_name: str) -> S:
    """`settings` with MODEL_NAME, when unset, taken from the packaged model that answers (MODEL_TAG alone names
    the version to serve; a follower and the webhook need the registered name)."""
    return settings if settings.model_name else settings.model_copy(update={"model_name": registered_name})


def bento_model_name(registered_name: str) -> str:
    """A BentoML model name for an MLflow registered name (BentoML accepts lowercase, digits, `-`, `_`, `.`)."""
    name = re.sub(r"[^a-z0-9._-]+", "-", registered_name.lower()).strip("-._")
    if not name:
        raise ValueError(f"cannot make a BentoML model name of {registered_name!r}")
    return name
