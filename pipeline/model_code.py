"""The code a model needs where it is served: custom layers, activations and models kept in modules beside the
notebook, shipped with the model (its `code/` folder, which the service's loader imports before loading).

Keras saves a custom class by its registered name and imports no module of ours when it loads one, and
`mlflow.keras.log_model` ships no code. So, before anything is logged, every class and function the model's
config names is found: Keras's own and installed packages' need nothing; a module beside the notebook is shipped;
what a service could never load is refused with a message that names it: a class or function defined in the
notebook's own cells, one not registered with Keras, a Python lambda.
"""

from __future__ import annotations

import os
import shutil
import sys
import types
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from service.models import reference as held_out_reference
from service.models.contract import ContractError, ModelContract
from service.models.lean import LEAN_KEY
from service.models.loader import CODE_KEY

KERAS_PACKAGES = frozenset({"keras", "keras_hub", "keras_cv", "keras_nlp", "tensorflow", "tf_keras"})
MOVE_IT = (
    "move it to a module beside the notebook (layers.py, say), import it from there, and decorate it with "
    "@keras.saving.register_keras_serializable(package=...)"
)


def modules_to_ship(model: Any) -> list[Path]:
    """The files (a module, or a package's folder) of the model's own code; ContractError naming what a service
    could not load."""
    problems: list[str] = []
    modules: set[str] = set()
    for what, name, module, registered in _objects(model):
        if module in ("__main__", None) or module.startswith("__"):
            problems.append(f"{what} {name!r} is defined in the notebook itself; {MOVE_IT}")
        elif module.split(".")[0] in KERAS_PACKAGES:
            continue
        elif not registered:
            problems.append(
                f"{what} {name!r} ({module}) is not registered with Keras: decorate it with "
                "@keras.saving.register_keras_serializable(package=...)"
            )
        elif not _installed(module):
            modules.add(module.split(".")[0])
    for layer in [model, *model._flatten_layers(include_self=False)]:
        if type(layer).__name__ == "Lambda":
            problems.append(
                f"Lambda layer {layer.name!r}: its Python code cannot be loaded safely where the model is served; "
                "write a layer class instead and " + MOVE_IT.removeprefix("move it ")
            )
    if problems:
        raise ContractError("; ".join(sorted(set(problems))[:5]))
    return sorted(_source(module) for module in modules)


def _objects(model: Any) -> Iterator[tuple[str, str, str, bool]]:
    """(class or function, its name, its module, registered with Keras) for every object of the model's config
    that is not Keras's own, and every layer's class (a subclassed model's are not all in its config)."""
    import keras

    for node in _nodes(keras.saving.serialize_keras_object(model)):
        module, class_name = node.get("module"), node.get("class_name")
        if class_name == "function":  # saved as {"module": "builtins", "config": "package>name" or "name"}
            name = node.get("config")
            if not isinstance(name, str) or _keras_function(name):
                continue
            found = keras.saving.get_registered_object(name) if ">" in name else None
            if found is not None:
                yield "function", name, found.__module__, True
            else:
                in_cells = hasattr(sys.modules.get("__main__"), name)
                yield "function", name, "__main__" if in_cells else (module or "__main__"), False
        elif isinstance(module, str) and module != "builtins" and isinstance(class_name, str):
            registered = node.get("registered_name")
            yield "class", class_name, module, isinstance(registered, str) and ">" in registered
    for layer in [model, *model._flatten_layers(include_self=False)]:
        cls = type(layer)
        if cls.__module__.split(".")[0] not in KERAS_PACKAGES:
            yield "class", cls.__qualname__, cls.__module__, ">" in keras.saving.get_registered_name(cls)


def _nodes(config: Any) -> Iterator[dict[str, Any]]:
    if isinstance(config, dict):
        if "class_name" in config:
            yield config
        for value in config.values():
            yield from _nodes(value)
    elif isinstance(config, (list, tuple)):
        for value in config:
            yield from _nodes(value)


def _keras_function(name: str) -> bool:
    """A function Keras resolves by name itself (an activation such as "relu")."""
    import keras

    try:
        return keras.activations.get(name) is not None
    except ValueError:
        return False


def _installed(module: str) -> bool:
    """The module comes with an installed distribution (site-packages) or Python itself, not beside the notebook."""
    found = sys.modules.get(module) or sys.modules.get(module.split(".")[0])
    file = getattr(found, "__file__", None)
    if not file:
        return True  # built in
    path = Path(file).resolve()
    return any(path.is_relative_to(Path(prefix).resolve()) for prefix in {sys.prefix, sys.base_prefix})


def _source(module: str) -> Path:
    found = sys.modules[module]
    path = Path(str(found.__file__)).resolve()
    return path.parent if path.name == "__init__.py" else path


def _save(
    path: str,
    mlflow_model: Any = None,
    code: Sequence[Path] = (),
    contract: ModelContract | None = None,
    reference: dict[str, Any] | None = None,
    **kwargs: Any,
) -> None:
    """`mlflow.keras.save_model`, then the model's modules copied into its code folder, named in the flavors (the
    key MLflow's other flavors use: mlflow.keras.log_model takes no code, MLflow 3.17), its lean form
    (pipeline/lean.py) with what was made of it in the model's metadata, and its held-out reference
    (service/models/reference.py)."""
    import mlflow.keras

    from pipeline import lean

    mlflow.keras.save_model(path=path, mlflow_model=mlflow_model, **kwargs)
    if code:
        folder = Path(path, CODE_KEY)
        folder.mkdir()
        for source in code:
            if source.is_dir():
                shutil.copytree(source, folder / source.name, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(source, folder / source.name)
        for flavor in ("keras", "python_function"):
            mlflow_model.flavors[flavor][CODE_KEY] = CODE_KEY
    if contract is not None:
        mlflow_model.metadata = {
            **(mlflow_model.metadata or {}),
            LEAN_KEY: lean.convert(kwargs["model"], contract, Path(path)),
        }
    if reference is not None:
        held_out_reference.save(reference, Path(path))
    mlflow_model.save(os.path.join(path, "MLmodel"))


def log_keras_with_code(
    model: Any,
    name: str,
    code: Sequence[Path],
    contract: ModelContract | None = None,
    reference: dict[str, Any] | None = None,
    **kwargs: Any,
) -> Any:
    """Like mlflow.keras.log_model, shipping `code` with the model and, given its contract, its lean form, and its
    held-out reference; returns MLflow's ModelInfo."""
    from mlflow.models import Model

    flavor = types.ModuleType("mlflow.keras")  # Model.log names the flavor after the module's name
    flavor.save_model = _save  # type: ignore[attr-defined]
    return Model.log(
        None,
        name=name,
        flavor=flavor,
        model=model,
        code=list(code),
        contract=contract,
        reference=reference,
        **kwargs,
    )
