"""A version's files published for every process of a host (service.models.registry.publish_model): processes
that fetch the same version at once each read a complete copy, never a file another is still writing (the
API's two workers once did: one read the reference half-written and refused the version)."""

from __future__ import annotations

import threading
from pathlib import Path

from service.models import registry
from service.models.reference import FILE, load
from tests.conftest import ChampionStore


def test_processes_fetching_one_version_at_once_all_read_a_complete_copy(
    champion_store: ChampionStore, tmp_path: Path
) -> None:
    client = registry.connect(f"sqlite:///{champion_store.data_dir / 'mlflow.db'}")
    source = str(client.get_model_version("digits-classifier", champion_store.version).source)
    folder = tmp_path / "served" / "digits-classifier" / champion_store.version
    found: list[Path] = []
    errors: list[BaseException] = []

    def fetch() -> None:
        try:
            model_dir = registry.publish_model(client, source, folder)
            assert load(model_dir) is not None  # the reference parses: the file is whole
            found.append(model_dir)
        except BaseException as exc:  # reported below, with the others
            errors.append(exc)

    threads = [threading.Thread(target=fetch) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors and len(found) == 4 and len(set(found)) == 1
    assert (found[0] / FILE).is_file() and (found[0] / "MLmodel").is_file()
    assert sorted(p.name for p in folder.parent.iterdir()) == [champion_store.version]  # no staging left
