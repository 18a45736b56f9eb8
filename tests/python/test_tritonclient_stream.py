"""tritonclient's streaming and compression options against a real `pier serve --demo`
(the module-scoped server of test_tritonclient.py): ModelStreamInfer with one response per
request and errors per message, gzip/deflate request compression over HTTP and gRPC, and
perf_analyzer --streaming.
"""

import queue
import subprocess

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from test_tritonclient import IRIS, grpc, http, http_input, perf_analyzer_env, pier_v2_server  # noqa: F401


def grpc_input(data=IRIS, datatype="FP32"):
    x = grpcclient.InferInput("X", list(data.shape), datatype)
    x.set_data_from_numpy(data)
    return x


def test_stream_infer_one_response_per_request_and_errors_per_message(pier_v2_server):
    client = grpcclient.InferenceServerClient(url=pier_v2_server["grpc"])
    answers = queue.Queue()
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    try:
        for i in range(20):
            client.async_stream_infer("demo", [grpc_input()], request_id=f"ok-{i}", model_version="2")
        # A bad request in the middle fails alone; the stream goes on.
        client.async_stream_infer("demo", [grpc_input(IRIS.astype(np.float64), "FP64")], request_id="bad")
        client.async_stream_infer("demo", [grpc_input()], request_id="after", model_version="1")
        got = [answers.get(timeout=30) for _ in range(22)]
    finally:
        client.stop_stream()
        client.close()
    ok = [r for r, e in got if e is None]
    errors = [e for r, e in got if e is not None]
    assert len(ok) == 21 and len(errors) == 1, got
    assert "FP64" in str(errors[0])
    ids = [r.get_response().id for r in ok]
    assert ids == [f"ok-{i}" for i in range(20)] + ["after"], ids
    for r in ok:
        assert r.as_numpy("probabilities").shape == (2, 3)
    assert ok[-1].get_response().model_version == "1"


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
def test_compressed_requests(pier_v2_server, algorithm):
    h = httpclient.InferenceServerClient(url=pier_v2_server["http"])
    result = h.infer("demo", [http_input(False)], model_version="1", request_compression_algorithm=algorithm)
    assert result.as_numpy("probabilities").shape == (2, 3)
    binary = h.infer("demo", [http_input(True)], model_version="1", request_compression_algorithm=algorithm)
    np.testing.assert_allclose(binary.as_numpy("probabilities"), result.as_numpy("probabilities"), rtol=1e-6)
    g = grpcclient.InferenceServerClient(url=pier_v2_server["grpc"])
    over_grpc = g.infer("demo", [grpc_input()], model_version="1", compression_algorithm=algorithm)
    np.testing.assert_allclose(over_grpc.as_numpy("probabilities"), result.as_numpy("probabilities"), rtol=1e-6)


def test_perf_analyzer_streaming(pier_v2_server):
    exe, env = perf_analyzer_env()
    cmd = [exe, "-m", "demo", "-u", pier_v2_server["grpc"], "-i", "grpc", "--streaming",
           "--concurrency-range", "4", "--measurement-interval", "1500",
           "--max-trials", "12", "--stability-percentage", "100"]  # a busy machine is not a failure
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out
    assert "Throughput:" in out, out
