"""Open Inference Protocol v2: tritonclient (HTTP and gRPC) and perf_analyzer against a
real `pier serve --demo` started on loopback by the fixture below.

The demo endpoint `demo` routes 70/30 between variants `logreg` (v2 version 1) and `mlp`
(version 2): iris, input "X" FP32 [-1, 4], outputs "label" INT64 [-1] and "probabilities"
FP32 [-1, 3]. The control-plane Models `demo-iris-logreg` and `demo-iris-mlp` are served by
name too, at their artifact's store version.

The pier binary: $PIER_BIN, else $CARGO_TARGET_DIR/debug/pier, else target/debug/pier.
"""

import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

REPO = Path(__file__).resolve().parents[2]
IRIS = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]], dtype=np.float32)


def pier_binary() -> Path:
    if os.environ.get("PIER_BIN"):
        return Path(os.environ["PIER_BIN"])
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    return target / "debug" / "pier"


@pytest.fixture(scope="module")
def pier_v2_server():
    """Starts `pier serve --demo` on ephemeral loopback ports; yields {http, admin, grpc}."""
    binary = pier_binary()
    assert binary.exists(), f"{binary} not found: run `cargo build -p pier` first"
    data = tempfile.mkdtemp(prefix="pier-v2-")
    log = open(os.path.join(data, "pier.log"), "wb")
    proc = subprocess.Popen(
        [str(binary), "serve", "--demo", "--data-dir", data,
         "--http", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--grpc", "127.0.0.1:0"],
        stdout=subprocess.PIPE, stderr=log, text=True,
    )
    try:
        addrs = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            if line.startswith("pier: serving "):
                addrs = dict(kv.split("=", 1) for kv in line.split()[2:])
                break
        assert addrs and "grpc" in addrs, f"pier did not start; see {log.name}"
        yield addrs
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        shutil.rmtree(data, ignore_errors=True)


@pytest.fixture(scope="module")
def http(pier_v2_server):
    return httpclient.InferenceServerClient(url=pier_v2_server["http"])


@pytest.fixture(scope="module")
def grpc(pier_v2_server):
    return grpcclient.InferenceServerClient(url=pier_v2_server["grpc"])


def http_input(binary: bool):
    x = httpclient.InferInput("X", list(IRIS.shape), "FP32")
    x.set_data_from_numpy(IRIS, binary_data=binary)
    return x


def test_liveness_and_readiness(http, grpc):
    assert http.is_server_live() and http.is_server_ready()
    assert grpc.is_server_live() and grpc.is_server_ready()
    assert http.is_model_ready("demo") and grpc.is_model_ready("demo")
    assert grpc.is_model_ready("demo", model_version="2")
    assert http.is_model_ready("demo-iris-logreg")
    assert http.get_server_metadata()["name"] == "pier"
    assert "binary_tensor_data" in grpc.get_server_metadata(as_json=True)["extensions"]


def test_metadata_and_config(http, grpc):
    for meta in (http.get_model_metadata("demo"), grpc.get_model_metadata("demo", as_json=True)):
        assert meta["versions"] == ["1", "2"]
        assert meta["inputs"][0]["name"] == "X"
        assert meta["inputs"][0]["datatype"] == "FP32"
        assert [int(d) for d in meta["inputs"][0]["shape"]] == [-1, 4]
        assert {o["name"] for o in meta["outputs"]} == {"label", "probabilities"}
    http_config = http.get_model_config("demo")
    grpc_config = grpc.get_model_config("demo", as_json=True)["config"]
    for config in (http_config, grpc_config):
        assert int(config["max_batch_size"]) == 1 << 20  # pier serve --max-request-rows default
        assert config["platform"] == "onnxruntime_onnx"
        assert config["input"][0]["data_type"] == "TYPE_FP32"
        assert [int(d) for d in config["input"][0]["dims"]] == [4]
        assert config["output"][0]["data_type"] == "TYPE_INT64"


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_http_infer(http, binary):
    outputs = [httpclient.InferRequestedOutput("label", binary_data=binary),
               httpclient.InferRequestedOutput("probabilities", binary_data=binary)]
    result = http.infer("demo", [http_input(binary)], outputs=outputs, model_version="1")
    labels = result.as_numpy("label")
    probs = result.as_numpy("probabilities")
    assert labels.dtype == np.int64 and labels.shape == (2,)
    assert probs.shape == (2, 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-4)
    assert list(labels) == list(probs.argmax(axis=1))
    response = result.get_response()
    assert response["model_version"] == "1"
    assert response["parameters"]["pier_variant"] == "logreg"


def test_grpc_infer(grpc, http):
    x = grpcclient.InferInput("X", list(IRIS.shape), "FP32")
    x.set_data_from_numpy(IRIS)
    result = grpc.infer("demo", [x], model_version="2",
                        outputs=[grpcclient.InferRequestedOutput("probabilities")])
    assert result.as_numpy("probabilities").shape == (2, 3)
    assert result.as_numpy("label") is None
    response = result.get_response(as_json=True)
    assert response["model_version"] == "2"
    assert response["parameters"]["pier_variant"]["string_param"] == "mlp"
    # Same version over HTTP gives the same answer.
    over_http = http.infer("demo", [http_input(True)], model_version="2")
    np.testing.assert_allclose(over_http.as_numpy("probabilities"),
                               result.as_numpy("probabilities"), rtol=1e-6)


def test_versioned_model_call(http, grpc):
    result = http.infer("demo-iris-mlp", [http_input(True)], model_version="1")
    assert result.get_response()["parameters"]["pier_artifact"] == "demo-iris-mlp/1"
    with pytest.raises(Exception, match="version"):
        http.infer("demo-iris-mlp", [http_input(True)], model_version="7")
    x = grpcclient.InferInput("X", list(IRIS.shape), "FP32")
    x.set_data_from_numpy(IRIS)
    with pytest.raises(grpcclient.InferenceServerException) as err:
        grpc.infer("nosuch", [x])
    assert "StatusCode.NOT_FOUND" in str(err.value.status())


def test_endpoint_routes_by_weight(http):
    counts = {"logreg": 0, "mlp": 0}
    for _ in range(300):
        result = http.infer("demo", [http_input(True)])
        counts[result.get_response()["parameters"]["pier_variant"]] += 1
    # Binomial(300, 0.7): mean 210, sd 7.9; allow about 5 sd.
    assert 170 <= counts["logreg"] <= 250, counts


def test_bad_input_is_rejected(http, grpc):
    wrong = httpclient.InferInput("X", [2, 4], "FP64")
    wrong.set_data_from_numpy(IRIS.astype(np.float64))
    with pytest.raises(httpclient.InferenceServerException, match="datatype FP64"):
        http.infer("demo", [wrong])
    g = grpcclient.InferInput("X", [2, 4], "FP64")
    g.set_data_from_numpy(IRIS.astype(np.float64))
    with pytest.raises(grpcclient.InferenceServerException) as err:
        grpc.infer("demo", [g])
    assert "INVALID_ARGUMENT" in str(err.value.status())


def perf_analyzer_env():
    exe = shutil.which("perf_analyzer")
    if exe is None:
        pytest.fail("perf_analyzer not on PATH: pip install 'tritonclient[all]==2.51.0'")
    env = dict(os.environ)
    try:
        import nvidia.cuda_runtime as cudart  # provides libcudart.so.12, no GPU needed
        lib = os.path.join(list(cudart.__path__)[0], "lib")
        env["LD_LIBRARY_PATH"] = lib + os.pathsep + env.get("LD_LIBRARY_PATH", "")
    except ImportError:
        pass
    return exe, env


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_perf_analyzer(pier_v2_server, protocol):
    exe, env = perf_analyzer_env()
    cmd = [exe, "-m", "demo", "-u", pier_v2_server[protocol], "-i", protocol,
           "--concurrency-range", "4", "--measurement-interval", "1500",
           # What is checked is the protocol, not the machine's steadiness: a busy CI machine
           # gets trials enough and a wide band before perf_analyzer calls a run unstable.
           "--max-trials", "12", "--stability-percentage", "100"]
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    out = run.stdout + run.stderr
    print(f"\n$ {' '.join(cmd)}\n{out}")
    assert run.returncode == 0, out
    throughput = re.search(r"Throughput: ([0-9.]+) infer/sec", out)
    assert throughput and float(throughput.group(1)) > 0, out
    assert "had error" not in out and "Failed" not in out, out
