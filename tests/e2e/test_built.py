"""`python -m pipeline build` makes a Bento; `bentoml serve <bento>` serves it (from outside the project)."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.conftest import ChampionStore, run_pipeline
from tests.e2e.conftest import BAD_BODIES, free_port, serving

pytestmark = pytest.mark.slow


def test_the_built_bento_serves_the_champion(
    champion_store: ChampionStore, packaged_champion: str, tmp_path: Path
) -> None:
    built = run_pipeline(champion_store, "build")
    assert built.returncode == 0, built.stderr
    bento = built.stdout.split("built Bento ")[1].split()[0]
    assert bento.startswith("nbship:")

    port = free_port()
    command = [sys.executable, "-m", "bentoml", "serve", bento, "--host", "127.0.0.1", "--port", str(port)]
    with (
        serving(command, port, champion_store.env(), cwd=str(tmp_path)) as url,
        httpx.Client(base_url=url) as client,
    ):
        response = client.post("/predict", json={"instances": champion_store.rows.tolist()}, timeout=30)
        assert response.status_code == 200, response.text
        np.testing.assert_allclose(response.json()["probabilities"], champion_store.probabilities, rtol=1e-5)
        lineage = client.get("/model").json()
        assert (lineage["run_id"], lineage["bento_model"]) == (champion_store.run_id, packaged_champion)
        name, body, message, status = BAD_BODIES[0]
        bad = client.post("/predict", content=body, headers={"content-type": "application/json"})
        assert bad.status_code == status and message in bad.json()["detail"], name
