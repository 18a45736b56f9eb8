"""Replicas that agree: three `pier serve` processes on one PostgreSQL database and one model
store serve the same endpoints. A change made through one replica's control API is in
service on every replica, with `pier loadtest` hitting all three and no request failing."""

import concurrent.futures
import json
import subprocess
import time
import urllib.request

import boto3
import botocore.exceptions
import pytest

from conftest import FIXTURES, pier_binary, start_pier, stop_pier
from postgres import Postgres, RowLock, wait_for

CSV = b"5.1,3.5,1.4,0.2\n"
COMMON = dict(region_name="us-east-1", aws_access_key_id="any", aws_secret_access_key="any")


@pytest.fixture
def replicas(tmp_path):
    pg = Postgres()
    store = tmp_path / "store"
    procs = []
    try:
        addrs = []
        for i in range(3):
            proc, a = start_pier(tmp_path / f"r{i}", "--database-url", pg.url, "--store", f"file://{store}",
                                 "--job-slots", "0", "--reconcile-every", "1", "--replica-id", f"r{i}")
            procs.append(proc)
            addrs.append(a)
        yield pg, addrs
    finally:
        for proc in procs:
            stop_pier(proc)
        pg.stop()


def control(a):
    return boto3.client("sagemaker", endpoint_url=f"http://{a['admin']}", **COMMON)


def runtime(a):
    return boto3.client("sagemaker-runtime", endpoint_url=f"http://{a['http']}", **COMMON)


def describe_raw(a, name):
    """DescribeEndpoint as sent (boto3 drops fields its service model lacks, such as Pier's)."""
    request = urllib.request.Request(
        f"http://{a['admin']}/", data=json.dumps({"EndpointName": name}).encode(),
        headers={"X-Amz-Target": "SageMaker.DescribeEndpoint", "Content-Type": "application/x-amz-json-1.1"})
    with urllib.request.urlopen(request, timeout=10) as r:
        return json.loads(r.read())


def variant_of(rt):
    """The variant a replica serves `iris` with now, or None while it serves none."""
    try:
        return rt.invoke_endpoint(EndpointName="iris", ContentType="text/csv", Body=CSV)["InvokedProductionVariant"]
    except botocore.exceptions.ClientError:
        return None


def test_a_change_through_one_replica_is_served_by_all_without_a_failed_request(replicas, tmp_path):
    pg, addrs = replicas
    sms = [control(a) for a in addrs]
    rts = [runtime(a) for a in addrs]

    # Models and configs made through different replicas; the endpoint through the first.
    sms[0].create_model(ModelName="logreg", ExecutionRoleArn="arn:aws:iam::000000000000:role/x",
                        PrimaryContainer={"Image": "onnx", "ModelDataUrl": f"file://{FIXTURES / 'iris-logreg' / 'model.onnx'}"})
    sms[1].create_model(ModelName="mlp", ExecutionRoleArn="arn:aws:iam::000000000000:role/x",
                        PrimaryContainer={"Image": "onnx", "ModelDataUrl": f"file://{FIXTURES / 'iris-mlp' / 'model.onnx'}"})
    sms[2].create_endpoint_config(EndpointConfigName="blue", ProductionVariants=[{"VariantName": "blue", "ModelName": "logreg"}])
    sms[0].create_endpoint_config(EndpointConfigName="green", ProductionVariants=[{"VariantName": "green", "ModelName": "mlp"}])
    sms[0].create_endpoint(EndpointName="iris", EndpointConfigName="blue")
    sms[0].get_waiter("endpoint_in_service").wait(EndpointName="iris", WaiterConfig={"Delay": 0.2, "MaxAttempts": 150})
    for rt in rts:
        wait_for(lambda: variant_of(rt) == "blue", 15, "every replica serving the new endpoint")

    # Load on all three replicas while the endpoint is updated, back and forth, through the
    # second replica.
    report = tmp_path / "load.json"
    load = subprocess.Popen([pier_binary(), "loadtest", *sum((["--url", f"http://{a['http']}"] for a in addrs), []),
                             "--model", "iris", "--features", "4", "--concurrency", "6", "--duration", "12",
                             "--json", str(report), "--quiet"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(1)
    converged = []
    for target in ["green", "blue", "green"]:
        sms[1].update_endpoint(EndpointName="iris", EndpointConfigName=target)
        sms[1].get_waiter("endpoint_in_service").wait(EndpointName="iris", WaiterConfig={"Delay": 0.1, "MaxAttempts": 300})
        # From the update being in service on the replica that made it to every replica.
        converged.append(max(wait_for(lambda rt=rt: variant_of(rt) == target, 20, f"replica serving {target}") for rt in rts))
    _, err = load.communicate(timeout=60)
    assert load.returncode == 0, err
    result = json.loads(report.read_text())
    assert result["ok"] > 100, result
    assert result["errors"] == {}, f"requests failed during the updates: {result['errors']}"
    # The periodic pass (1 s) bounds it even without a notification; a notification makes it
    # sooner. The 2 s is measured in benches, not asserted here.
    assert max(converged) < 10, converged

    # Every replica reports itself, and the config it serves, in DescribeEndpoint.
    def replicas_in_sync():
        described = describe_raw(addrs[2], "iris")
        reported = {r["ReplicaId"]: r for r in described.get("PierReplicas", [])}
        return set(reported) == {"r0", "r1", "r2"} and all(
            r["EndpointConfigName"] == "green" and r["InSync"] for r in reported.values())
    wait_for(replicas_in_sync, 10, "PierReplicas naming three replicas serving green")

    # A delete through the third replica stops the endpoint everywhere.
    sms[2].delete_endpoint(EndpointName="iris")
    for rt in rts:
        wait_for(lambda rt=rt: variant_of(rt) is None, 10, "every replica dropping the deleted endpoint")


def test_two_replicas_racing_the_same_update_one_wins_and_both_converge(replicas):
    pg, addrs = replicas
    sms = [control(a) for a in addrs]
    sms[0].create_model(ModelName="logreg", ExecutionRoleArn="arn:aws:iam::000000000000:role/x",
                        PrimaryContainer={"Image": "onnx", "ModelDataUrl": f"file://{FIXTURES / 'iris-logreg' / 'model.onnx'}"})
    sms[0].create_model(ModelName="mlp", ExecutionRoleArn="arn:aws:iam::000000000000:role/x",
                        PrimaryContainer={"Image": "onnx", "ModelDataUrl": f"file://{FIXTURES / 'iris-mlp' / 'model.onnx'}"})
    for name, model in [("blue", "logreg"), ("green", "mlp"), ("red", "logreg")]:
        sms[0].create_endpoint_config(EndpointConfigName=name, ProductionVariants=[{"VariantName": name, "ModelName": model}])
    sms[0].create_endpoint(EndpointName="iris", EndpointConfigName="blue")
    sms[0].get_waiter("endpoint_in_service").wait(EndpointName="iris", WaiterConfig={"Delay": 0.2, "MaxAttempts": 150})

    # Both replicas read the endpoint, then both write it at once: the row is held locked
    # until both writes wait on it, so which one wins is decided by the database's
    # compare-and-swap, not by which request the machine happened to run first.
    lock = RowLock(pg, "endpoints", "iris")
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        racing = pool.map(lambda args: _try_update(*args), [(sms[1], "green"), (sms[2], "red")])
        try:
            wait_for(lambda: lock.waiting_writers("UPDATE endpoints") == 2, 30, "both updates waiting to write")
        finally:
            lock.release()
        outcomes = list(racing)
    won = [target for target, error in outcomes if error is None]
    lost = [error for _, error in outcomes if error is not None]
    assert len(won) == 1, outcomes
    assert len(lost) == 1 and "in-progress" in lost[0], outcomes
    sms[0].get_waiter("endpoint_in_service").wait(EndpointName="iris", WaiterConfig={"Delay": 0.2, "MaxAttempts": 150})
    assert sms[0].describe_endpoint(EndpointName="iris")["EndpointConfigName"] == won[0]
    for a in addrs:
        wait_for(lambda rt=runtime(a): variant_of(rt) == won[0], 15, "every replica serving the winner")


def _try_update(sm, target):
    try:
        sm.update_endpoint(EndpointName="iris", EndpointConfigName=target)
        return target, None
    except botocore.exceptions.ClientError as e:
        return target, e.response["Error"]["Message"]
