"""Moving over from Triton: a Triton model repository copied as is (config.pbtxt with
max_batch_size, dynamic_batching, version_policy and instance_group; `<version>/model.onnx`)
served by `pier serve --model-repository`, with tritonclient (HTTP and gRPC) and perf_analyzer
unchanged: same model names and versions, the same model config, batched inference; a model
with an unsupported platform is refused alone.
"""

import re
import shutil
import subprocess

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from conftest import FIXTURES, start_pier, stop_pier
from test_tritonclient import perf_analyzer_env

IRIS = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]], dtype=np.float32)

CONFIG = """
name: "iris_onnx"
platform: "onnxruntime_onnx"
max_batch_size: 16
input [
  {
    name: "X"
    data_type: TYPE_FP32
    dims: [ 4 ]
  }
]
output [
  {
    name: "label"
    data_type: TYPE_INT64
    dims: [ 1 ]
  },
  {
    name: "probabilities"
    data_type: TYPE_FP32
    dims: [ 3 ]
  }
]
dynamic_batching {
  preferred_batch_size: [ 4, 8 ]
  max_queue_delay_microseconds: 200
}
version_policy: { latest: { num_versions: 2 } }
instance_group [ { count: 2, kind: KIND_CPU } ]
"""


@pytest.fixture(scope="module")
def repository_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("triton")
    repo = root / "models"
    model = repo / "iris_onnx"
    for version, fixture in [(1, "iris-svm"), (2, "iris-logreg"), (3, "iris-mlp")]:
        (model / str(version)).mkdir(parents=True)
        shutil.copy(FIXTURES / fixture / "model.onnx", model / str(version) / "model.onnx")
    (model / "config.pbtxt").write_text(CONFIG)
    trt = repo / "resnet_trt"
    (trt / "1").mkdir(parents=True)
    (trt / "1" / "model.plan").write_bytes(b"\0" * 16)
    (trt / "config.pbtxt").write_text('platform: "tensorrt_plan"\nmax_batch_size: 8\n')
    proc, addrs = start_pier(root / "data", "--model-repository", str(repo))
    yield addrs
    stop_pier(proc)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_tritonclient_sees_the_repository(repository_server, protocol):
    module = httpclient if protocol == "http" else grpcclient
    client = module.InferenceServerClient(repository_server[protocol])
    assert client.is_server_ready()
    assert client.is_model_ready("iris_onnx", "2")
    assert client.is_model_ready("iris_onnx", "3")
    assert not client.is_model_ready("iris_onnx", "1"), "latest 2 leaves version 1 out"
    assert not client.is_model_ready("resnet_trt")
    if protocol == "http":
        meta = client.get_model_metadata("iris_onnx")
        config = client.get_model_config("iris_onnx")
    else:
        meta = client.get_model_metadata("iris_onnx", as_json=True)
        config = client.get_model_config("iris_onnx", as_json=True)["config"]
    assert meta["versions"] == ["2", "3"]
    assert int(config["max_batch_size"]) == 16
    assert [int(s) for s in config["dynamic_batching"]["preferred_batch_size"]] == [4, 8]
    assert int(config["instance_group"][0]["count"]) == 2

    labels = {}
    for version in ["2", "3"]:
        x = module.InferInput("X", list(IRIS.shape), "FP32")
        x.set_data_from_numpy(IRIS)
        out = [module.InferRequestedOutput("label"), module.InferRequestedOutput("probabilities")]
        r = client.infer("iris_onnx", [x], model_version=version, outputs=out)
        labels[version] = r.as_numpy("label").tolist()
        assert r.as_numpy("probabilities").shape == (2, 3)
    assert labels["2"] == [0, 2] and labels["3"] == [0, 2]

    # More rows than max_batch_size are refused, as Triton refuses them.
    big = np.repeat(IRIS, 9, axis=0)
    x = module.InferInput("X", list(big.shape), "FP32")
    x.set_data_from_numpy(big)
    with pytest.raises(InferenceServerException) as e:
        client.infer("iris_onnx", [x])
    assert "max_batch_size 16" in str(e.value)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_perf_analyzer_runs_unchanged(repository_server, protocol):
    exe, env = perf_analyzer_env()
    cmd = [exe, "-m", "iris_onnx", "-u", repository_server[protocol], "-i", protocol, "-b", "4",
           "--concurrency-range", "4", "--measurement-interval", "1000",
           "--max-trials", "12", "--stability-percentage", "100"]  # a busy machine is not a failure
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    out = run.stdout + run.stderr
    print(f"\n$ {' '.join(cmd)}\n{out}")
    assert run.returncode == 0, out
    throughput = re.search(r"Throughput: ([0-9.]+) infer/sec", out)
    assert throughput and float(throughput.group(1)) > 0, out
    assert "had error" not in out and "Failed" not in out, out
