"""The names a notebook gives itself: the registered model its versions go to and the experiment its runs go to,
read from its tagged parameters cell (`registered_model_name: str = "wine-classifier"`) without starting anything.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

# Notebook parameters that name things, and the setting each one is: declared, the notebook's default wins over
# the setting's default, the setting (MODEL_NAME, EXPERIMENT_NAME) over the notebook's, and `-p` over both.
NAME_PARAMETERS = {"registered_model_name": "model_name", "experiment_name": "experiment_name"}


def declared_name(notebook: Path, parameter: str) -> str | None:
    """The string default the notebook's parameters cell gives `parameter`, or None (no such parameter, no
    parameters cell, or no notebook there: the caller falls back to the file's name)."""
    try:
        cells = json.loads(notebook.read_text())["cells"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    for cell in cells:
        if cell.get("cell_type") == "code" and "parameters" in cell.get("metadata", {}).get("tags", ()):
            source = "".join(cell.get("source", ""))
            try:
                tree = ast.parse(source)
            except SyntaxError:
                return None
            return _string_assigned(tree, parameter)
    return None


def _string_assigned(tree: ast.Module, name: str) -> str | None:
    for node in tree.body:
        if isinstance(node, ast.AnnAssign):
            targets: list[ast.expr] = [node.target]
        elif isinstance(node, ast.Assign):
            targets = node.targets
        else:
            continue
        value = node.value
        if any(isinstance(t, ast.Name) and t.id == name for t in targets) and isinstance(value, ast.Constant):
            return value.value if isinstance(value.value, str) and value.value else None
    return None
