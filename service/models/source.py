"""Which model answers, for the API and the job worker alike: one piece of code decides, loads and reports it.

    pinned      (default) the model packaged with the service (the BentoML store; in an image, the Bento's own).
                The registry is never asked: a new champion means a new package or image and a rolling update.
    following   FOLLOW_ALIAS=champion: start from the packaged model, then poll the registry's alias every
                FOLLOW_INTERVAL_S and switch to the version it names.

A switch cannot break serving. The new version is loaded beside the current one, must have the served contract
(another signature would change the API), is warmed up, and must score the metric its run logged on the run's
held-out rows (a corrupt or wrong artifact does not); only then is it swapped in, by one reference assignment.
A batch takes `current` once, so it finishes on the version that started it, and its answers name it. A refused
version never becomes current; it is reported (log, `/model`, metrics) and not tried again until the alias
names another version. `python -m pipeline rollback` moves the alias back, and followers follow it the same way.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from service.models import metrics, registry
from service.models.contract import ContractError, ModelContract, Outputs, Rows
from service.models.lean import runtime_to_serve
from service.models.lineage import lineage_of_version
from service.models.scoring import NoHeldOutRows, held_out, score_on

if TYPE_CHECKING:
    from service.models.loader import LoadedModel

log = logging.getLogger(__name__)
NUDGE_CHECK_S = 0.1  # how often a follower looks at the nudge file (one stat call)
RETRY_FIRST_S = (
    1.0  # after a failed poll (the registry or its artifacts away), the first retry; then doubling
)
SCORE_TOLERANCE = 1e-4  # the served path's score on the held-out rows against the figure the run logged


class FollowSettings(Protocol):
    """What a follower reads of its process's settings (service.settings.SourceSettings has it all)."""

    @property
    def tracking_uri(self) -> str: ...

    @property
    def model_name(self) -> str: ...

    @property
    def data_dir(self) -> Path: ...

    @property
    def gate_metric(self) -> str | None: ...

    @property
    def follow_alias(self) -> str | None: ...

    @property
    def follow_interval_s(self) -> float: ...

    @property
    def serve_runtime(self) -> str: ...


class Model(Protocol):
    """What answers: `service.models.loader.LoadedModel` in production, any stand-in in tests."""

    @property
    def name(self) -> str: ...

    @property
    def version(self) -> str: ...

    @property
    def contract(self) -> ModelContract: ...

    def predict(self, rows: Rows, /) -> Outputs:
        """Rows by input name ([n, *shape] each) -> outputs by output name, as the contract says."""
        ...


M = TypeVar("M", bound=Model)


@dataclass(frozen=True)
class Refusal:
    version: str
    reason: str
    at: str


@dataclass
class Status:
    mode: str  # "pinned" or "following @<alias>"
    last_switch: dict[str, str] | None = None
    refused: list[Refusal] = field(default_factory=list)

    def view(self, current: Model) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "current_version": current.version,
            "last_switch": self.last_switch,
            "refused": [refusal.__dict__ for refusal in self.refused[-5:]],
        }


class ModelSource(Generic[M]):
    """The current model; following, a thread that switches it. `current` is safe to read from any thread."""

    def __init__(
        self,
        initial: M,
        lineage: dict[str, Any] | None = None,
        follow: Callable[[ModelSource[M]], None] | None = None,
        mode: str = "pinned",
        on_change: Callable[[str, str], None] | None = None,
        nudges: Path | None = None,
    ) -> None:
        """`nudges`: a file whose change (service.models.webhook) makes a follower ask the registry at once."""
        self._current = initial
        self.lineage = lineage or {}  # where the current version comes from (GET /model)
        self.status = Status(mode)
        self._on_change = on_change or (lambda _result, _version: None)
        self._thread: threading.Thread | None = None
        self._follow = follow
        self._nudges = nudges

    @property
    def current(self) -> M:
        return self._current

    def view(self) -> dict[str, Any]:
        return self.status.view(self._current)

    def swap(self, model: M, lineage: dict[str, Any] | None = None) -> None:
        previous = self._current
        self.lineage = lineage or {}
        self._current = model  # one reference: a batch that took the old one finishes on it
        self.status.last_switch = {
            "from": previous.version,
            "to": model.version,
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        log.warning("model %s: switched from version %s to %s", model.name, previous.version, model.version)
        self._on_change("switched", model.version)

    def refuse(self, version: str, reason: str) -> None:
        self.status.refused.append(Refusal(version, reason, datetime.now(UTC).isoformat(timespec="seconds")))
        log.warning("model %s: refused version %s: %s", self._current.name, version, reason)
        self._on_change("refused", version)

    def refused(self, version: str) -> bool:
        return any(refusal.version == version for refusal in self.status.refused)

    def start(self, interval_s: float) -> None:
        if self._follow is None or self._thread is not None:
            return
        self._thread = threading.Thread(
            target=self._run, args=(interval_s,), name="follow-alias", daemon=True
        )
        self._thread.start()

    def _run(self, interval_s: float) -> None:
        from service.models.webhook import stamp

        assert self._follow is not None
        seen = stamp(self._nudges) if self._nudges else 0
        retry_s = RETRY_FIRST_S
        while True:  # a daemon thread: it ends with its process
            wait_s = interval_s
            try:
                self._follow(self)
                retry_s = RETRY_FIRST_S
            except Exception as exc:  # a registry that is down must not stop serving: try again later
                log.warning("following the alias: %s: %s", type(exc).__name__, exc)
                # Sooner than the next poll (an hour, where a webhook wakes followers): a download that failed
                # once is not left until then. Doubling, so a registry that is down is not hammered.
                wait_s, retry_s = min(interval_s, retry_s), min(interval_s, retry_s * 2)
            deadline = time.monotonic() + wait_s
            while time.monotonic() < deadline:
                time.sleep(min(NUDGE_CHECK_S, interval_s))
                if self._nudges and (now := stamp(self._nudges)) != seen:
                    seen = now
                    break  # a webhook said the alias moved: ask now


class Follower:
    """One poll: ask which version the alias names; switch to it if it is new and passes the checks."""

    def __init__(self, settings: FollowSettings, alias: str) -> None:
        self._settings = settings
        self._alias = alias
        self._client: Any = None

    def __call__(self, source: ModelSource[LoadedModel]) -> None:
        if self._client is None:
            self._client = registry.connect(self._settings.tracking_uri)
        holder = registry.holder(self._client, self._settings.model_name, self._alias)
        if holder is None:
            return
        version = str(holder.version)
        if version == source.current.version or source.refused(version):
            return
        started = time.monotonic()
        lineage = lineage_of_version(self._client, holder, self._alias)
        try:
            runtime = runtime_to_serve(lineage.runtime, self._settings.serve_runtime)
            candidate = self._checked(holder, source.current, runtime)
        except (ContractError, CandidateRefused) as exc:
            source.refuse(version, str(exc))
            return
        source.swap(candidate, lineage.model_dump(exclude_none=True))
        log.info("version %s checked and swapped in %.1f s", version, time.monotonic() - started)

    def _checked(self, holder: Any, current: LoadedModel, runtime: str) -> LoadedModel:
        """The new version, loaded beside the current one, warmed up and checked; CandidateRefused otherwise."""
        from service.models.loader import load_model_dir

        client, name, version = self._client, self._settings.model_name, str(holder.version)
        folder = self._settings.data_dir / "served" / name / version
        # A download that fails (the registry or its artifact store is away) is tried again soon (ModelSource._run);
        # a version whose files are there but do not load is refused.
        model_dir = registry.publish_model(client, str(holder.source), folder)  # through this client only
        try:
            candidate = load_model_dir(model_dir, name, version, runtime=runtime)  # the warm-up
        except ContractError as exc:  # a version this process cannot serve (it needs TensorFlow, say)
            raise CandidateRefused(str(exc)) from None
        except Exception as exc:  # a damaged artifact fails in Keras or MLflow in many ways
            raise CandidateRefused(f"cannot be loaded ({type(exc).__name__}: {str(exc)[:200]})") from None
        differs = candidate.contract.differs_from(current.contract)
        if differs:
            raise CandidateRefused(f"its contract is not the served one: {differs}")
        run = client.get_run(holder.run_id) if holder.run_id else None
        if run is None:
            raise CandidateRefused("it has no training run to check it against")
        metric = self._settings.gate_metric or metrics.default_gate_metric(candidate.contract)
        logged = run.data.metrics.get(metric)
        try:
            scored = score_on(candidate, held_out(client, holder.run_id))[metric]
        except (NoHeldOutRows, ContractError) as exc:
            raise CandidateRefused(f"cannot be checked on its held-out rows: {exc}") from None
        if logged is None or abs(scored - logged) > SCORE_TOLERANCE:
            raise CandidateRefused(
                f"it scores {metric}={scored:.4f} on its held-out rows; its run logged {logged}"
            )
        return candidate


class CandidateRefused(Exception):
    """A version the follower will not serve; the message says why."""


def model_source(
    initial: LoadedModel,
    settings: FollowSettings,
    lineage: dict[str, Any] | None = None,
    on_change: Callable[[str, str], None] | None = None,
) -> ModelSource[LoadedModel]:
    """The source the settings name, started: the packaged model, following the alias if FOLLOW_ALIAS is set."""
    if not settings.follow_alias:
        return ModelSource(initial, lineage, on_change=on_change)
    from service.models.webhook import nudge_file

    _import_before_threads()
    follower = Follower(settings, settings.follow_alias)
    nudges = nudge_file(settings.data_dir, settings.model_name)
    source = ModelSource(initial, lineage, follower, f"following @{settings.follow_alias}", on_change, nudges)
    source.start(settings.follow_interval_s)
    return source


def _import_before_threads() -> None:
    """MLflow, and pandas where it is installed, imported whole here, before the follower's thread starts: imported
    there by its first poll, a request meanwhile saw pandas half-initialized in BentoML's model-store check
    (`LazyType("pandas", "Series")`: AttributeError, a 500). The lean image has no pandas."""
    import contextlib

    import mlflow.tracking  # noqa: F401

    with contextlib.suppress(ImportError):
        import pandas  # noqa: F401


def prometheus_reporter() -> Callable[[str, str], None]:
    """Switches and refusals as a counter in prometheus_client's registry (BentoML's `/metrics` shows it for the
    API; a worker's metrics port for the worker). One counter a process, however many sources it makes."""
    changes = _changes_counter()
    return lambda result, _version: changes.labels(result).inc()


@functools.cache
def _changes_counter() -> Any:
    from prometheus_client import Counter

    return Counter("nbship_model_changes", "Versions a follower switched to or refused.", ["result"])
