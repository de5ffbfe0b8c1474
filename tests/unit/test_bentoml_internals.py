"""Every place service/serving touches a BentoML internal, pinned: each test fails when an upgrade moves or
changes what the service relies on (the version pin in pyproject.toml is not the guard). The request timeout and
the own socket have tests of their own (test_request_timeout.py, test_own_socket.py; test_service.py checks the
served app carries the timeout)."""

from __future__ import annotations

import inspect
import logging
import os
from pathlib import Path

import bentoml
import numpy as np

from service.http.docs_page import _SWAGGER_FILES
from service.serving import bentoml_files, packaged
from service.serving.api_methods import bind_api_methods
from service.serving.error_log import API_ERROR_LOGGER, drop_client_errors


@bentoml.service
class Tiny:
    @bentoml.api
    def double(self, x: float) -> float:
        return 2 * x


def test_api_methods_are_rebuilt_on_each_access_until_bound_once() -> None:
    instance = Tiny()
    assert Tiny.inner.double.__get__(instance, Tiny.inner) is not Tiny.inner.double.__get__(
        instance, Tiny.inner
    )
    bind_api_methods(instance)
    assert instance.double is instance.double  # what the server reads per request
    assert instance.double(2.0) == 4.0


def test_the_swagger_files_the_docs_page_serves_are_in_bentomls_package() -> None:
    folder = bentoml_files.swagger_dir()
    assert all((folder / name).is_file() for name in _SWAGGER_FILES)


def test_bentoml_logs_api_exceptions_on_the_logger_whose_client_errors_are_dropped() -> None:
    from _bentoml_impl.server import app

    assert inspect.getmodule(app.log_exception).__name__ == API_ERROR_LOGGER
    drop_client_errors()
    assert any(type(f).__name__ == "DropClientErrors" for f in logging.getLogger(API_ERROR_LOGGER).filters)


def test_the_metrics_folder_is_where_bentoml_serves_metrics_from() -> None:
    from bentoml._internal.configuration.containers import BentoMLContainer

    assert Path(BentoMLContainer.prometheus_multiproc_dir.get()) == bentoml_files.metrics_dir()


def test_latest_can_be_set_and_a_bentos_own_store_read(tmp_path: Path, monkeypatch) -> None:
    import bentoml
    from bentoml._internal.configuration.containers import BentoMLContainer

    for version in ("v1", "v2"):
        with bentoml.models.create(f"pinned:{version}") as model:
            np.save(model.path_of("x.npy"), np.zeros(1))
    assert str(bentoml.models.get("pinned:latest").tag) == "pinned:v2"
    packaged.make_latest("pinned:v1")
    assert str(bentoml.models.get("pinned:latest").tag) == "pinned:v1"

    # A Bento keeps its models in a store of its own: BENTO_PATH/models, laid out as the local store.
    store = Path(BentoMLContainer.model_store.get()._path)
    os.symlink(store, tmp_path / "models")
    monkeypatch.setenv("BENTO_PATH", str(tmp_path))
    assert str(packaged.stored_model("pinned:latest").tag) == "pinned:v1"
