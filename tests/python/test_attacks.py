"""The attack suite against a real `pier serve` process: many idle connections, many
concurrent clients, the process's memory, and kill -9 in the middle of a control-plane change.

Each test bounds its own traffic (counts and timeouts) and talks to loopback only.
"""

import concurrent.futures
import http.client
import json
import pathlib
import resource
import signal
import socket
import time

import pytest

from conftest import FIXTURES, start_pier, stop_pier

IRIS_CSV = b"5.1,3.5,1.4,0.2\n6.7,3.0,5.2,2.3\n"


def rss_mb(pid):
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def admin_call(admin, action, body):
    host, port = admin.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.request(
        "POST",
        "/",
        body=json.dumps(body),
        headers={"X-Amz-Target": f"SageMaker.{action}", "Content-Type": "application/x-amz-json-1.1"},
    )
    r = conn.getresponse()
    data = r.read()
    conn.close()
    return r.status, json.loads(data) if data else {}


def ok(admin, action, body):
    status, answer = admin_call(admin, action, body)
    assert status == 200, (action, answer)
    return answer


def wait_status(admin, endpoint, want=("InService",), timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        d = ok(admin, "DescribeEndpoint", {"EndpointName": endpoint})
        if d["EndpointStatus"] in want:
            return d
        time.sleep(0.05)
    raise AssertionError(f"{endpoint} not in {want}: {d}")


def invoke(http_addr, endpoint, body=IRIS_CSV, timeout=30):
    host, port = http_addr.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    conn.request("POST", f"/endpoints/{endpoint}/invocations", body=body, headers={"Content-Type": "text/csv"})
    r = conn.getresponse()
    data = r.read()
    variant = r.getheader("x-Amzn-Invoked-Production-Variant")
    conn.close()
    return r.status, variant, data


def deploy(admin, name="ep", models=("iris-logreg",)):
    for m in models:
        ok(admin, "CreateModel", {"ModelName": m, "PrimaryContainer": {"Image": "onnx", "ModelDataUrl": str(FIXTURES / m / "model.onnx")}})
    ok(admin, "CreateEndpointConfig", {"EndpointConfigName": f"{name}-1", "ProductionVariants": [{"VariantName": "main", "ModelName": models[0], "InitialVariantWeight": 1.0, "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}]})
    ok(admin, "CreateEndpoint", {"EndpointName": name, "EndpointConfigName": f"{name}-1"})
    wait_status(admin, name)


@pytest.fixture
def more_files():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, 8192)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_two_thousand_idle_connections_and_512_concurrent_clients(tmp_path, more_files):
    proc, addrs = start_pier(tmp_path / "data", "--grpc", "127.0.0.1:0", "--idle-timeout", "30")
    try:
        deploy(addrs["admin"])
        host, port = addrs["http"].rsplit(":", 1)
        idle = []
        for _ in range(2000):
            s = socket.create_connection((host, int(port)), timeout=10)
            idle.append(s)
        # With 2,000 idle connections open, the server still answers at once.
        started = time.monotonic()
        status, _, body = invoke(addrs["http"], "ep")
        assert status == 200, body
        assert time.monotonic() - started < 5

        # 512 concurrent clients, each with its own connection, 4 requests each.
        def client(_):
            outcomes = []
            conn = http.client.HTTPConnection(host, int(port), timeout=60)
            for _ in range(4):
                conn.request("POST", "/endpoints/ep/invocations", body=IRIS_CSV, headers={"Content-Type": "text/csv"})
                r = conn.getresponse()
                r.read()
                outcomes.append(r.status)
            conn.close()
            return outcomes

        with concurrent.futures.ThreadPoolExecutor(max_workers=512) as pool:
            results = [s for outcome in pool.map(client, range(512)) for s in outcome]
        assert results.count(200) == len(results), {s: results.count(s) for s in set(results)}
        rss = rss_mb(proc.pid)
        print(f"pier RSS with 2,000 idle connections after 512 clients x 4 requests: {rss:.0f} MB")
        assert rss < 200, f"RSS {rss:.0f} MB with 2,000 idle connections after 512 clients"
        for s in idle:
            s.close()
        assert proc.poll() is None, "pier died"
    finally:
        stop_pier(proc)


def test_kill_9_during_update_endpoint_loses_nothing(tmp_path):
    data = tmp_path / "data"
    proc, addrs = start_pier(data)
    deploy(addrs["admin"], models=("iris-logreg", "iris-mlp"))
    ok(addrs["admin"], "CreateEndpointConfig", {"EndpointConfigName": "ep-2", "ProductionVariants": [{"VariantName": "next", "ModelName": "iris-mlp", "InitialVariantWeight": 1.0, "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}]})
    ok(addrs["admin"], "UpdateEndpoint", {"EndpointName": "ep", "EndpointConfigName": "ep-2"})
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)

    proc, addrs = start_pier(data)
    try:
        d = wait_status(addrs["admin"], "ep", want=("InService", "Failed"))
        assert d["EndpointStatus"] == "InService", d
        # Either config may be the one in service (the kill raced the update), and what is
        # described is what serves.
        variants = {v["VariantName"] for v in d["ProductionVariants"]}
        status, variant, body = invoke(addrs["http"], "ep")
        assert status == 200, body
        assert variant in variants, (variant, d)
        models = {m["ModelName"] for m in ok(addrs["admin"], "ListModels", {})["Models"]}
        assert models == {"iris-logreg", "iris-mlp"}
        configs = {c["EndpointConfigName"] for c in ok(addrs["admin"], "ListEndpointConfigs", {})["EndpointConfigs"]}
        assert configs == {"ep-1", "ep-2"}
        # The interrupted update can be made again.
        ok(addrs["admin"], "UpdateEndpoint", {"EndpointName": "ep", "EndpointConfigName": "ep-2"})
        d = wait_status(addrs["admin"], "ep")
        assert [v["VariantName"] for v in d["ProductionVariants"]] == ["next"], d
    finally:
        stop_pier(proc)


def test_sigterm_finishes_while_a_client_trickles_bytes(tmp_path):
    proc, addrs = start_pier(tmp_path / "data", "--shutdown-grace", "2", "--header-read-timeout", "600", "--idle-timeout", "600")
    host, port = addrs["http"].rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=10)
    s.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
    for _ in range(5):
        s.sendall(b"1")
        time.sleep(0.1)
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        s.close()
    assert time.monotonic() - started < 10
