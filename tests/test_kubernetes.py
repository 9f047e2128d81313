"""deploy/kubernetes as a cluster would get it: the dev overlay built with
``kubectl kustomize``, every object checked against the Kubernetes schemas
(``kubernetes-validate``'s bundled copies, offline), and the suite's rules:
locked-down containers, probes, budgets and autoscalers, who may call whom,
no committed secret, resources from the benchmark, and an environment each
process's own configuration accepts. No cluster is needed."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml
from cryptography.hazmat.primitives import serialization

from gateway.config import GatewayConfig
from services.library.service import LibraryConfig
from services.sessions.service import SessionsConfig
from services.settings.service import SettingsConfig
from services.walks.service import WalksConfig
from tests.support import ROOT

DEPLOY = ROOT / "deploy" / "kubernetes"
OVERLAY = DEPLOY / "overlays" / "dev"
IMAGE = "flowpilot-services"
# The oldest Kubernetes the manifests claim (gRPC probes are GA from 1.27),
# and the newest the validator knows.
SCHEMA_VERSIONS = ("1.28", kubernetes_validate.utils.latest_version())

SERVICES = {"sessions": 50051, "library": 50052, "settings": 50053, "walks": 50054}
# Prometheus /metrics of each process (services/*/service.py, gateway/config.py).
METRICS_PORTS = {"sessions": 9651, "library": 9652, "settings": 9653, "walks": 9654, "gateway": 9680}
MONITORING = "namespace monitoring"
CONFIGS: dict[str, Callable[[], object]] = {
    "sessions": SessionsConfig,
    "library": LibraryConfig,
    "settings": SettingsConfig,
    "walks": WalksConfig,
    "gateway": GatewayConfig,
}
# Who may open a connection to whom, on the API port (DESIGN.md; "*" is anyone);
# on the metrics port, only Prometheus's namespace.
CALLERS = {
    "flowpilot-gateway": {"*"},
    "flowpilot-sessions": {"flowpilot-gateway", "flowpilot-walks"},
    "flowpilot-library": {"flowpilot-gateway", "flowpilot-sessions"},
    "flowpilot-settings": {"flowpilot-gateway", "flowpilot-sessions", "flowpilot-library", "flowpilot-walks"},
    "flowpilot-walks": {"flowpilot-gateway"},
    "flowpilot-postgres": {
        "flowpilot-sessions",
        "flowpilot-library",
        "flowpilot-settings",
        "flowpilot-walks",
        "flowpilot-migrate",
    },
}
# The services each one calls, by address variable.
CALLS = {
    "sessions": ("FLOWPILOT_SETTINGS_ADDRESS", "FLOWPILOT_LIBRARY_ADDRESS"),
    "library": ("FLOWPILOT_SETTINGS_ADDRESS",),
    "walks": ("FLOWPILOT_SETTINGS_ADDRESS", "FLOWPILOT_SESSIONS_ADDRESS"),
    "settings": (),
    "gateway": tuple(f"FLOWPILOT_{name.upper()}_ADDRESS" for name in SERVICES),
}
UNITS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "k": 10**3, "M": 10**6, "G": 10**9}


def kustomize(path: Path) -> list[dict[str, Any]]:
    kubectl = os.environ.get("KUBECTL") or shutil.which("kubectl")
    if kubectl is None:
        pytest.fail("kubectl not installed (apt-get install kubernetes-client); make lint needs it too")
    done = subprocess.run(
        [kubectl, "kustomize", str(path)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


@pytest.fixture(scope="module")
def objects() -> list[dict[str, Any]]:
    return kustomize(OVERLAY)


@pytest.fixture(scope="module")
def dev_secrets(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    dev_dir = tmp_path_factory.mktemp("dev")
    done = subprocess.run(
        [sys.executable, str(OVERLAY / "dev_secrets.py")],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={**os.environ, "FLOWPILOT_DEV_DIR": str(dev_dir)},
    )
    assert (dev_dir / "kubernetes-issuer-private.pem").stat().st_mode & 0o077 == 0
    listing = json.loads(done.stdout)
    assert listing["kind"] == "List"
    items: list[dict[str, Any]] = listing["items"]
    return items


def named(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def pod_specs(objects: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for o in objects:
        if o["kind"] in ("Deployment", "StatefulSet", "Job"):
            yield o["metadata"]["name"], o["spec"]["template"]


def containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [*spec.get("initContainers", []), *spec["containers"]]


def quantity(value: str | int) -> float:
    text = str(value)
    if text.endswith("m"):
        return float(text[:-1]) / 1000
    for suffix, factor in UNITS.items():
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    return float(text)


def matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    for expression in selector.get("matchExpressions", []):
        assert expression["operator"] == "In", expression  # the only one used here
        if labels.get(expression["key"]) not in expression["values"]:
            return False
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def test_every_object_is_valid_for_kubernetes(
    objects: list[dict[str, Any]], dev_secrets: list[dict[str, Any]]
):
    assert len(objects) > 30
    for obj in [*objects, *dev_secrets]:
        for version in SCHEMA_VERSIONS:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{obj['kind']}/{obj['metadata']['name']} (Kubernetes {version}): {exc.message}")
    assert {o["metadata"].get("namespace") for o in objects if o["kind"] != "Namespace"} == {"flowpilot-dev"}


def test_a_deployment_service_budget_and_autoscaler_per_process(objects: list[dict[str, Any]]):
    deployments, services = named(objects, "Deployment"), named(objects, "Service")
    budgets, autoscalers = named(objects, "PodDisruptionBudget"), named(objects, "HorizontalPodAutoscaler")
    expected = {f"flowpilot-{name}" for name in [*SERVICES, "gateway"]}
    assert set(deployments) == expected
    assert expected <= set(services)
    for name, deployment in deployments.items():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert matches(deployment["spec"]["selector"], labels)
        assert matches({"matchLabels": services[name]["spec"]["selector"]}, labels)
        # The autoscaler owns the replica count; a fixed one would be reset on every apply.
        assert "replicas" not in deployment["spec"], name
        assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0, name
        assert [b for b in budgets.values() if matches(b["spec"]["selector"], labels)], f"{name}: no PDB"
        scalers = [a for a in autoscalers.values() if a["spec"]["scaleTargetRef"]["name"] == name]
        assert len(scalers) == 1, f"{name}: no HPA"
        (metric,) = scalers[0]["spec"]["metrics"]
        assert metric["resource"]["name"] == "cpu" and metric["resource"]["target"]["type"] == "Utilization"
        assert 1 <= scalers[0]["spec"]["minReplicas"] < scalers[0]["spec"]["maxReplicas"]
    base = named(kustomize(DEPLOY / "base"), "HorizontalPodAutoscaler")
    # Production keeps a replica through any single disruption.
    assert all(a["spec"]["minReplicas"] >= 2 for a in base.values())


def test_every_container_is_locked_down(objects: list[dict[str, Any]]):
    seen = 0
    for name, template in pod_specs(objects):
        spec = template["spec"]
        pod = spec.get("securityContext", {})
        assert pod.get("seccompProfile", {}).get("type") == "RuntimeDefault", name
        assert spec.get("automountServiceAccountToken") is False, name
        assert not spec.get("hostNetwork") and not spec.get("hostPID") and not spec.get("hostIPC"), name
        for container in containers(spec):
            seen += 1
            where = f"{name}/{container['name']}"
            context = {**pod, **container.get("securityContext", {})}
            assert context.get("runAsNonRoot") is True and context.get("runAsUser", 0) != 0, where
            if container["image"].split(":")[0] == IMAGE:
                assert context["runAsUser"] == 10001, where  # the image's user
                env = {e["name"]: e.get("value") for e in container.get("env", [])}
                assert env.get("PYTHONDONTWRITEBYTECODE") == "1" or container.get("envFrom"), where
            assert context.get("readOnlyRootFilesystem") is True, where
            assert context.get("allowPrivilegeEscalation") is False, where
            assert context.get("privileged") in (None, False), where
            assert context.get("capabilities", {}).get("drop") == ["ALL"], where
            assert not context.get("capabilities", {}).get("add"), where
            resources = container.get("resources", {})
            for kind in ("cpu", "memory"):
                request, limit = resources["requests"][kind], resources["limits"][kind]
                assert 0 < quantity(request) <= quantity(limit), f"{where}: {kind} {request} > {limit}"
            # Only the migration gate gets an API token, projected into it alone.
            mounts = {m["name"] for m in container.get("volumeMounts", [])}
            assert ("kube-api" in mounts) == (container["name"] == "migration-gate"), where
    assert seen >= 11


def test_resources_cover_the_benchmarks_peak_memory(objects: list[dict[str, Any]]):
    """Requests hold at least the peak RSS bench/results measured for the process."""
    peak = json.loads((ROOT / "bench" / "results" / "reference.json").read_text())["peak_rss"]
    base = named(kustomize(DEPLOY / "base"), "Deployment")
    for name in [*SERVICES, "gateway"]:
        (container,) = base[f"flowpilot-{name}"]["spec"]["template"]["spec"]["containers"]
        resources = container["resources"]
        assert quantity(resources["requests"]["memory"]) >= peak[name], name
        assert quantity(resources["limits"]["memory"]) >= 2 * peak[name], name
        # One process per pod uses at most about one core (its event loop).
        assert quantity(resources["limits"]["cpu"]) == 1, name


def test_probes(objects: list[dict[str, Any]]):
    deployments = named(objects, "Deployment")
    for name, port in SERVICES.items():
        (container,) = deployments[f"flowpilot-{name}"]["spec"]["template"]["spec"]["containers"]
        assert container["ports"] == [
            {"name": "grpc", "containerPort": port},
            {"name": "metrics", "containerPort": METRICS_PORTS[name]},
        ]
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert container[probe]["grpc"]["port"] == port, (name, probe)
        # Readiness follows the database (service ""); liveness must not (services/core/health.py).
        assert container["readinessProbe"]["grpc"].get("service", "") == ""
        assert container["livenessProbe"]["grpc"]["service"] == "liveness"
        # Liveness gives a slow process far longer than readiness does.
        assert (
            container["livenessProbe"]["failureThreshold"] * container["livenessProbe"]["periodSeconds"]
            > container["readinessProbe"]["failureThreshold"] * container["readinessProbe"]["periodSeconds"]
        )
    (gateway,) = deployments["flowpilot-gateway"]["spec"]["template"]["spec"]["containers"]
    assert gateway["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert gateway["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert gateway["startupProbe"]["httpGet"]["path"] == "/healthz"


def test_network_policies_allow_exactly_the_named_callers(objects: list[dict[str, Any]]):
    policies = list(named(objects, "NetworkPolicy").values())
    pods = {name: template["metadata"]["labels"] for name, template in pod_specs(objects)}
    # Every FlowPilot pod is under a policy that allows nothing, so only the rules below open it.
    deny = [p for p in policies if p["spec"]["policyTypes"] == ["Ingress"] and not p["spec"].get("ingress")]
    assert deny
    for name, labels in pods.items():
        assert any(matches(p["spec"]["podSelector"], labels) for p in deny), f"{name} is not isolated"
    allowed: dict[tuple[str, str | int], set[str]] = {}
    for policy in policies:
        targets = [n for n, labels in pods.items() if matches(policy["spec"]["podSelector"], labels)]
        for rule in policy["spec"].get("ingress", []):
            sources: set[str] = set()
            for peer in rule.get("from", [{}]) or [{}]:
                if peer == {}:
                    sources.add("*")
                elif set(peer) == {"namespaceSelector"}:
                    assert peer["namespaceSelector"] == {
                        "matchLabels": {"kubernetes.io/metadata.name": "monitoring"}
                    }, peer
                    sources.add(MONITORING)
                else:
                    assert set(peer) == {"podSelector"}, peer  # pods of this namespace only
                    callers = [n for n, labels in pods.items() if matches(peer["podSelector"], labels)]
                    assert callers, f"{policy['metadata']['name']}: a rule that matches no pod"
                    sources.update(callers)
            assert rule.get("ports"), f"{policy['metadata']['name']}: a rule open on every port"
            for target in targets:
                for port in rule["ports"]:
                    allowed.setdefault((target, port["port"]), set()).update(sources)
    api_port = {"flowpilot-gateway": "http", "flowpilot-postgres": 5432}
    expected = {(target, api_port.get(target, "grpc")): callers for target, callers in CALLERS.items()}
    expected.update({(f"flowpilot-{name}", "metrics"): {MONITORING} for name in METRICS_PORTS})
    assert allowed == expected


def test_no_secret_is_committed_and_every_secret_used_is_documented(
    objects: list[dict[str, Any]], dev_secrets: list[dict[str, Any]]
):
    assert not [o for o in objects if o["kind"] == "Secret"]
    for path in DEPLOY.rglob("*"):
        if path.is_file() and path.suffix in (".yaml", ".yml", ".json"):
            assert not re.search(r"^kind:\s*Secret\b", path.read_text(), re.MULTILINE), path
    provided = {s["metadata"]["name"]: set(s["data"]) for s in dev_secrets}
    used: set[tuple[str, str]] = set()
    for name, template in pod_specs(objects):
        spec = template["spec"]
        for volume in spec.get("volumes", []):
            if "secret" in volume:
                secret = volume["secret"]
                used.update((secret["secretName"], item["key"]) for item in secret["items"])
        for container in containers(spec):
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref and not ref.get("optional"):
                    used.add((ref["name"], ref["key"]))
            assert not [e for e in container.get("envFrom", []) if "secretRef" in e], name
    missing = {(n, k) for n, k in used if k not in provided.get(n, set())}
    assert not missing, f"dev_secrets.py does not make {missing}"
    readme = (ROOT / "README.md").read_text()
    for secret_name, key in used:
        assert secret_name in readme and key in readme, f"README does not say how to make {secret_name}/{key}"


def pod_environment(
    container: dict[str, Any], objects: list[dict[str, Any]], secrets: dict[str, Any]
) -> dict[str, str]:
    """The container's environment as the kubelet builds it (mount paths as they are)."""
    maps = named(objects, "ConfigMap")
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update(maps[source["configMapRef"]["name"]]["data"])
    for item in container.get("env", []):
        if "value" in item:
            # $(VAR) refers to a variable defined before it (else stays as is, which we refuse).
            value = re.sub(r"\$\(([A-Z0-9_]+)\)", lambda m: env.get(m.group(1), m.group(0)), item["value"])
            assert "$(" not in value, f"{item['name']}: unresolved {value}"
            env[item["name"]] = value
        else:
            ref = item["valueFrom"]["secretKeyRef"]
            if ref["name"] in secrets:
                env[item["name"]] = secrets[ref["name"]][ref["key"]]
            else:
                assert ref.get("optional"), ref
    return env


def test_each_process_accepts_its_environment(
    objects: list[dict[str, Any]], dev_secrets: list[dict[str, Any]], tmp_path: Path, monkeypatch
):
    """Each container's variables, Secrets from dev_secrets.py and keys as mounted
    files, load into that process's own configuration class."""
    secrets = {
        s["metadata"]["name"]: {k: base64.b64decode(v).decode() for k, v in s["data"].items()}
        for s in dev_secrets
    }
    services = named(objects, "Service")
    deployments = named(objects, "Deployment")
    configs = {}
    for name, config_class in CONFIGS.items():
        template = deployments[f"flowpilot-{name}"]["spec"]["template"]
        (container,) = template["spec"]["containers"]
        env = pod_environment(container, objects, secrets)
        # The secret volumes, written where the container would see them (under tmp_path).
        root = tmp_path / name
        volumes = {v["name"]: v for v in template["spec"].get("volumes", [])}
        for mount in container.get("volumeMounts", []):
            volume = volumes[mount["name"]]
            if "secret" in volume:
                for item in volume["secret"]["items"]:
                    target = root / mount["mountPath"].lstrip("/") / item["path"]
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_text(secrets[volume["secret"]["secretName"]][item["key"]])
        env = {k: v.replace("/etc/flowpilot/", f"{root}/etc/flowpilot/") for k, v in env.items()}
        assert env["FLOWPILOT_HOST"] == "0.0.0.0"  # noqa: S104 (a container listens on every address)
        port = int(env["FLOWPILOT_PORT"])
        assert port == container["ports"][0]["containerPort"]
        # Prometheus finds the port the process serves its metrics on.
        annotations = template["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/path"] == "/metrics"
        assert int(annotations["prometheus.io/port"]) == int(env["FLOWPILOT_METRICS_PORT"])
        assert {"name": "metrics", "containerPort": METRICS_PORTS[name]} in container["ports"]
        for variable in CALLS[name]:
            host, _, called_port = env[variable].partition(":")
            assert int(called_port) in [p["port"] for p in services[host]["spec"]["ports"]], variable
        with monkeypatch.context() as patch:
            for key in [k for k in os.environ if k.startswith(("FLOWPILOT_", "ANTHROPIC_"))]:
                patch.delenv(key)
            for key, value in env.items():
                patch.setenv(key, value)
            configs[name] = config_class()
        assert configs[name].metrics_port == METRICS_PORTS[name]  # type: ignore[attr-defined]
        if name != "gateway":
            url = env["FLOWPILOT_DATABASE_URL"]
            assert url.startswith(
                f"postgresql://flowpilot_{name}:{secrets['flowpilot-secrets']['db-runtime-password']}@"
            )
            assert set(configs[name].service_public_keys) == {"sessions", "walks"}  # type: ignore[attr-defined]
    for name in ("sessions", "walks"):
        private = configs[name].service_private_key  # type: ignore[attr-defined]
        signing_key = serialization.load_pem_private_key(private.encode(), password=None)
        public = signing_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        assert public.decode().strip() == configs["settings"].service_public_keys[name].strip()  # type: ignore[attr-defined]
    assert configs["library"].service_private_key is None  # type: ignore[attr-defined]
    # The migration job reaches the in-cluster database the services use.
    (migrate,) = named(objects, "Job")["flowpilot-migrate"]["spec"]["template"]["spec"]["containers"]
    job_env = pod_environment(migrate, objects, secrets)
    maps = next(m for n, m in named(objects, "ConfigMap").items() if n.startswith("flowpilot-config"))
    assert (
        f"@{maps['data']['POSTGRES_HOST']}:{maps['data']['POSTGRES_PORT']}/"
        in job_env["FLOWPILOT_ADMIN_DATABASE_URL"]
    )
    assert job_env["FLOWPILOT_DB_RUNTIME_PASSWORD"] == secrets["flowpilot-secrets"]["db-runtime-password"]


# The migration gate (base/wait_for_migration.py), against a stand-in API server.


class FakeJobs(BaseHTTPRequestHandler):
    states: list[int | str] = []  # noqa: RUF012 (set per test)
    paths: list[str] = []  # noqa: RUF012

    def do_GET(self) -> None:
        self.paths.append(self.path)
        assert self.headers["Authorization"] == "Bearer gate-token"
        state = self.states.pop(0) if len(self.states) > 1 else self.states[0]
        if isinstance(state, int):
            self.send_response(state)
            self.end_headers()
            return
        conditions = [{"type": state, "status": "True"}] if state else []
        body = json.dumps({"status": {"conditions": conditions}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def run_gate(tmp_path: Path, states: list[int | str]) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    FakeJobs.states, FakeJobs.paths = list(states), []
    server = HTTPServer(("127.0.0.1", 0), FakeJobs)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    token = tmp_path / "token"
    token.write_text("gate-token\n")
    try:
        done = subprocess.run(
            [sys.executable, str(DEPLOY / "base" / "wait_for_migration.py")],
            env={
                "PATH": os.environ["PATH"],
                "POD_NAMESPACE": "flowpilot-test",
                "FLOWPILOT_GATE_API_URL": f"http://127.0.0.1:{server.server_port}",
                "FLOWPILOT_GATE_TOKEN_FILE": str(token),
                "FLOWPILOT_GATE_TIMEOUT_SECONDS": "2",
                "FLOWPILOT_GATE_INTERVAL_SECONDS": "0.05",
            },
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    finally:
        server.shutdown()
        server.server_close()
    return done, FakeJobs.paths


def test_migration_gate_waits_for_the_job_to_complete(tmp_path: Path):
    done, paths = run_gate(tmp_path, [404, "", "Failed", 500, "", "Complete"])
    assert done.returncode == 0, done.stderr
    assert len(paths) == 6
    assert set(paths) == {"/apis/batch/v1/namespaces/flowpilot-test/jobs/flowpilot-migrate"}
    assert "migrations complete" in done.stderr


@pytest.mark.parametrize("state", ["", "Failed", 404, 403])
def test_migration_gate_gives_up_without_a_complete_job(tmp_path: Path, state: int | str):
    done, paths = run_gate(tmp_path, [state])
    assert done.returncode == 1, done.stderr
    assert len(paths) > 3
    assert "gave up waiting" in done.stderr


def test_every_workload_is_wired_to_the_migration_gate(objects: list[dict[str, Any]]):
    job = named(objects, "Job")["flowpilot-migrate"]
    role = named(objects, "Role")["flowpilot-migration-gate"]
    assert role["rules"] == [
        {
            "apiGroups": ["batch"],
            "resources": ["jobs"],
            "resourceNames": ["flowpilot-migrate"],
            "verbs": ["get"],
        }
    ]
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    for name in SERVICES:
        spec = named(objects, "Deployment")[f"flowpilot-{name}"]["spec"]["template"]["spec"]
        (gate,) = spec["initContainers"]
        assert gate["command"][-1].endswith("/wait_for_migration.py")
        assert spec["serviceAccountName"] in [
            s["name"] for s in named(objects, "RoleBinding")["flowpilot-migration-gate"]["subjects"]
        ]
    assert (
        "initContainers" not in named(objects, "Deployment")["flowpilot-gateway"]["spec"]["template"]["spec"]
    )
