"""A small kustomize renderer for tests: the subset deploy/k8s uses, so manifests are checked with no binary.

No kustomize binary installs from the registries these machines reach (Debian's kubernetes-client is 1.20,
whose built-in kustomize v2 predates `labels`; PyPI's bindings need Python 3.14). Supported: `resources`
(files and folders), `namespace`, `labels` (pairs, includeSelectors, includeTemplates), `commonLabels`,
`configMapGenerator` and `secretGenerator` (`envs`, `literals`) with `generatorOptions.disableNameSuffixHash`.
Anything else is refused rather than ignored, and tests compare the result with a real kustomize wherever
one is on PATH.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import yaml

Manifest = dict[str, Any]

SUPPORTED = {
    "apiVersion",
    "kind",
    "resources",
    "namespace",
    "labels",
    "commonLabels",
    "configMapGenerator",
    "secretGenerator",
    "generatorOptions",
}
# Where a workload keeps its selector and pod template labels, by kind.
SELECTOR_PATHS = {
    "Deployment": ("spec", "selector", "matchLabels"),
    "StatefulSet": ("spec", "selector", "matchLabels"),
    "DaemonSet": ("spec", "selector", "matchLabels"),
    "Service": ("spec", "selector"),
    "PodDisruptionBudget": ("spec", "selector", "matchLabels"),
}
TEMPLATE_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job"}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}


class UnsupportedKustomization(Exception):
    pass


def load_documents(path: Path) -> list[Manifest]:
    """YAML documents of a file, aliases expanded into independent copies (as kustomize does): a JSON round
    trip, because a deep copy keeps the sharing of aliased nodes."""
    return [json.loads(json.dumps(doc)) for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def render(folder: Path) -> list[Manifest]:
    """What `kustomize build FOLDER` prints, as a list of objects (order not significant)."""
    kustomization = _kustomization(folder)
    unknown = set(kustomization) - SUPPORTED
    if unknown:
        raise UnsupportedKustomization(f"{folder}: this renderer does not implement {sorted(unknown)}")
    objects: list[Manifest] = []
    for entry in kustomization.get("resources", []):
        if Path(entry).is_absolute():
            raise UnsupportedKustomization(f"{folder}: kustomize refuses the absolute path {entry}")
        target = (folder / entry).resolve()
        objects.extend(render(target) if target.is_dir() else load_documents(target))
    objects.extend(_generated(folder, kustomization))
    _check_unique(objects, folder)
    if "namespace" in kustomization:
        for obj in objects:
            if obj["kind"] not in CLUSTER_SCOPED:
                obj["metadata"]["namespace"] = kustomization["namespace"]
    if "commonLabels" in kustomization:
        _label(objects, kustomization["commonLabels"], selectors=True, templates=True)
    for entry in kustomization.get("labels", []):
        selectors = bool(entry.get("includeSelectors", False))
        templates = selectors or bool(entry.get("includeTemplates", False))
        _label(objects, entry["pairs"], selectors=selectors, templates=templates)
    return objects


def _kustomization(folder: Path) -> Manifest:
    for name in ("kustomization.yaml", "kustomization.yml", "Kustomization"):
        if (folder / name).is_file():
            data = yaml.safe_load((folder / name).read_text())
            if not isinstance(data, dict):
                raise UnsupportedKustomization(f"{folder / name} is not a mapping")
            return data
    raise FileNotFoundError(f"no kustomization file in {folder}")


def _generated(folder: Path, kustomization: Manifest) -> list[Manifest]:
    generators = kustomization.get("configMapGenerator", []) + kustomization.get("secretGenerator", [])
    if generators and not kustomization.get("generatorOptions", {}).get("disableNameSuffixHash", False):
        raise UnsupportedKustomization("name hash suffixes are not implemented: set disableNameSuffixHash")
    if set(kustomization.get("generatorOptions", {})) - {"disableNameSuffixHash"}:
        raise UnsupportedKustomization("generatorOptions other than disableNameSuffixHash")
    made = [_config_map(folder, spec) for spec in kustomization.get("configMapGenerator", [])]
    made += [_secret(folder, spec) for spec in kustomization.get("secretGenerator", [])]
    return made


def _generator_data(folder: Path, spec: Manifest) -> dict[str, str]:
    unknown = set(spec) - {"name", "envs", "literals", "type"}
    if unknown:
        raise UnsupportedKustomization(f"generator {spec.get('name')}: {sorted(unknown)}")
    data: dict[str, str] = {}
    for env_file in spec.get("envs", []):
        data.update(parse_env_file(folder / env_file))
    for literal in spec.get("literals", []):
        key, _, value = literal.partition("=")
        data[key] = value
    return data


def _config_map(folder: Path, spec: Manifest) -> Manifest:
    data = _generator_data(folder, spec)
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": spec["name"]}, "data": data}


def _secret(folder: Path, spec: Manifest) -> Manifest:
    data = {
        key: base64.b64encode(value.encode()).decode() for key, value in _generator_data(folder, spec).items()
    }
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": spec["name"]},
        "type": spec.get("type", "Opaque"),
        "data": data,
    }


def parse_env_file(path: Path) -> dict[str, str]:
    """kustomize's env file: KEY=VALUE lines, `#` comments and blank lines skipped, values taken verbatim."""
    pairs: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        key, sep, value = stripped.partition("=")
        if not sep or not key:
            raise UnsupportedKustomization(f"{path}:{number}: not KEY=VALUE")
        pairs[key] = value
    return pairs


def _check_unique(objects: list[Manifest], folder: Path) -> None:
    seen: set[tuple[str, str]] = set()
    for obj in objects:
        key = (obj["kind"], obj["metadata"]["name"])
        if key in seen:
            raise UnsupportedKustomization(f"{folder}: {key} appears twice")
        seen.add(key)


def _label(objects: list[Manifest], pairs: dict[str, str], *, selectors: bool, templates: bool) -> None:
    for obj in objects:
        obj["metadata"].setdefault("labels", {}).update(pairs)
        kind = obj["kind"]
        if selectors and kind in SELECTOR_PATHS:
            _at(obj, SELECTOR_PATHS[kind]).update(pairs)
        if templates and kind in TEMPLATE_KINDS:
            _at(obj, ("spec", "template", "metadata", "labels")).update(pairs)


def _at(obj: Manifest, path: tuple[str, ...]) -> dict[str, Any]:
    node = obj
    for key in path:
        node = node.setdefault(key, {})
    return node
