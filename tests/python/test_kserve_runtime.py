"""Pier's KServe ServingRuntime (deploy/kserve/) against the contract behind it.

For each example InferenceService, the predictor container is built as KServe builds it: the
ServingRuntime's container with the InferenceService's model spec merged over it (its ports)
and the `{{.Name}}`-style placeholders filled from the InferenceService's metadata (KServe's
ReplacePlaceholders: a Go template over the container, with the ObjectMeta as data). A model
folder is laid out as KServe's storage initializer leaves it (the storageUri's files, here
committed fixtures, plus what KServe's samples ship beside them) and bind-mounted at
/mnt/models in a private mount and network namespace (`unshare`, as root), so the container's
exact args, with their fixed ports and /mnt/models, run unchanged. kserve_pod.py then probes
the declared readiness and liveness paths and sends a v2 REST and a v2 gRPC inference.
"""

import copy
import json
import math
import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest
import yaml

from conftest import ROOT, pier_binary

DEPLOY = ROOT / "deploy" / "kserve"
POD = pathlib.Path(__file__).with_name("kserve_pod.py")
KSERVE_DEFAULT_HTTP_PORT = 8080  # what KServe routes to when no port is declared


def documents(name):
    return [d for d in yaml.safe_load_all((DEPLOY / name).read_text()) if d]


def runtime():
    [doc] = documents("servingruntime.yaml")
    assert doc["kind"] in ("ServingRuntime", "ClusterServingRuntime")
    return doc


PLACEHOLDER = re.compile(r"\{\{\s*\.(Name|Namespace|Labels|Annotations)(?:\.([\w-]+))?\s*\}\}")


def fill(text, meta):
    """KServe's placeholder substitution over the container's JSON."""
    values = {
        "Name": meta["name"],
        "Namespace": meta.get("namespace", "default"),
        "Labels": meta.get("labels", {}),
        "Annotations": meta.get("annotations", {}),
    }

    def one(m):
        value = values[m.group(1)]
        if m.group(2) is not None:
            # A missing key renders as Go's "<no value>": the runtime must not depend on one.
            assert m.group(2) in value, f"placeholder {m.group(0)} has no value for this InferenceService"
            value = value[m.group(2)]
        assert isinstance(value, str), m.group(0)
        return value

    filled = PLACEHOLDER.sub(one, text)
    assert "{{" not in filled, f"a placeholder KServe cannot fill is left: {filled}"
    return filled


def predictor_container(rt, isvc):
    """The container KServe runs for `isvc` on runtime `rt`."""
    model = isvc["spec"]["predictor"]["model"]
    assert model["runtime"] == rt["metadata"]["name"]
    formats = {f["name"] for f in rt["spec"]["supportedModelFormats"]}
    assert model["modelFormat"]["name"] in formats
    protocol = model.get("protocolVersion", "v1")
    assert protocol in rt["spec"]["protocolVersions"], protocol
    container = copy.deepcopy(rt["spec"]["containers"][0])
    assert container["name"] == "kserve-container"
    # Strategic merge of the InferenceService's container fields: ports by containerPort,
    # env by name.
    ports = {p["containerPort"]: p for p in container.get("ports", [])}
    ports.update({p["containerPort"]: p for p in model.get("ports", [])})
    if ports:
        container["ports"] = list(ports.values())
    env = {e["name"]: e for e in container.get("env", [])}
    env.update({e["name"]: e for e in model.get("env", [])})
    container["env"] = list(env.values())
    return json.loads(fill(json.dumps(container), isvc["metadata"]))


def flag(args, name):
    """The port of an address flag (`--http=0.0.0.0:8080` or `--http 0.0.0.0:8080`)."""
    for i, a in enumerate(args):
        if a.startswith(name + "="):
            return int(a.split("=", 1)[1].rsplit(":", 1)[1])
        if a == name:
            return int(args[i + 1].rsplit(":", 1)[1])
    raise AssertionError(f"{name} is not in the runtime's args {args}")


def run_pod(container, model_files, tmp_path, check, model_name, annotations):
    """Runs the container with `model_files` at /mnt/models; returns what kserve_pod.py saw."""
    models = tmp_path / "models"
    models.mkdir()
    for name, source in model_files.items():
        if isinstance(source, bytes):
            (models / name).write_bytes(source)
        else:
            shutil.copy(source, models / name)
    args = container["args"]
    http_port = flag(args, "--http")
    grpc_port = flag(args, "--grpc")
    declared = {p["containerPort"] for p in container.get("ports", [])} or {KSERVE_DEFAULT_HTTP_PORT}
    assert http_port in declared, f"HTTP port {http_port} is not one KServe routes to ({declared})"
    probe = lambda p: {"path": p["httpGet"]["path"], "port": p["httpGet"]["port"]}  # noqa: E731
    # The image's entrypoint is the pier binary.
    command = container.get("command", [pier_binary()]) + args
    spec = {
        "command": command,
        "env": {e["name"]: e["value"] for e in container["env"]},
        "readiness": probe(container["readinessProbe"]),
        "liveness": probe(container["livenessProbe"]),
        "http_port": http_port,
        "grpc_port": grpc_port,
        "model_name": model_name,
        "check": check,
        "log": str(tmp_path / "pier.log"),
        # Where KServe tells Prometheus to scrape (the runtime's annotations).
        "metrics": {"port": int(annotations["prometheus.kserve.io/port"]),
                    "path": annotations["prometheus.kserve.io/path"]},
    }
    script = (
        'set -e; ip link set lo up; mount -t tmpfs tmpfs /mnt; mkdir /mnt/models; '
        'mount --bind "$0" /mnt/models; exec "$@"'
    )
    # As root, plain namespaces; otherwise a user namespace mapping us to root in it (what an
    # unprivileged CI runner allows where user namespaces are on).
    user = [] if os.geteuid() == 0 else ["--user", "--map-root-user"]
    out = subprocess.run(
        ["unshare", *user, "--mount", "--net", "--propagation", "private", "sh", "-c", script,
         str(models), sys.executable, str(POD), json.dumps(spec)],
        capture_output=True, text=True, timeout=180,
    )
    assert out.returncode == 0, f"the pod runner failed: {out.stderr}"
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    seen["log"] = (tmp_path / "pier.log").read_text()
    return seen


def close(actual, expected, tol=1e-5):
    a, e = list(_flat(actual)), list(_flat(expected))
    return len(a) == len(e) and all(math.isclose(x, y, rel_tol=tol, abs_tol=tol) for x, y in zip(a, e))


def _flat(v):
    if isinstance(v, list):
        for x in v:
            yield from _flat(x)
    else:
        yield float(v)


def iris_case():
    case = json.loads((ROOT / "fixtures/onnx/iris-logreg/case.json").read_text())
    x = case["inputs"]["X"]
    return {"name": "X", "datatype": "FP32", "shape": x["shape"], "data": x["data"]}, case["outputs"]


def xgboost_case():
    case = json.loads((ROOT / "fixtures/trees/xgb_binary_logistic.case.json").read_text())
    n = case["n_features"]
    rows = [case["inputs"][i * n:(i + 1) * n] for i in range(case["n_rows"])]
    keep = [i for i, r in enumerate(rows) if None not in r][:8]
    assert len(keep) >= 3
    data = [v for i in keep for v in rows[i]]
    expected = [case["predict"][i] for i in keep]
    return {"name": "features", "datatype": "FP32", "shape": [len(keep), n], "data": data}, expected


@pytest.fixture(scope="module")
def rt():
    return runtime()


def test_the_runtime_declares_onnx_xgboost_lightgbm_over_v2(rt):
    formats = {f["name"] for f in rt["spec"]["supportedModelFormats"]}
    assert {"onnx", "xgboost", "lightgbm"} <= formats
    assert {"v2", "grpc-v2"} <= set(rt["spec"]["protocolVersions"])
    [c] = rt["spec"]["containers"]
    assert c["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert c["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert "--model-dir=/mnt/models" in c["args"] and "--model-name={{.Name}}" in c["args"]


def test_onnx_inference_service_over_rest_and_grpc(rt, tmp_path):
    [isvc] = documents("inferenceservice.yaml")
    container = predictor_container(rt, isvc)
    name = isvc["metadata"]["name"]
    assert f"--model-name={name}" in container["args"]
    x, expected = iris_case()
    seen = run_pod(container, {"model.onnx": ROOT / "fixtures/onnx/iris-logreg/model.onnx"},
                   tmp_path, {"input": x}, name, rt["spec"]["annotations"])
    assert seen["readiness"][-1] == 200, seen
    assert set(seen["liveness"]) <= {200, "refused"} and seen["liveness"][-1] == 200, seen
    rest = {o["name"]: o["data"] for o in seen["rest"]["outputs"]}
    assert seen["rest"]["model_name"] == name
    assert rest["label"] == expected["label"]["data"]
    assert close(rest["probabilities"], expected["probabilities"]["data"])
    assert seen["grpc_ready"] == [True, True, True]
    assert seen["grpc"]["model_name"] == name
    assert seen["grpc"]["outputs"]["label"] == expected["label"]["data"]
    assert close(seen["grpc"]["outputs"]["probabilities"], expected["probabilities"]["data"])
    # Both inferences are counted where KServe's annotations point Prometheus.
    ok = re.search(r'pier_requests_total\{[^}]*endpoint="iris-onnx"[^}]*outcome="ok"[^}]*\} (\d+)', seen["metrics"])
    assert ok and int(ok.group(1)) >= 2, seen["metrics"][:2000]
    assert seen["exit_code"] == 0, seen["log"]


def test_xgboost_inference_service_with_grpc_ports(rt, tmp_path):
    [isvc] = documents("inferenceservice-grpc.yaml")
    container = predictor_container(rt, isvc)
    ports = {p["containerPort"] for p in container["ports"]}
    assert ports == {flag(container["args"], "--http"), flag(container["args"], "--grpc")}
    x, expected = xgboost_case()
    # KServe's XGBoost sample folder: model.bst beside MLServer's model-settings.json.
    files = {
        "model.bst": ROOT / "fixtures/trees/xgb_binary_logistic.model.json",
        "model-settings.json": b'{"name": "xgboost-iris", "implementation": "mlserver_xgboost.XGBoostModel"}',
    }
    name = isvc["metadata"]["name"]
    seen = run_pod(container, files, tmp_path, {"input": x}, name, rt["spec"]["annotations"])
    assert seen["readiness"][-1] == 200, seen
    assert seen["liveness"][-1] == 200
    assert close([o["data"] for o in seen["rest"]["outputs"] if o["name"] == "score"][0], expected)
    assert close(seen["grpc"]["outputs"]["score"], expected)
    assert seen["exit_code"] == 0, seen["log"]


def test_a_folder_pier_cannot_serve_stops_the_container_with_the_reason(rt, tmp_path):
    [isvc] = documents("inferenceservice.yaml")
    container = predictor_container(rt, isvc)
    files = {"model.onnx": ROOT / "fixtures/onnx/iris-logreg/model.onnx",
             "other.onnx": ROOT / "fixtures/onnx/iris-mlp/model.onnx"}
    x, _ = iris_case()
    seen = run_pod(container, files, tmp_path, {"input": x}, isvc["metadata"]["name"],
                   rt["spec"]["annotations"])
    assert 200 not in seen["readiness"], seen
    assert seen["exit_code"] not in (0, None), seen
    assert "several model files" in seen["log"] and "other.onnx" in seen["log"], seen["log"]
