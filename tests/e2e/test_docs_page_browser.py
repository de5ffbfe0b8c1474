"""The OpenAPI page in a real browser (headless Chromium): it renders the routes and asks nothing of any host
but the service; and every service URL the README names answers on the served service."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from support.documentation import documentation

from tests.conftest import KeyedService

CHROMIUM = shutil.which("chromium")
# Quiet, isolated, and unable to resolve any name: a page that tries another host fails, and the test sees it.
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-extensions",
    "--disable-default-apps", "--no-pings", "--disable-domain-reliability", "--bwsi",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1", "--virtual-time-budget=15000",
]  # fmt: skip
ROUTES = ["/predict", "/model", "/jobs/", "/jobs/{job_id}", "/livez", "/readyz", "/metrics"]


@pytest.fixture(scope="module")
def client(keyed_service: KeyedService) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=keyed_service.url, timeout=30) as client:
        yield client


def chromium(url: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install chromium; .ci/run installs it)")
    command = [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args, url]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)


def page_requests(net_log: Path, site: str) -> list[str]:
    """URLs the page asked for: requests whose network isolation key has the page's site as its top frame
    (Chromium's own update and account checks have another key and are not the page's doing)."""
    log = json.loads(net_log.read_text())
    start = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    requested = []
    for event in log["events"]:
        params = event.get("params", {})
        top_frame = params.get("network_isolation_key", "").split(" ")[0]
        if event["type"] == start and "url" in params and top_frame == site:
            requested.append(params["url"])
    return requested


@pytest.mark.parametrize("path", ["/", "/docs"])
def test_the_page_renders_the_routes_and_loads_nothing_from_elsewhere(
    keyed_service: KeyedService, tmp_path: Path, path: str
) -> None:
    url = keyed_service.url + path
    net_log = tmp_path / "net.json"
    dom = chromium(url, tmp_path / "profile", f"--log-net-log={net_log}", "--dump-dom").stdout
    rendered = set(re.findall(r'class="opblock-summary-path" data-path="([^"]+)"', dom))
    assert set(ROUTES) <= rendered, rendered
    assert "nbship prediction service" in dom and "digits-classifier" in dom
    assert "BentoML" not in dom.replace("served by BentoML", "")  # no stock boilerplate, badges or links

    requested = page_requests(net_log, "http://127.0.0.1")
    assert {f"{keyed_service.url}/docs.json", f"{keyed_service.url}/docs/assets/swagger-ui-bundle.js"} <= set(
        requested
    )
    elsewhere = [request for request in requested if urlsplit(request).hostname != "127.0.0.1"]
    assert elsewhere == []

    screenshot = tmp_path / "docs.png"
    chromium(url, tmp_path / "profile-2", "--window-size=1280,1600", f"--screenshot={screenshot}")
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and screenshot.stat().st_size > 20_000


def test_the_page_forbids_other_hosts_to_the_browser(client: httpx.Client) -> None:
    for path in ("/", "/docs", "/docs/assets/nbship-docs.js"):
        answer = client.get(path)
        assert answer.status_code == 200, path
        assert "default-src 'none'" in answer.headers["content-security-policy"]


def test_the_document_is_the_projects(client: httpx.Client) -> None:
    document = client.get("/docs.json").json()
    assert document["info"]["title"] == "nbship prediction service"
    assert re.fullmatch(r"digits-classifier \d+", document["info"]["version"])
    tags = {path: item[method]["tags"] for path, item in document["paths"].items() for method in item}
    assert (tags["/predict"], tags["/model"], tags["/jobs/"]) == (["predict"], ["model"], ["jobs"])
    assert all(op["summary"] for item in document["paths"].values() for op in item.values())


def readme_service_paths() -> set[str]:
    """Service paths the README and docs/ name: in URLs of the local service, or alone in backticks (`/docs`)."""
    readme = documentation()
    in_urls = re.findall(r"http://127\.0\.0\.1:3000(/[\w./-]*)", readme)
    alone = re.findall(r"`(/[\w./{}-]*)`", readme)
    filesystem = {"/tmp"}
    return {path for path in in_urls + alone if path not in filesystem} | {"/"}


def test_every_service_url_the_readme_names_answers(
    client: httpx.Client, keyed_service: KeyedService
) -> None:
    paths = readme_service_paths()
    assert {"/", "/docs", "/docs.json", "/predict", "/model", "/metrics", "/livez", "/readyz"} <= paths
    for path in sorted(paths):
        answer = client.get(path.replace("{id}", "0" * 32), headers=keyed_service.auth("alice"))
        # POST routes answer GET with 405; an unknown job id is a 404 with its own message, not a missing route.
        assert answer.status_code in (200, 405) or answer.json()["detail"] != "Not Found", (path, answer.text)
