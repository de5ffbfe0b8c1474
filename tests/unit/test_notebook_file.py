"""The committed notebooks (the demo and the examples) stay thin: stripped of outputs, parameters tagged and
annotated, logic in pipeline/."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

FOLDER = Path(__file__).resolve().parents[2] / "notebooks"
NOTEBOOKS = sorted(p for p in FOLDER.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
each_notebook = pytest.mark.parametrize(
    "path", NOTEBOOKS, ids=[str(p.relative_to(FOLDER)) for p in NOTEBOOKS]
)


@each_notebook
def test_notebook_is_committed_without_outputs(path: Path):
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code
    assert all(not cell.outputs and cell.execution_count is None for cell in code), (
        f"strip outputs before committing: nbstripout {path}"
    )


@each_notebook
def test_exactly_one_parameters_cell_of_annotated_assignments(path: Path):
    notebook = nbformat.read(path, as_version=4)
    tagged = [cell for cell in notebook.cells if "parameters" in cell.metadata.get("tags", [])]
    assert len(tagged) == 1
    lines = [line for line in tagged[0].source.splitlines() if line.strip()]
    assert all(": " in line.split("=")[0] for line in lines), "annotate every parameter: `name: type = value`"
