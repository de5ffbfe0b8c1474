"""deploy/k8s rendered offline (tests/support/kustomize.py) and checked: each object against the Kubernetes
API schemas of kubernetes-validate (strict), KEDA's objects against KEDA's CRD schemas (tests/schemas), and the
references between objects that no schema sees.
"""

from __future__ import annotations

import base64
import copy
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from support.deploy import PROJECT_ROOT, SCHEMAS, unknown_variables
from support.kustomize import parse_env_file, render

from service.settings import JobSettings

K8S = PROJECT_ROOT / "deploy" / "k8s"
BASE = K8S / "base"
KUBERNETES_VERSIONS = ["1.31.0", "1.37.0"]  # the oldest and newest that kubernetes-validate ships, in use
CRDS = {
    "ScaledObject": SCHEMAS / "keda.sh_scaledobjects.yaml",
    "TriggerAuthentication": SCHEMAS / "keda.sh_triggerauthentications.yaml",
}
SECRET = "nbship-secrets"  # made out of band: its keys are the ones in secrets.env.example
PODS = ("Deployment", "StatefulSet", "DaemonSet")

Manifest = dict[str, Any]


@pytest.fixture(scope="module")
def objects() -> list[Manifest]:
    return render(BASE)


def by_kind(objects: list[Manifest], kind: str) -> dict[str, Manifest]:
    return {obj["metadata"]["name"]: obj for obj in objects if obj["kind"] == kind}


def containers(workload: Manifest) -> list[Manifest]:
    return workload["spec"]["template"]["spec"]["containers"]


def secret_keys() -> set[str]:
    return set(parse_env_file(K8S / "secrets.env.example"))


def strict(schema: Any) -> Any:
    """A CRD schema that refuses unknown fields, as the API server prunes and `kubectl --validate=strict`
    refuses them (open maps and preserve-unknown-fields stay open)."""
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    tightened = {key: strict(value) for key, value in schema.items()}
    open_ = "additionalProperties" in schema or schema.get("x-kubernetes-preserve-unknown-fields")
    if "properties" in schema and not open_:
        tightened["additionalProperties"] = False
    return tightened


def crd_validator(kind: str, api_version: str) -> jsonschema.Draft7Validator:
    crd = yaml.safe_load(CRDS[kind].read_text())
    group, version = api_version.split("/")
    assert crd["spec"]["group"] == group and crd["spec"]["names"]["kind"] == kind
    (served,) = [v for v in crd["spec"]["versions"] if v["name"] == version and v["served"]]
    return jsonschema.Draft7Validator(strict(served["schema"]["openAPIV3Schema"]))


def schema_errors(obj: Manifest, kubernetes_version: str) -> list[str]:
    if obj["kind"] in CRDS:
        validator = crd_validator(obj["kind"], obj["apiVersion"])
        return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(obj)]
    try:
        kubernetes_validate.validate(obj, kubernetes_version, strict=True)
    except kubernetes_validate.ValidationError as error:
        return [str(error).splitlines()[0]]
    return []


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_object_follows_its_schema(objects: list[Manifest], version: str) -> None:
    assert {obj["kind"] for obj in objects} >= {
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "ConfigMap",
        "ScaledObject",
        "TriggerAuthentication",
    }
    errors = [f"{o['kind']}/{o['metadata']['name']}: {e}" for o in objects for e in schema_errors(o, version)]
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize(
    ("kind", "path", "value"),
    [
        ("Deployment", ("spec", "template", "spec", "containers", 0, "livenessProbe", "httpGet", "pth"), "/"),
        ("Service", ("spec", "ports", 0, "port"), "eighty"),
        ("ScaledObject", ("spec", "triggers", 0, "metadta"), {}),
        ("ScaledObject", ("spec", "minReplicaCount"), "1"),
        ("TriggerAuthentication", ("spec", "secretTargetRef", 0, "parameter"), None),
    ],
)
def test_the_schemas_catch_a_broken_object(
    objects: list[Manifest], kind: str, path: tuple, value: Any
) -> None:
    broken = copy.deepcopy(next(obj for obj in objects if obj["kind"] == kind))
    node = broken
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    assert schema_errors(broken, KUBERNETES_VERSIONS[-1])


def keyed(docs: list[Manifest]) -> dict[tuple[str, str], Manifest]:
    return {(doc["kind"], doc["metadata"]["name"]): doc for doc in docs}


def real_kustomize() -> list[str] | None:
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    return None


@pytest.mark.skipif(real_kustomize() is None, reason="no kustomize or kubectl on PATH to compare with")
def test_the_renderer_agrees_with_kustomize(objects: list[Manifest]) -> None:
    command = real_kustomize()
    assert command is not None
    printed = subprocess.run([*command, str(BASE)], capture_output=True, text=True, timeout=60, check=True)
    assert keyed(objects) == keyed([doc for doc in yaml.safe_load_all(printed.stdout) if doc])


def test_the_base_builds_from_a_clean_clone() -> None:
    """Everything the base names is committed: no gitignored file (secrets.env) is needed to build it."""
    ignored = subprocess.run(
        ["git", "check-ignore", "--no-index", "deploy/k8s/secrets.env", "deploy/k8s/base/config.env"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
    ).stdout.split()
    assert ignored == ["deploy/k8s/secrets.env"], "secrets.env must be gitignored, config.env must not"
    kustomization = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    named = kustomization["resources"] + [
        env for gen in kustomization.get("configMapGenerator", []) for env in gen.get("envs", [])
    ]
    assert "secretGenerator" not in kustomization, "the Secret is made out of band"
    for name in named:
        assert (BASE / name).is_file(), name


def test_the_service_and_autoscalers_find_their_pods(objects: list[Manifest]) -> None:
    deployments = by_kind(objects, "Deployment")
    for service in by_kind(objects, "Service").values():
        selector = service["spec"]["selector"]
        matched = [
            d
            for d in deployments.values()
            if selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert [d["metadata"]["name"] for d in matched] == ["nbship-api"]
        ports = {p["name"]: p["containerPort"] for c in containers(matched[0]) for p in c.get("ports", [])}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in ports
    for budget in by_kind(objects, "PodDisruptionBudget").values():
        labels = deployments["nbship-api"]["spec"]["template"]["metadata"]["labels"]
        assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()
    for deployment in deployments.values():
        assert deployment["spec"]["selector"]["matchLabels"].items() <= (
            deployment["spec"]["template"]["metadata"]["labels"].items()
        )
    targets = [hpa["spec"]["scaleTargetRef"] for hpa in by_kind(objects, "HorizontalPodAutoscaler").values()]
    targets += [so["spec"]["scaleTargetRef"] for so in by_kind(objects, "ScaledObject").values()]
    assert sorted(t["name"] for t in targets) == ["nbship-api", "nbship-worker"], "one autoscaler each"
    for target in targets:
        assert target.get("kind", "Deployment") == "Deployment" and target["name"] in deployments
        assert "replicas" not in deployments[target["name"]]["spec"], "the autoscaler owns the count"


def test_keda_counts_the_job_queue_with_the_secret_amqp_url(objects: list[Manifest]) -> None:
    config = by_kind(objects, "ConfigMap")["nbship-config"]["data"]
    auths = by_kind(objects, "TriggerAuthentication")
    (scaled,) = by_kind(objects, "ScaledObject").values()
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "rabbitmq"
    assert trigger["metadata"]["mode"] == "QueueLength" and int(trigger["metadata"]["value"]) >= 1
    assert trigger["metadata"]["queueName"] == config.get("JOB_QUEUE", JobSettings().job_queue)
    assert "host" not in trigger["metadata"], "the URL holds a password: it comes from the Secret"
    auth = auths[trigger["authenticationRef"]["name"]]
    assert auth["spec"]["secretTargetRef"] == [{"parameter": "host", "name": SECRET, "key": "AMQP_URL"}]


def test_probes_ask_the_api_port_for_liveness_and_readiness(objects: list[Manifest]) -> None:
    (api,) = containers(by_kind(objects, "Deployment")["nbship-api"])
    ports = {p["name"]: p["containerPort"] for p in api["ports"]}
    env = {e["name"]: e.get("value") for e in api["env"]}
    assert env["HOST"] == "0.0.0.0" and int(env["PORT"]) in ports.values()
    expected = {"startupProbe": "/livez", "livenessProbe": "/livez", "readinessProbe": "/readyz"}
    for probe, path in expected.items():
        get = api[probe]["httpGet"]
        assert get["path"] == path
        assert ports.get(get["port"], get["port"]) == int(env["PORT"]), probe
    startup = api["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 60, "model load takes 20-30 s"


def test_the_worker_runs_through_the_image_entrypoint_and_probes_its_metrics(objects: list[Manifest]) -> None:
    (worker,) = containers(by_kind(objects, "Deployment")["nbship-worker"])
    (api,) = containers(by_kind(objects, "Deployment")["nbship-api"])
    assert worker["image"] == api["image"]
    assert "command" not in worker, "command replaces the entrypoint that activates the Bento's environment"
    assert worker["args"] == ["python", "-m", "service.jobs.worker"]
    assert "readinessProbe" not in worker, "no Service sends it traffic"
    env = {e["name"]: e.get("value") for e in worker["env"]}
    ports = {p["name"]: p["containerPort"] for p in worker["ports"]}
    # The only HTTP the worker has: its metrics, reachable by the kubelet only off 127.0.0.1.
    assert env["METRICS_HOST"] == "0.0.0.0"
    for probe in ("startupProbe", "livenessProbe"):
        get = worker[probe]["httpGet"]
        assert get["path"] == "/metrics" and ports[get["port"]] == int(env["METRICS_PORT"]), probe
    startup = worker["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 60, "model load takes 20-30 s"


def test_every_reference_names_something_that_exists(objects: list[Manifest]) -> None:
    config_maps = by_kind(objects, "ConfigMap")
    keys = secret_keys()
    for workload in (o for o in objects if o["kind"] in PODS):
        spec = workload["spec"]["template"]["spec"]
        volumes = {v["name"] for v in spec.get("volumes", [])}
        for container in spec["containers"]:
            for source in container.get("envFrom", []):
                if "configMapRef" in source:
                    assert source["configMapRef"]["name"] in config_maps
                else:
                    assert source["secretRef"]["name"] == SECRET
            for entry in container.get("env", []):
                ref = entry.get("valueFrom", {})
                if "configMapKeyRef" in ref:
                    assert (
                        ref["configMapKeyRef"]["key"] in config_maps[ref["configMapKeyRef"]["name"]]["data"]
                    )
                if "secretKeyRef" in ref:
                    assert ref["secretKeyRef"]["name"] == SECRET and ref["secretKeyRef"]["key"] in keys
            for mount in container.get("volumeMounts", []):
                assert mount["name"] in volumes
    for auth in by_kind(objects, "TriggerAuthentication").values():
        for ref in auth["spec"]["secretTargetRef"]:
            assert ref["name"] == SECRET and ref["key"] in keys


def test_the_secret_example_carries_no_values() -> None:
    example = parse_env_file(K8S / "secrets.env.example")
    assert example and all(value == "" for value in example.values())


@pytest.mark.parametrize("name", ["nbship-api", "nbship-worker"])
def test_environment_names_are_real_settings(objects: list[Manifest], name: str) -> None:
    config_maps = by_kind(objects, "ConfigMap")
    (container,) = containers(by_kind(objects, "Deployment")[name])
    names = {e["name"] for e in container.get("env", [])}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            names |= set(config_maps[source["configMapRef"]["name"]]["data"])
        else:
            names |= secret_keys()
    assert not unknown_variables(names), f"{name}: not a setting of ours"


def test_containers_run_as_non_root_on_a_read_only_root(objects: list[Manifest]) -> None:
    for workload in (o for o in objects if o["kind"] in PODS):
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        # The image names its user (bentoml): only a numeric uid lets the kubelet check runAsNonRoot.
        assert pod["securityContext"]["runAsUser"] == 1034
        assert pod.get("automountServiceAccountToken") is False
        mounted = set()
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False and context["capabilities"]["drop"] == ["ALL"]
            assert context["readOnlyRootFilesystem"] is True
            resources = container["resources"]
            assert resources["requests"]["cpu"] and resources["limits"]["memory"]
            mounted |= {m["mountPath"] for m in container.get("volumeMounts", [])}
        assert "/tmp" in mounted


def test_the_readme_commands_name_real_paths() -> None:
    readme = (K8S / "README.md").read_text()
    assert "kubectl apply -k deploy/k8s/base" in readme
    assert "secrets.env.example" in readme and (K8S / "secrets.env.example").is_file()


def test_an_overlay_with_a_namespace_and_a_generated_secret(tmp_path: Path) -> None:
    """The operator's usual overlay, built by the renderer (and by kustomize where there is one)."""
    (tmp_path / "secrets.env").write_text(
        "".join(f"{key}=test-{key.lower()}\n" for key in sorted(secret_keys()))
    )
    (tmp_path / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "namespace": "nbship",
                "resources": [os.path.relpath(BASE, tmp_path)],
                "secretGenerator": [{"name": SECRET, "envs": ["secrets.env"]}],
                "generatorOptions": {"disableNameSuffixHash": True},
            }
        )
    )
    objects = render(tmp_path)
    assert {obj["metadata"].get("namespace") for obj in objects} == {"nbship"}
    secret = by_kind(objects, "Secret")[SECRET]
    assert base64.b64decode(secret["data"]["AMQP_URL"]).decode() == "test-amqp_url"
    command = real_kustomize()
    if command is not None:
        printed = subprocess.run(
            [*command, str(tmp_path)], capture_output=True, text=True, timeout=60, check=True
        )
        assert keyed(objects) == keyed([doc for doc in yaml.safe_load_all(printed.stdout) if doc])
