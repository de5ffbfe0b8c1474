"""Test layers by folder: tests/unit (no servers), tests/integration (real servers started by fixtures),
tests/e2e (served and built service, the container image), tests/fuzz (schemathesis against the served
service, only with `--fuzz`). The folder sets the marker."""

from __future__ import annotations

from pathlib import Path

import pytest

LAYERS = {"integration": pytest.mark.integration, "e2e": pytest.mark.e2e, "fuzz": pytest.mark.fuzz}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--fuzz", action="store_true", help="run tests/fuzz (schemathesis; `./noxw -s fuzz`)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        layer = Path(str(item.fspath)).parent.name
        if layer in LAYERS:
            item.add_marker(LAYERS[layer])
    # The fuzz run takes minutes: only with --fuzz (`./noxw -s fuzz`), never in the default run.
    if not config.getoption("--fuzz"):
        fuzz = [item for item in items if Path(str(item.fspath)).parent.name == "fuzz"]
        if fuzz:
            config.hook.pytest_deselected(items=fuzz)
            items[:] = [item for item in items if item not in fuzz]
    # The longest files first, so that the run's two test processes end together (the test processes take whole
    # files in this order: noxfile.py); then the rest as collected, the e2e layer before the quicker ones.
    items.sort(key=lambda item: _LONGEST_FIRST.get(item.nodeid.split("::", 1)[0], len(_LONGEST_FIRST)))


# --- The served model (issue 3): a tiny model trained once, registered as @champion in a tmp MLflow store. ---

import os  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from dataclasses import dataclass  # noqa: E402

import numpy as np  # noqa: E402
from support.broker_share import RESTARTS_BROKER, holding_broker  # noqa: E402
from support.processes import stop_all, stop_orphans  # noqa: E402

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SERVED_ROWS = 20
_BENTOML_HOME = pytest.StashKey[str]()


def pytest_configure(config: pytest.Config) -> None:
    """A BentoML home of the test run's own: tests never touch ~/bentoml (subprocesses inherit it). Servers a
    killed run left behind are stopped first; SIGTERM interrupts the run as Ctrl-C does, so that every fixture
    stops what it started (nox sends SIGTERM when it is interrupted)."""
    home = tempfile.mkdtemp(prefix="nbship-bentoml-")
    config.stash[_BENTOML_HOME] = home
    os.environ["BENTOML_HOME"] = home
    stop_orphans()
    signal.signal(signal.SIGTERM, _interrupted)
    # A run started as a script's background job has SIGINT ignored, and every server it starts would inherit that
    # and ignore Ctrl-C (the stack's and an interrupted run's tests send it): Python's own handler instead.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _interrupted(*_: object) -> None:
    raise KeyboardInterrupt


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[object]:
    """A test that uses the machine's RabbitMQ holds it shared with the run's other process, one that restarts it
    (marked `restarts_broker`) holds it alone: from the setup of the fixtures it is the first to need to their
    teardown (tests/support/broker_share.py)."""
    if "amqp_url" not in getattr(item, "fixturenames", ()):
        return (yield)
    with holding_broker(alone=item.get_closest_marker(RESTARTS_BROKER) is not None):
        return (yield)


# Files that share an expensive session fixture run in the same test process, which then makes it once: the
# served service with API keys (`keyed_service`, a `bentoml serve` of its own). Every other file is its own unit.
SHARING_A_SERVER = {
    "tests/e2e/test_access_served.py": "keyed_service",
    "tests/e2e/test_docs_page_browser.py": "keyed_service",
    "tests/fuzz/test_fuzz_served.py": "keyed_service",
}

# path -> rank: the compose test (about 10 minutes), then the keyed service's files (with the fuzz tests, as long).
_LONGEST_FIRST = {"tests/e2e/test_compose_up.py": 0, **dict.fromkeys(SHARING_A_SERVER, 1)}


def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object | None:
    """`--dist loadfile` (noxfile.py), with the files of SHARING_A_SERVER handed to one process as one unit."""
    if config.getoption("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class SharingScheduling(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return SHARING_A_SERVER.get(path, path)

    return SharingScheduling(config, log)


_SECONDS_BY_FILE: dict[str, float] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Setup, call and teardown of every test, added up by file (module and session fixtures count in the first
    test that needs them), for the table of docs/testing.md."""
    path = report.nodeid.split("::", 1)[0]
    _SECONDS_BY_FILE[path] = _SECONDS_BY_FILE.get(path, 0.0) + report.duration


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    slowest = sorted(_SECONDS_BY_FILE.items(), key=lambda item: -item[1])[:10]
    if slowest and sum(_SECONDS_BY_FILE.values()) > 60:
        terminalreporter.section("slowest files (minutes, fixtures included)")
        for path, seconds in slowest:
            terminalreporter.write_line(f"{seconds / 60:6.1f}  {path}")


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    """After the fixtures' own teardown: any server still running (a run interrupted mid-start) is stopped."""
    stop_all()


def pytest_unconfigure(config: pytest.Config) -> None:
    home = config.stash.get(_BENTOML_HOME, None)
    if home:
        shutil.rmtree(home, ignore_errors=True)


@dataclass(frozen=True)
class ChampionStore:
    data_dir: Path  # PipelineSettings(data_dir=...) of the tmp MLflow store
    version: str
    run_id: str
    rows: np.ndarray  # float32 [SERVED_ROWS, 64] test rows
    probabilities: np.ndarray  # the Keras model's own predictions for `rows` (predict_on_batch)

    def env(self, **extra: str) -> dict[str, str]:
        """Environment of a subprocess using this store (`python -m pipeline ...`, servers)."""
        env = {key: value for key, value in os.environ.items() if key != "MLFLOW_TRACKING_URI"}
        served = {
            "DATA_DIR": str(self.data_dir),
            "MODEL_NAME": "digits-classifier",
            "TF_CPP_MIN_LOG_LEVEL": "3",
        }
        return {**env, **served, **extra}


@pytest.fixture(scope="session")
def champion_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChampionStore]:
    """Train (1 epoch, in process) and register a digits model as @champion of a tmp store."""
    from service.models.quiet import quiet

    quiet()
    from support.digits import build_model, fit, load_split, log_and_register

    from pipeline import lineage, registry, tracking
    from pipeline.settings import PipelineSettings

    saved_uri = os.environ.get("MLFLOW_TRACKING_URI")
    settings = PipelineSettings(data_dir=tmp_path_factory.mktemp("mlflow-store"), mlflow_tracking_uri=None)
    client = tracking.connect(settings)
    try:
        split = load_split()
        model = build_model(hidden_units=32, learning_rate=0.01, dropout=0.0, seed=0)
        fit(model, split, epochs=1, batch_size=64)
        tags = lineage.run_tags(settings.notebook, {"epochs": 1})
        version = log_and_register(client, settings, model, split, tags)
        run_id = str(version.run_id)
        registry.promote(client, settings.model_name, settings.champion_alias, str(version.version))
        rows = split.x_test[:SERVED_ROWS]
        probabilities = np.asarray(model.predict_on_batch(rows))
    finally:
        if saved_uri is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = saved_uri
    yield ChampionStore(settings.data_dir, str(version.version), run_id, rows, probabilities)


def run_pipeline(store: ChampionStore, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`python -m pipeline ARGS` on the store, as a person runs it."""
    return pipeline_command(store.env(**env), *args)


def pipeline_command(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m pipeline ARGS` with the environment `env`, output captured."""
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="session")
def packaged_champion(champion_store: ChampionStore) -> str:
    """The store's champion packaged into the run's BentoML home; returns its BentoML model tag."""
    done = run_pipeline(champion_store, "package")
    assert done.returncode == 0, done.stderr
    return done.stdout.split(" as BentoML model ")[1].strip()


# --- The job layer's servers (issue 4): nx-27017 (or MONGO_URL) and RabbitMQ, for integration and e2e tests. ---

from support.job_servers import delete_queues, ensure_broker, fresh_job_settings, nx_server  # noqa: E402
from support.processes import free_port  # noqa: E402

from service.settings import WorkerSettings  # noqa: E402


@pytest.fixture(scope="session")
def mongo_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """MONGO_URL if given, else an nx-27017 server process of the test run."""
    if os.environ.get("MONGO_URL"):
        yield os.environ["MONGO_URL"]
        return
    with nx_server(tmp_path_factory.mktemp("nx-27017"), free_port()) as url:
        yield url


@pytest.fixture(scope="session")
def is_nx(mongo_url: str) -> bool:
    return not os.environ.get("MONGO_URL")


@pytest.fixture(scope="session")
def amqp_url() -> str:
    return ensure_broker()


@pytest.fixture
def job_settings(mongo_url: str, amqp_url: str) -> Iterator[WorkerSettings]:
    """A database and queues of the test's own, deleted afterwards."""
    settings = fresh_job_settings(mongo_url, amqp_url)
    yield settings
    delete_queues(settings)


# --- The service with API keys (issue "Hardening"): served with the champion and the job servers. ---

from support.job_servers import settings_env  # noqa: E402
from support.served import served_service  # noqa: E402


@dataclass(frozen=True)
class KeyedService:
    url: str
    keys: dict[str, str]  # API key name -> key

    def auth(self, name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[name]}"}


@pytest.fixture(scope="session")
def keyed_service(
    packaged_champion: str,
    champion_store: ChampionStore,
    mongo_url: str,
    amqp_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[KeyedService]:
    """`bentoml serve` with API_KEYS for alice and bob and default limits; the job store up, no job worker."""
    keys = {name: f"{name}-{name[0] * 40}" for name in ("alice", "bob")}
    settings = fresh_job_settings(mongo_url, amqp_url)
    env = champion_store.env(
        **settings_env(settings),
        API_KEYS=",".join(f"{name}:{key}" for name, key in keys.items()),
        WORKERS="1",
    )
    log = tmp_path_factory.mktemp("keyed-service") / "service.log"
    try:
        with served_service(free_port(), env, log) as url:
            yield KeyedService(url, keys)
    finally:
        delete_queues(settings)
