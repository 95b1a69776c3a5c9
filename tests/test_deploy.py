"""deploy/: the Dockerfile and the Kubernetes manifests agree with the server's real
command line (every flag exists and parses), with each other (ports, names, probes,
mounts) and with what the issue of running in a cluster asks (non-root, health-checked,
headless Service, native gRPC probes, autoscaler, TLS secret, shared volume)."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import typer
import yaml

from modelwire.cli.main import app

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
KUBERNETES = DEPLOY / "kubernetes"


def serve_params(args: list[str]) -> dict[str, Any]:
    """`modelwire serve ARGS` parsed by the real command (unknown flags fail here)."""
    group = typer.main.get_command(app)
    serve = group.commands["serve"]  # type: ignore[attr-defined]
    with serve.make_context("serve", list(args)) as context:
        params = dict(context.params)
    if params.get("rest_port") not in (None, "off"):
        params["rest_port"] = int(params["rest_port"])  # a port, or "off"
    return params


def manifests() -> dict[str, dict[str, Any]]:
    """Every Kubernetes object, by kind."""
    kustomization = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    found: dict[str, dict[str, Any]] = {}
    for resource in kustomization["resources"]:
        for document in yaml.safe_load_all((KUBERNETES / resource).read_text()):
            assert document["kind"] not in found
            found[document["kind"]] = document
    return found


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
        for line in lines
        if line and not line.startswith("#")
    ]


def exec_form(value: str) -> list[str]:
    parsed = yaml.safe_load(value)  # a JSON array, as exec form is
    assert isinstance(parsed, list)
    return [str(item) for item in parsed]


def test_the_dockerfile_runs_the_real_server_as_non_root_with_a_health_check() -> None:
    instructions = dockerfile_instructions()
    final_stage = instructions[max(i for i, (op, _) in enumerate(instructions) if op == "FROM") :]
    ops = dict(final_stage)
    # The stages run deploy/image.sh, which benchmarks/image_size.sh measures.
    assert instructions[0] == ("FROM", "debian:bookworm-slim AS base")
    assert ops["FROM"] == "base"
    assert ops["RUN"].endswith("sh /image.sh install /wheels")
    assert "PATH=/opt/modelwire/bin:$PATH" in ops["ENV"].split()
    user = ops["USER"].split(":")[0]
    assert user not in ("root", "0")
    assert f"--uid {user} " in (DEPLOY / "image.sh").read_text()
    assert exec_form(ops["ENTRYPOINT"]) == ["modelwire"]
    command = exec_form(ops["CMD"])
    assert command[0] == "serve"
    params = serve_params(command[1:])
    exposed = {int(port) for port in ops["EXPOSE"].split()}
    assert {params["port"], params["rest_port"], params["health_port"]} == exposed
    check = shlex.split(ops["HEALTHCHECK"])
    probe = exec_form(" ".join(check[check.index("CMD") + 1 :]))
    assert probe == ["modelwire", "health", "--target", f"127.0.0.1:{params['health_port']}"]


def test_the_deployment_agrees_with_the_server_flags() -> None:
    objects = manifests()
    deployment = objects["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["args"][0] == "serve"
    args = [
        a.replace("$(MODELWIRE_DATABASE_URL)", "postgresql://u@db/m") for a in container["args"]
    ]
    params = serve_params(args[1:])
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports == {
        "grpc": params["port"],
        "http": params["rest_port"],
        "health": params["health_port"],
    }
    # Native gRPC probes on the plaintext health port (the kubelet speaks no TLS).
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["grpc"]["port"] == params["health_port"]
    # TLS from a mounted secret; tokens too; the data on the shared volume.
    mounts = {mount["name"]: mount["mountPath"] for mount in container["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    assert Path(str(params["tls_cert"])).parent == Path(mounts["tls"])
    assert Path(str(params["tls_key"])).parent == Path(mounts["tls"])
    assert Path(str(params["tokens_file"])).parent == Path(mounts["tokens"])
    assert "secretName" in volumes["tls"]["secret"]
    assert Path(str(params["data_dir"])) == Path(mounts["data"])
    claim = volumes["data"]["persistentVolumeClaim"]["claimName"]
    assert claim == objects["PersistentVolumeClaim"]["metadata"]["name"]
    assert "ReadWriteMany" in objects["PersistentVolumeClaim"]["spec"]["accessModes"]
    assert (env := {e["name"]: e for e in container["env"]})["MODELWIRE_DATABASE_URL"]
    # Workers match the CPU request; a drain fits in the termination grace period.
    assert int(params["workers"]) == int(container["resources"]["requests"]["cpu"])
    assert "memory" in container["resources"]["requests"]
    assert pod["terminationGracePeriodSeconds"] > params["grace_period_s"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert env["MODELWIRE_DATABASE_URL"]["valueFrom"]["secretKeyRef"]["key"]


def test_the_service_is_headless_and_the_autoscaler_targets_the_deployment() -> None:
    objects = manifests()
    deployment, service, hpa = (
        objects["Deployment"],
        objects["Service"],
        objects["HorizontalPodAutoscaler"],
    )
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert service["spec"]["clusterIP"] == "None"  # DNS lists every pod: client-side balancing
    assert service["spec"]["selector"].items() <= labels.items()
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    names = {port["name"] for port in container["ports"]}
    assert {port["targetPort"] for port in service["spec"]["ports"]} <= names
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    assert hpa["spec"]["minReplicas"] >= 2
    assert (
        objects["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"].items() <= labels.items()
    )
