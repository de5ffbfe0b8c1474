"""Every command the README and the reference pages under docs/ show names something that exists: a nox session,
a pipeline subcommand, a setting; every link of every page (the benchmark figures' too) leads somewhere, and every
file of the checkout a page names is there."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from support.documentation import EVERY_PAGE, anchors, documentation, links, named_files

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
DOCS = documentation()  # the README and docs/*.md


def nox_sessions() -> set[str]:
    tree = ast.parse((ROOT / "noxfile.py").read_text())
    names = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            for decorator in node.decorator_list:
                if isinstance(decorator, ast.Call) and getattr(decorator.func, "attr", "") == "session":
                    explicit = [kw.value.value for kw in decorator.keywords if kw.arg == "name"]
                    names.add(explicit[0] if explicit else node.name)
    return names


def test_readme_nox_sessions_exist():
    used = set(re.findall(r"\./noxw -s ([\w-]+)", DOCS))
    assert {"pipeline", "tests"} <= used
    assert used <= nox_sessions()


def test_readme_pipeline_subcommands_exist():
    from pipeline.__main__ import parser

    subcommands = next(a for a in parser()._actions if a.dest == "command").choices
    used = set(re.findall(r"python -m pipeline (\w+)", DOCS))
    assert used and used <= set(subcommands)


def test_ci_runs_the_readme_test_command():
    assert "./noxw -s tests" in README
    assert "./noxw -s tests" in (ROOT / ".ci" / "run").read_text()


def test_readme_predict_example_is_a_real_digit():
    import json

    from sklearn.datasets import load_digits

    body = re.search(r"-d '(\{\"instances\".*?\})'", README)
    assert body, "the README shows a /predict request"
    rows = json.loads(body.group(1))["instances"]
    assert rows == [load_digits().data[0].tolist()]


def test_the_settings_reference_is_made_from_the_settings_classes():
    from support.settings_doc import DOC, own_fields, render, sections

    assert DOC.read_text() == render(), (
        "run `python tests/support/settings_doc.py` to update docs/settings.md"
    )
    undescribed = [
        name for _, cls in sections() for name, info in own_fields(cls).items() if not info.description
    ]
    assert not undescribed


def test_the_store_command_prints_the_default_tracking_uri_to_copy(tmp_path):
    import os
    import subprocess
    import sys

    env = {key: value for key, value in os.environ.items() if key != "MLFLOW_TRACKING_URI"}
    printed = subprocess.run(
        [sys.executable, "-m", "pipeline", "store"],
        env={**env, "DATA_DIR": str(tmp_path)}, capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    assert printed == f"sqlite:///{tmp_path.resolve()}/mlflow.db\n"
    assert "`python -m pipeline store` prints it" in DOCS


@pytest.mark.parametrize("page", EVERY_PAGE, ids=lambda page: str(page.relative_to(ROOT)))
def test_every_link_of_a_page_leads_somewhere(page: Path) -> None:
    broken = []
    for target in links(page):
        if re.match(r"[a-z]+:", target):  # another site: not checked here
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists() or (anchor and linked.suffix == ".md" and anchor not in anchors(linked)):
            broken.append(target)
    assert not broken, f"{page.relative_to(ROOT)} links to what is not there: {broken}"


@pytest.mark.parametrize("page", EVERY_PAGE, ids=lambda page: str(page.relative_to(ROOT)))
def test_every_file_a_page_names_is_in_the_checkout(page: Path) -> None:
    missing = sorted(name for name in named_files(page) if not (ROOT / name).exists())
    assert not missing, f"{page.relative_to(ROOT)} names files that are not there: {missing}"
