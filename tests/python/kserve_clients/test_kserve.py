"""KServe's own Python clients (PyPI `kserve`, its v2 InferenceRESTClient and
InferenceGRPCClient) against a real `pier serve --demo`, unchanged; plus compressed request
bodies on REST, which KServe's and Triton's clients can send.

Runs in a venv of its own (tests/python/kserve_clients/requirements.txt): kserve pins a
protobuf that tritonclient's does not accept.
"""

import asyncio
import gzip
import json
import os
import pathlib
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zlib

import numpy as np
import pytest
from kserve import InferInput, InferRequest
from kserve.inference_client import InferenceGRPCClient, InferenceRESTClient, RESTConfig

ROOT = pathlib.Path(__file__).resolve().parents[3]
ROW = [5.1, 3.5, 1.4, 0.2]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    binary = os.environ.get("PIER_BIN", str(ROOT / "target" / "debug" / "pier"))
    data = tmp_path_factory.mktemp("data")
    cmd = [binary, "serve", "--demo", "--data-dir", str(data), "--http", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--grpc", "127.0.0.1:0"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    deadline = time.monotonic() + 60
    addrs = None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"pier exited early with {proc.wait()}")
        if line.startswith("pier: serving "):
            addrs = dict(part.split("=", 1) for part in line.split()[2:])
            break
    assert addrs, "pier did not start"
    yield addrs
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()


def request(model="demo", binary=False):
    x = InferInput("X", [2, 4], "FP32")
    x.set_data_from_numpy(np.array([ROW, ROW], dtype=np.float32), binary_data=binary)
    return InferRequest(model_name=model, infer_inputs=[x], request_id="r1")


def test_rest_client_health_readiness_and_inference(demo):
    async def run():
        client = InferenceRESTClient(RESTConfig(protocol="v2", timeout=30))
        base = f"http://{demo['http']}"
        assert await client.is_server_live(base) is True
        assert await client.is_server_ready(base) is True
        assert await client.is_model_ready(base, "demo") is True
        for binary in (False, True):
            response = await client.infer(base, request(binary=binary), model_name="demo")
            names = [o.name for o in response.outputs]
            assert "label" in names or len(names) >= 1, names
            first = response.outputs[0].as_numpy()
            assert first.shape[0] == 2, first.shape
        with pytest.raises(Exception) as err:
            await client.infer(base, request(model="ghost"), model_name="ghost")
        assert "ghost" in str(err.value)

    asyncio.run(run())


def test_grpc_client_health_readiness_and_inference(demo):
    async def run():
        async with InferenceGRPCClient(demo["grpc"], timeout=30) as client:
            assert await client.is_server_live() is True
            assert await client.is_server_ready() is True
            assert await client.is_model_ready("demo") is True
            # An unknown model is not ready, as over REST, rather than an error.
            assert await client.is_model_ready("ghost") is False
            response = await client.infer(request())
            assert response.outputs[0].as_numpy().shape[0] == 2

    asyncio.run(run())


def post(url, body, headers):
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_compressed_rest_bodies_are_decoded_and_bounded(demo):
    body = json.dumps({"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": ROW}]}).encode()
    url = f"http://{demo['http']}/v2/models/demo/infer"
    for encoding, packed in (("gzip", gzip.compress(body)), ("deflate", zlib.compress(body))):
        status, answer = post(url, packed, {"Content-Type": "application/json", "Content-Encoding": encoding})
        assert status == 200, (encoding, answer)
        assert json.loads(answer)["outputs"], answer
    # 64 MiB of zeros in a 64 KiB gzip: over the 6 MB body limit once decoded.
    bomb = gzip.compress(b"0" * (64 << 20), compresslevel=9)
    assert len(bomb) < 1 << 20
    status, answer = post(url, bomb, {"Content-Type": "application/json", "Content-Encoding": "gzip"})
    assert status == 413, answer
    assert "limit" in json.loads(answer)["error"], answer
    # Not gzip at all: a 400 naming the problem, and the server serves on.
    status, answer = post(url, b"not gzip", {"Content-Type": "application/json", "Content-Encoding": "gzip"})
    assert status == 400, answer
    status, _ = post(url, body, {"Content-Type": "application/json"})
    assert status == 200


def test_unknown_v2_routes_and_all_model_stats(demo):
    req = urllib.request.Request(f"http://{demo['http']}/v2/no/such/route")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=10)
    assert err.value.code == 404
    assert "error" in json.loads(err.value.read())
    with urllib.request.urlopen(f"http://{demo['http']}/v2/models/stats", timeout=10) as r:
        stats = json.loads(r.read())
    assert any(s["name"] == "demo" for s in stats["model_stats"]), stats


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
