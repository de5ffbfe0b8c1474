"""The house's rules, read off the code (the `ast` of every module): dependencies run one way.

- Nothing in `service/` imports `pipeline/`: the image ships no training code.
- `pipeline/` imports of `service` only the model (`service.models`), the settings base (`service.settings`),
  the BentoML store's conventions it packages by (`service.serving.packaged`) and the live evidence's records and
  references (`service.evidence`).
- Within `service/`, each part imports only the parts before it in LAYERS; no two parts import each other.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
# Each part may import itself and the parts before it.
LAYERS = (
    "service.models",
    "service.settings",
    "service.http",
    "service.evidence",
    "service.serving",
    "service.jobs",
    "service.service",
    "service.stack",
)
PIPELINE_MAY_IMPORT = (
    "service.models",
    "service.settings",
    "service.serving.packaged",
    "service.evidence",  # a version's reference is made when it is logged; the monitor reads what is recorded
)


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> Iterator[str]:
    """Every module `path` imports, at the top or inside a function (a lazy import is still a dependency)."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def part(module: str) -> str | None:
    """The part of `service` a module belongs to (its folder, or a top-level module of its own)."""
    return next((layer for layer in LAYERS if module == layer or module.startswith(layer + ".")), None)


def edges(package: str) -> set[tuple[str, str]]:
    """(importing module, imported module) for every module of `package` and every import of ours."""
    found = set()
    for path in (ROOT / package).rglob("*.py"):
        for imported in imports(path):
            if imported.split(".")[0] in ("service", "pipeline"):
                found.add((module_name(path), imported))
    return found


def test_service_never_imports_the_pipeline() -> None:
    offending = sorted(f"{a} imports {b}" for a, b in edges("service") if b.split(".")[0] == "pipeline")
    assert not offending


def test_the_pipeline_imports_only_the_model_the_settings_and_the_store_conventions() -> None:
    offending = sorted(
        f"{a} imports {b}"
        for a, b in edges("pipeline")
        if b.split(".")[0] == "service"
        and b != "service"
        and not any(b == allowed or b.startswith(allowed + ".") for allowed in PIPELINE_MAY_IMPORT)
        # `from service.models import metrics` names a module of an allowed part
        and not any(allowed.startswith(b + ".") for allowed in PIPELINE_MAY_IMPORT)
    )
    assert not offending


def test_every_module_of_the_service_belongs_to_a_part() -> None:
    orphans = [
        module_name(path)
        for path in (ROOT / "service").rglob("*.py")
        if module_name(path) != "service" and part(module_name(path)) is None
    ]
    assert not orphans


def test_parts_import_only_the_parts_before_them() -> None:
    offending = []
    for importer, imported in edges("service"):
        source, target = part(importer), part(imported)
        if source and target and LAYERS.index(target) > LAYERS.index(source):
            offending.append(f"{importer} ({source}) imports {imported} ({target})")
    assert not sorted(offending)


def test_no_cycle_between_parts() -> None:
    graph: dict[str, set[str]] = {}
    for importer, imported in edges("service"):
        source, target = part(importer), part(imported)
        if source and target and source != target:
            graph.setdefault(source, set()).add(target)

    def reaches(start: str, goal: str, seen: frozenset[str] = frozenset()) -> bool:
        return any(
            n == goal or (n not in seen and reaches(n, goal, seen | {n})) for n in graph.get(start, ())
        )

    assert not [node for node in graph if reaches(node, node)]


def test_the_bento_ships_the_service_without_the_pipeline_or_the_local_stack() -> None:
    bentofile = yaml.safe_load((ROOT / "bentofile.yaml").read_text())
    assert bentofile["include"] == ["service/**/*.py"]
    assert "service/stack/" in bentofile["exclude"]
    assert not any("pipeline" in entry for entry in bentofile["include"])


def test_the_checks_see_a_forbidden_import(tmp_path: Path) -> None:
    """The walker finds imports inside functions and `from x import y` forms (a check that cannot fail is none)."""
    module = tmp_path / "m.py"
    module.write_text(
        "def f():\n    from pipeline.settings import PipelineSettings\nimport service.jobs.worker\n"
    )
    assert {"pipeline.settings", "pipeline.settings.PipelineSettings", "service.jobs.worker"} <= set(
        imports(module)
    )
    assert part("service.jobs.worker") == "service.jobs" and part("service.settings") == "service.settings"
