"""docker/compose.yaml (+ compose.override.yaml) against the Compose Specification's JSON schema, and what the
schema cannot say: secrets only from the environment, healthchecks everywhere, a scalable worker, real settings.

No Docker engine or compose binary is needed: interpolation and the override merge are done here, for the
forms the files use (see `interpolate` and `merge`).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml
from support.deploy import PROJECT_ROOT, SCHEMAS, unknown_variables

DOCKER = PROJECT_ROOT / "docker"
COMPOSE = DOCKER / "compose.yaml"
OVERRIDE = DOCKER / "compose.override.yaml"
ENV_EXAMPLE = DOCKER / ".env.example"

# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error}, ${NAME?error}, $NAME; `$$` is a literal `$`.
_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
    r"|(?P<plain>[A-Za-z_][A-Za-z0-9_]*))"
)
# Sequences that an override replaces instead of extending (compose's merge rules).
_REPLACED = {"command", "entrypoint", "test"}
_SECRET_NAME = re.compile(r"PASS|SECRET|TOKEN|KEY", re.IGNORECASE)


class MissingVariable(Exception):
    pass


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's variable interpolation over every string of a loaded file."""
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name = match["braced"] or match["plain"]
        op, arg = match["op"], match["arg"]
        present = name in env and (env[name] != "" or not (op or "").startswith(":"))
        if present:
            return env[name]
        if op in (":?", "?"):
            raise MissingVariable(f"{name}: {arg}")
        if op in (":-", "-"):
            return arg
        return ""

    return _VARIABLE.sub(substitute, value)


def merge(base: Any, override: Any, key: str = "") -> Any:
    """`docker compose -f base -f override`: mappings merge, most sequences extend, commands are replaced."""
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for name, value in override.items():
            merged[name] = merge(base[name], value, name) if name in base else value
        return merged
    if isinstance(base, list) and isinstance(override, list) and key not in _REPLACED:
        return base + [item for item in override if item not in base]
    return override


def load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def required_variables(text: str) -> set[str]:
    return {m["braced"] for m in _VARIABLE.finditer(text) if m["op"] in (":?", "?")}


def env_example() -> dict[str, str]:
    pairs = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            pairs[name.strip()] = value
    return pairs


def filled_env() -> dict[str, str]:
    return {name: f"test-{name.lower()}" for name in env_example()}


def model(*paths: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for path in paths:
        merged = merge(merged, load(path))
    return interpolate(merged, filled_env() if env is None else env)


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {name: "" if value is None else str(value) for name, value in env.items()}


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return json.loads((SCHEMAS / "compose-spec.json").read_text())


@pytest.mark.parametrize("files", [(COMPOSE,), (COMPOSE, OVERRIDE)], ids=["production", "with-override"])
def test_files_follow_the_compose_specification(files: tuple[Path, ...], schema: dict[str, Any]) -> None:
    validator = jsonschema.Draft7Validator(schema)
    errors = [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(model(*files))
    ]
    assert not errors, "\n".join(errors)


def test_the_schema_catches_a_bad_file(schema: dict[str, Any]) -> None:
    broken = model(COMPOSE)
    broken["services"]["api"]["ports"] = "3000:3000"  # a list in the specification
    broken["services"]["worker"]["deploy_replicas"] = 2
    assert len(list(jsonschema.Draft7Validator(schema).iter_errors(broken))) == 2


def test_every_secret_is_required_from_the_environment() -> None:
    text = COMPOSE.read_text()
    required = required_variables(text)
    example = env_example()
    assert required, "no ${VAR:?} in compose.yaml"
    assert required == set(example), "docker/.env.example must list exactly the required variables"
    assert all(value == "" for value in example.values()), "docker/.env.example must not carry values"
    for name in sorted(required):
        env = filled_env()
        del env[name]
        with pytest.raises(MissingVariable, match=name):
            model(COMPOSE, env=env)
        with pytest.raises(MissingVariable, match=name):
            model(COMPOSE, env={**env, name: ""})


def test_no_literal_secret_in_any_service() -> None:
    """Secret-looking variables and passwords inside URLs come from `${VAR:?}`, nothing is written in."""
    raw = merge(load(COMPOSE), load(OVERRIDE))
    for service_name, service in raw["services"].items():
        for name, value in environment(service).items():
            where = f"{service_name}.environment.{name}"
            if _SECRET_NAME.search(name):
                assert re.fullmatch(r"\$\{[A-Z_]+:\?[^}]*\}", value), f"{where}: a secret written in"
            password = urlsplit(value).password if "://" in value else None
            if password is not None:
                assert re.fullmatch(r"\$\{[A-Z_]+:\?[^}]*", password), f"{where}: a password written in"


def test_every_service_has_a_healthcheck_and_waits_for_healthy_dependencies() -> None:
    services = model(COMPOSE)["services"]
    for name, service in services.items():
        check = service.get("healthcheck", {})
        assert check.get("test") and not check.get("disable"), f"{name} has no healthcheck"
        assert check["test"][0] in ("CMD", "CMD-SHELL"), f"{name}: healthcheck test is not a command"
        depends = service.get("depends_on", {})
        assert isinstance(depends, dict), f"{name}: depends_on as a list does not wait for health"
        for dependency, how in depends.items():
            assert dependency in services
            assert how.get("condition") == "service_healthy", f"{name} -> {dependency}"


def test_worker_scales_and_runs_the_api_image() -> None:
    services = model(COMPOSE, OVERRIDE)["services"]
    api, worker = services["api"], services["worker"]
    assert "ports" not in worker and "container_name" not in worker, "--scale worker=N needs neither"
    assert worker["image"] == api["image"]
    assert worker["command"] == ["python", "-m", "service.jobs.worker"]
    assert "command" not in api, "the API is the image's default command (bentoml serve)"
    assert environment(api)["HOST"] == "0.0.0.0"


def test_only_the_api_is_published_and_development_ports_stay_on_loopback() -> None:
    production = model(COMPOSE)["services"]
    assert [name for name, service in production.items() if service.get("ports")] == ["api"]
    for name, service in load(OVERRIDE)["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name}: {port} is published beyond this host"


def test_healthchecks_ask_the_ports_the_processes_listen_on() -> None:
    services = model(COMPOSE)["services"]
    api, worker = services["api"], services["worker"]
    assert f"127.0.0.1:{environment(api)['PORT']}/readyz" in " ".join(api["healthcheck"]["test"])
    assert f"127.0.0.1:{environment(worker)['METRICS_PORT']}/metrics" in " ".join(
        worker["healthcheck"]["test"]
    )
    published = [p.rsplit(":", 1)[1] for p in api["ports"]]
    assert published == [environment(api)["PORT"]]


@pytest.mark.parametrize("service", ["api", "worker"])
def test_environment_names_are_real_settings(service: str) -> None:
    names = set(environment(model(COMPOSE)["services"][service]))
    assert not unknown_variables(names), f"{service}: not a setting of ours"


class _OverrideLoader(yaml.SafeLoader):
    """compose's `!override` tag (a value that replaces instead of merging), read as the plain value."""


_OverrideLoader.add_constructor("!override", lambda loader, node: loader.construct_sequence(node))


def test_the_test_override_swaps_only_the_registry_images_and_their_healthchecks() -> None:
    """docker/compose.test.yaml (stand-ins on machines without a registry) changes nothing of the API or the
    worker, and of the servers only what the stand-ins need."""
    swapped = yaml.load((DOCKER / "compose.test.yaml").read_text(), Loader=_OverrideLoader)["services"]
    assert set(swapped) == {"rabbitmq", "mongo", "mlflow"}
    for name, service in swapped.items():
        assert set(service) <= {"image", "healthcheck"}, name
        assert set(service.get("healthcheck", {})) <= {"test"}, name
