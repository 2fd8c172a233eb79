"""deploy/kubernetes: valid against the Kubernetes schemas, configured only by `gateway serve` settings, and
consistent with the gateway's behaviour (gRPC probes on its health service, a termination grace period that
outlasts its drain, the image's user) and with the stack's outputs (deploy/aws/stack_env.py)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.config import ConfigError, Settings
from gateway.devstack.template import DeployTemplate
from tests.deploy.support import DEPLOY, KUBERNETES, TEMPLATE, VENV_BIN, serve_options
from tests.deploy.test_image import stages

# Cut chat turns get up to this much after the grace period to record what they did (docs/deployment.md).
CUT_TURN_SECONDS = 3


def manifests() -> list[Path]:
    return sorted(p for p in KUBERNETES.glob("*.yaml") if p.name != "kustomization.yaml")


def documents() -> list[dict[str, Any]]:
    found = []
    for path in manifests():
        found += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return found


def one(kind: str, name: str) -> dict[str, Any]:
    [found] = [d for d in documents() if d["kind"] == kind and d["metadata"]["name"] == name]
    return found


def gateway_deployment() -> dict[str, Any]:
    return one("Deployment", "booking-gateway")


def gateway_container() -> dict[str, Any]:
    [container] = gateway_deployment()["spec"]["template"]["spec"]["containers"]
    assert isinstance(container, dict)
    return container


def stack_env() -> dict[str, str]:
    lines = (KUBERNETES / "stack.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def pod_environment() -> dict[str, str]:
    """What a gateway pod sees: the ConfigMap made from stack.env, then the Deployment's own variables."""
    container = gateway_container()
    [source] = container["envFrom"]
    kustomization = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    [generator] = kustomization["configMapGenerator"]
    assert source["configMapRef"]["name"] == generator["name"]
    assert generator["envs"] == ["stack.env"]
    return {**stack_env(), **{e["name"]: e["value"] for e in container["env"]}}


def test_every_manifest_is_valid_against_the_kubernetes_schemas() -> None:
    result = subprocess.run(
        [str(VENV_BIN / "kubernetes-validate"), "--strict", "--quiet", *map(str, manifests())],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"kubernetes-validate:\n{result.stdout}{result.stderr}"


def test_the_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == [p.name for p in manifests()]


def test_the_pods_are_configured_only_by_serve_settings_and_the_settings_accept_the_values() -> None:
    environment = pod_environment()
    names = {option.env for option in serve_options().values()}
    unknown = sorted(set(environment) - names)
    assert unknown == [], f"not settings of gateway serve (docs/configuration.md): {unknown}"
    try:
        settings = Settings.load(environment)
    except ConfigError as error:  # pragma: no cover - the message is the point
        pytest.fail(f"gateway serve refuses the pod's environment: {error}")
    assert settings.auth.user_pool_id, "a pod must use the stack's pool, never the embedded emulator"


def test_stack_env_holds_exactly_the_stacks_serve_outputs() -> None:
    outputs = DeployTemplate.load(TEMPLATE).body["Outputs"]
    described = {
        "Stacks": [
            {
                "Outputs": [
                    {"OutputKey": key, "OutputValue": f"value-of-{key}", "Description": output["Description"]}
                    for key, output in outputs.items()
                ]
            }
        ]
    }
    result = subprocess.run(
        [sys.executable, str(DEPLOY / "aws" / "stack_env.py")],
        input=json.dumps(described),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    written = dict(line.split("=", 1) for line in result.stdout.splitlines())
    # stack.env is what a stack without the optional outputs (BedrockModelId) writes.
    unconditional = {key for key, output in outputs.items() if "Condition" not in output}
    always = {name for name, value in written.items() if value.removeprefix("value-of-") in unconditional}
    assert set(stack_env()) == always
    assert written["GATEWAY_BEDROCK_MODEL_ID"] == "value-of-BedrockModelId"
    assert written["GATEWAY_USER_POOL_ID"] == "value-of-UserPoolId"
    assert "value-of-GatewayRoleArn" not in written.values()


def test_the_termination_grace_period_outlasts_drain_grace_and_cut_turns() -> None:
    settings = Settings.load(pod_environment())
    period = gateway_deployment()["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    needed = settings.transport.drain_delay_seconds + settings.transport.grace_seconds + CUT_TURN_SECONDS
    assert period > needed, f"terminationGracePeriodSeconds {period} <= drain + grace + {CUT_TURN_SECONDS} = {needed}"


def test_the_probes_ask_the_grpc_health_service_on_the_grpc_face() -> None:
    container = gateway_container()
    settings = Settings.load(pod_environment())
    grpc_port = int(settings.transport.listen.rsplit(":", 1)[1])
    assert grpc_port in {p["containerPort"] for p in container["ports"]}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["grpc"] == {"port": grpc_port}, probe
    liveness = container["livenessProbe"]
    # A pod draining (NOT_SERVING) must not be killed by its liveness probe before its grace period ends.
    spec = gateway_deployment()["spec"]["template"]["spec"]
    assert liveness["periodSeconds"] * liveness["failureThreshold"] >= spec["terminationGracePeriodSeconds"]


def test_the_pods_run_as_the_images_user_without_privileges_on_a_read_only_root() -> None:
    spec = gateway_deployment()["spec"]["template"]["spec"]
    [user] = stages()[-1].all("USER")
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert str(spec["securityContext"]["runAsUser"]) == user.split(":")[0]
    context = gateway_container()["securityContext"]
    assert context["allowPrivilegeEscalation"] is False
    assert context["readOnlyRootFilesystem"] is True
    assert context["capabilities"]["drop"] == ["ALL"]
    requests = gateway_container()["resources"]["requests"]
    assert requests["cpu"] == "1"  # one process uses about one core (docs/performance.md)
    assert "memory" in requests


def test_the_service_pdb_and_autoscaler_select_the_gateway_pods() -> None:
    labels = gateway_deployment()["spec"]["template"]["metadata"]["labels"]
    service = one("Service", "booking-gateway")
    assert service["spec"]["clusterIP"] == "None", "headless: clients and Envoy see every pod"
    assert service["spec"]["selector"].items() <= labels.items()
    pdb = one("PodDisruptionBudget", "booking-gateway")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    hpa = one("HorizontalPodAutoscaler", "booking-gateway")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "booking-gateway"}
    assert hpa["spec"]["minReplicas"] >= 2
    settings = Settings.load(pod_environment())
    ports = {p["name"]: p["port"] for p in service["spec"]["ports"]}
    assert ports["grpc"] == int(settings.transport.listen.rsplit(":", 1)[1])
    assert ports["web"] == int(settings.transport.web_listen.rsplit(":", 1)[1])


def test_envoy_balances_each_grpc_call_over_every_pod_of_the_headless_service() -> None:
    config = yaml.safe_load(one("ConfigMap", "booking-gateway-envoy")["data"]["envoy.yaml"])
    clusters = {c["name"]: c for c in config["static_resources"]["clusters"]}
    kustomization = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    service = one("Service", "booking-gateway")
    ports = {p["name"]: p["port"] for p in service["spec"]["ports"]}
    host = f"booking-gateway.{kustomization['namespace']}.svc.cluster.local"
    for name, port_name in (("grpc_face", "grpc"), ("web_face", "web")):
        cluster = clusters[name]
        assert cluster["type"] == "STRICT_DNS", "one upstream per pod address"
        assert cluster["lb_policy"] == "ROUND_ROBIN"
        [endpoints] = cluster["load_assignment"]["endpoints"]
        [endpoint] = endpoints["lb_endpoints"]
        address = endpoint["endpoint"]["address"]["socket_address"]
        assert (address["address"], address["port_value"]) == (host, ports[port_name])
    grpc_options = clusters["grpc_face"]["typed_extension_protocol_options"]
    assert "http2_protocol_options" in json.dumps(grpc_options)
    assert clusters["grpc_face"]["health_checks"][0]["grpc_health_check"] == {}


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kustomize_builds_the_manifests_with_the_stack_configmap() -> None:
    result = subprocess.run(
        ["kubectl", "kustomize", str(KUBERNETES)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    built = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    assert all(doc["metadata"].get("namespace", "booking") == "booking" for doc in built)
    [configmap] = [
        d for d in built if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("booking-gateway-stack")
    ]
    assert configmap["data"] == stack_env()
    [deployment] = [d for d in built if d["kind"] == "Deployment" and d["metadata"]["name"] == "booking-gateway"]
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["envFrom"] == [{"configMapRef": {"name": configmap["metadata"]["name"]}}]


def test_the_stacks_pod_identity_association_names_the_manifests_namespace_and_service_account() -> None:
    parameters = DeployTemplate.load(TEMPLATE).body["Parameters"]
    kustomization = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    assert parameters["KubernetesNamespace"]["Default"] == kustomization["namespace"]
    assert (
        parameters["KubernetesServiceAccount"]["Default"]
        == one("ServiceAccount", "booking-gateway")["metadata"]["name"]
    )
    assert gateway_deployment()["spec"]["template"]["spec"]["serviceAccountName"] == "booking-gateway"
