"""The notebook's parameters: read from its tagged `parameters` cell, checked before any kernel starts."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import BadParameter

# Set by the pipeline itself, never by a person.
RESERVED = frozenset({"pipeline_invocation"})

_CASTS = {"int", "float", "str", "bool"}


@dataclass(frozen=True)
class Parameter:
    name: str
    type_name: str
    default: Any
    help: str


def declared(notebook: Path) -> dict[str, Parameter]:
    """The parameters the notebook declares, with the type of their annotation (`epochs: int = 30`)."""
    if not notebook.is_file():
        raise BadParameter(f"notebook not found: {notebook}")
    found: dict[str, Parameter] = {}
    for name, spec in _inspect(notebook).items():
        default = _literal(spec["default"])
        type_name = spec["inferred_type_name"]
        if type_name not in _CASTS:
            type_name = type(default).__name__ if type(default).__name__ in _CASTS else "str"
        found[name] = Parameter(name, type_name, default, spec.get("help") or "")
    if not found:
        raise BadParameter(f"{notebook} has no cell tagged 'parameters'")
    return found


def resolve(declared_params: dict[str, Parameter], overrides: dict[str, str]) -> dict[str, Any]:
    """Defaults of the notebook with `overrides` (raw strings from the command line) cast to their types."""
    values = {name: p.default for name, p in declared_params.items() if name not in RESERVED}
    for name, raw in overrides.items():
        if name in RESERVED:
            raise BadParameter(f"parameter {name!r} is set by the pipeline and cannot be given")
        if name not in declared_params:
            known = ", ".join(sorted(set(declared_params) - RESERVED))
            raise BadParameter(f"unknown parameter {name!r}; the notebook declares: {known}")
        values[name] = cast(declared_params[name], raw)
    return values


def cast(param: Parameter, raw: Any) -> Any:
    """`raw` as the parameter's type; a string is read as a Python literal where the type needs it."""
    value = raw
    if isinstance(raw, str) and param.type_name != "str":
        try:
            value = ast.literal_eval(raw.strip())
        except (ValueError, SyntaxError):
            lowered = raw.strip().lower()
            value = {"true": True, "false": False}.get(lowered, raw)
    expected = param.type_name
    if expected == "float" and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    ok = {
        "int": isinstance(value, int) and not isinstance(value, bool),
        "float": isinstance(value, float),
        "bool": isinstance(value, bool),
        "str": isinstance(value, str),
    }[expected]
    if not ok:
        raise BadParameter(f"parameter {param.name!r} expects {expected}, got {raw!r}")
    return value


def _literal(source: str) -> Any:
    try:
        return ast.literal_eval(source)
    except (ValueError, SyntaxError):
        return source


def _inspect(notebook: Path) -> dict[str, Any]:
    """papermill's reading of the parameters cell. A notebook saved without kernel metadata (written by a script,
    say) is read as a Python one, as the pipeline runs it with the `python3` kernel."""
    import tempfile

    import nbformat
    import papermill

    node = nbformat.read(notebook, as_version=4)
    if node.metadata.get("kernelspec", {}).get("name"):
        return papermill.inspect_notebook(str(notebook))
    node.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "Python 3"}
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / notebook.name
        nbformat.write(node, copy)
        return papermill.inspect_notebook(str(copy))
