"""The notebook's parameters: read from its tagged `parameters` cell, checked before any kernel starts.

Each line of the cell declares a name, a type and a default; its trailing comment is the help, which may end
with the values the parameter takes, checked as the type is:

    epochs: int = 30  # passes over the training rows [1, 1000]
    dropout: float = 0.1  # dropout rate [0, 1)
    learning_rate: float = 0.001  # Adam step size (0, 1]
    optimizer: str = "adam"  # choices: adam|sgd

`[` and `]` include the bound, `(` and `)` exclude it; an empty bound is unbounded (`(0, ]` is any positive number).
"""

from __future__ import annotations

import ast
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.errors import BadParameter

_CASTS = {"int", "float", "str", "bool"}

_NUMBER = r"\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)?\s*"
_RANGE = re.compile(rf"\s*([\[(]){_NUMBER},{_NUMBER}([\])])\s*$")
_CHOICES = re.compile(r"\s*choices:\s*([^\s|]+(?:\s*\|\s*[^\s|]+)*)\s*$")


@dataclass(frozen=True)
class Rule:
    """The values a parameter takes, as its help comment declares them: a range or choices."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[str, ...] = ()

    def allows(self, value: Any) -> bool:
        if self.choices:
            return str(value) in self.choices
        if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
            return False
        low_ok = self.low is None or (value > self.low if self.low_open else value >= self.low)
        high_ok = self.high is None or (value < self.high if self.high_open else value <= self.high)
        return low_ok and high_ok

    def __str__(self) -> str:
        if self.choices:
            return "one of " + ", ".join(self.choices)
        low = "-inf" if self.low is None else _number(self.low)
        high = "inf" if self.high is None else _number(self.high)
        return f"{'(' if self.low_open else '['}{low}, {high}{')' if self.high_open else ']'}"


def parse_rule(help_text: str) -> tuple[str, Rule | None]:
    """The help without its trailing declaration, and the rule it declares (None: any value of the type)."""
    if match := _RANGE.search(help_text):
        opening, low, high, closing = match.groups()
        rule = Rule(
            low=None if low is None else float(low),
            high=None if high is None else float(high),
            low_open=opening == "(" or low is None,
            high_open=closing == ")" or high is None,
        )
        return help_text[: match.start()].rstrip(), rule
    if match := _CHOICES.search(help_text):
        choices = tuple(choice.strip() for choice in match.group(1).split("|"))
        return help_text[: match.start()].rstrip(), Rule(choices=choices)
    return help_text, None


@dataclass(frozen=True)
class Parameter:
    name: str
    type_name: str
    default: Any
    help: str
    rule: Rule | None = field(default=None)

    def check(self, value: Any) -> Any:
        """`value` if the parameter's declared range or choices allow it."""
        if self.rule is not None and not self.rule.allows(value):
            raise BadParameter(f"parameter {self.name!r} must be in {self.rule}, got {value!r}")
        return value


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
        help_text, rule = parse_rule(spec.get("help") or "")
        if rule is not None and rule.choices and type_name != "str":
            raise BadParameter(f"{notebook}: parameter {name!r} declares choices but is not a str")
        if rule is not None and not rule.choices and type_name not in ("int", "float"):
            raise BadParameter(f"{notebook}: parameter {name!r} declares a range but is not an int or float")
        found[name] = Parameter(name, type_name, default, help_text, rule)
    if not found:
        raise BadParameter(f"{notebook} has no cell tagged 'parameters'")
    return found


def resolve(declared_params: dict[str, Parameter], overrides: dict[str, str]) -> dict[str, Any]:
    """Defaults of the notebook with `overrides` (raw strings from the command line) cast to their types."""
    values = {name: p.default for name, p in declared_params.items()}
    for name, raw in overrides.items():
        if name not in declared_params:
            known = ", ".join(sorted(declared_params))
            raise BadParameter(f"unknown parameter {name!r}; the notebook declares: {known}")
        values[name] = cast(declared_params[name], raw)
    for name, value in values.items():  # a default outside its own range is the notebook's mistake, named too
        declared_params[name].check(value)
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


def _number(bound: float) -> str:
    return str(int(bound)) if bound.is_integer() else repr(bound)
