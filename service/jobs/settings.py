"""Settings of the job layer (broker, store, worker), read from the environment and `.env` without a prefix.

A section the service settings can embed; built at the entry point and passed down.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from pipeline.settings import PROJECT_ROOT


class JobSettings(BaseSettings):
    model_config = SettingsConfigDict(env_file=(PROJECT_ROOT / ".env", ".env"), extra="ignore")

    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/%2F"
    mongo_url: str = "mongodb://127.0.0.1:27017"
    mongo_database: str = "nbship"
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
    sweep_interval_s: float = Field(default=5.0, gt=0.0)
    publish_grace_s: float = Field(
        default=10.0, ge=0.0, description="A queued job unconfirmed for this long is republished."
    )
    retention_s: int = Field(default=7 * 24 * 3600, ge=60, description="TTL of finished jobs.")
    max_rows_per_job: int = Field(default=10_000, ge=1)
    submit_group_max: int = Field(
        default=64, ge=1, description="Submissions an API worker writes and publishes together, at most."
    )
    submit_group_wait_ms: float = Field(
        default=5.0,
        ge=0.0,
        description="Longest a submission waits for the group in flight before a second group starts.",
    )
    worker_predictor: str | None = Field(
        default=None,
        description=(
            "MODULE:FACTORY of a fixed predictor for the worker (tests inject fakes). Unset: the packaged model, "
            "following FOLLOW_ALIAS when set: the same model source as the API's (service/models/source.py)."
        ),
    )
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

    @property
    def retry_queue(self) -> str:
        return f"{self.job_queue}.retry"

    @property
    def dead_letter_queue(self) -> str:
        return f"{self.job_queue}.dead"
