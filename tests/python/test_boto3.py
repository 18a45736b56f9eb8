"""boto3, unchanged, against Pier: the SageMaker control API and the runtime API."""

import json

import boto3
import botocore.exceptions
import pytest

from conftest import FIXTURES

CSV = b"5.1,3.5,1.4,0.2\n6.7,3.0,5.2,2.3\n"


def clients(addrs):
    common = dict(region_name="us-east-1", aws_access_key_id="any", aws_secret_access_key="any")
    sm = boto3.client("sagemaker", endpoint_url=f"http://{addrs['admin']}", **common)
    rt = boto3.client("sagemaker-runtime", endpoint_url=f"http://{addrs['http']}", **common)
    return sm, rt


def wait(sm, name):
    sm.get_waiter("endpoint_in_service").wait(EndpointName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60})


def test_deploy_invoke_update_delete(pier_server):
    sm, rt = clients(pier_server)
    for name, fixture in [("logreg", "iris-logreg"), ("mlp", "iris-mlp")]:
        arn = sm.create_model(
            ModelName=name,
            PrimaryContainer={"Image": "onnx", "ModelDataUrl": f"file://{FIXTURES / fixture / 'model.onnx'}"},
            ExecutionRoleArn="arn:aws:iam::000000000000:role/unused",
        )["ModelArn"]
        assert arn.endswith(f"model/{name}")
    assert {m["ModelName"] for m in sm.list_models()["Models"]} == {"logreg", "mlp"}
    assert sm.describe_model(ModelName="mlp")["PrimaryContainer"]["Image"] == "onnx"

    sm.create_endpoint_config(
        EndpointConfigName="ab",
        ProductionVariants=[
            {"VariantName": "a", "ModelName": "logreg", "InitialVariantWeight": 70, "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"},
            {"VariantName": "b", "ModelName": "mlp", "InitialVariantWeight": 30, "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"},
        ],
    )
    sm.create_endpoint(EndpointName="iris", EndpointConfigName="ab")
    wait(sm, "iris")

    r = rt.invoke_endpoint(EndpointName="iris", ContentType="text/csv", Accept="application/json", Body=CSV)
    assert r["InvokedProductionVariant"] in {"a", "b"}
    assert r["ContentType"] == "application/json"
    predictions = json.loads(r["Body"].read())["predictions"]
    assert [p["label"] for p in predictions] == [0, 2]

    r = rt.invoke_endpoint(EndpointName="iris", ContentType="application/json", TargetVariant="b",
                           Body=json.dumps({"instances": [[5.1, 3.5, 1.4, 0.2]]}))
    assert r["InvokedProductionVariant"] == "b"

    sm.update_endpoint_weights_and_capacities(
        EndpointName="iris", DesiredWeightsAndCapacities=[{"VariantName": "a", "DesiredWeight": 0}]
    )
    seen = {rt.invoke_endpoint(EndpointName="iris", ContentType="text/csv", Body=CSV)["InvokedProductionVariant"] for _ in range(30)}
    assert seen == {"b"}
    variants = sm.describe_endpoint(EndpointName="iris")["ProductionVariants"]
    assert [(v["VariantName"], v["CurrentWeight"]) for v in variants] == [("a", 0.0), ("b", 30.0)]

    sm.create_endpoint_config(EndpointConfigName="only-a", ProductionVariants=[{"VariantName": "a", "ModelName": "logreg"}])
    sm.update_endpoint(EndpointName="iris", EndpointConfigName="only-a")
    wait(sm, "iris")
    described = sm.describe_endpoint(EndpointName="iris")
    assert described["EndpointStatus"] == "InService"
    assert described["EndpointConfigName"] == "only-a"
    assert [e["EndpointName"] for e in sm.list_endpoints()["Endpoints"]] == ["iris"]

    sm.delete_endpoint(EndpointName="iris")
    sm.delete_endpoint_config(EndpointConfigName="ab")
    sm.delete_endpoint_config(EndpointConfigName="only-a")
    sm.delete_model(ModelName="logreg")
    sm.delete_model(ModelName="mlp")
    assert sm.list_models()["Models"] == []


def test_errors_come_back_as_client_errors(pier_server):
    sm, rt = clients(pier_server)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        rt.invoke_endpoint(EndpointName="missing", ContentType="text/csv", Body=CSV)
    assert e.value.response["Error"]["Code"] == "ValidationError"
    assert "missing" in e.value.response["Error"]["Message"]
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400

    with pytest.raises(botocore.exceptions.ClientError) as e:
        sm.describe_endpoint(EndpointName="missing")
    assert e.value.response["Error"]["Code"] == "ValidationException"
    assert e.value.response["Error"]["Message"] == 'Could not find endpoint "missing".'

    with pytest.raises(botocore.exceptions.ClientError) as e:
        sm.create_model(ModelName="m", PrimaryContainer={"Image": "onnx", "ModelDataUrl": "/does/not/exist.onnx"})
    assert e.value.response["Error"]["Code"] == "ValidationException"
    assert "/does/not/exist.onnx" in e.value.response["Error"]["Message"]


def test_batching_set_from_boto3_through_tags(pier_server):
    """boto3 refuses `PierBatching` in ProductionVariants; the same settings go as tags."""
    sm, _ = clients(pier_server)
    sm.create_model(
        ModelName="mlp",
        PrimaryContainer={"Image": "onnx", "ModelDataUrl": f"file://{FIXTURES / 'iris-mlp' / 'model.onnx'}"},
    )
    with pytest.raises(botocore.exceptions.ParamValidationError):
        sm.create_endpoint_config(
            EndpointConfigName="x",
            ProductionVariants=[{"VariantName": "main", "ModelName": "mlp", "PierBatching": {"MaxBatchSize": 8}}],
        )
    # A request waits a whole second for company and the queue holds one request, so a
    # second request sent meanwhile is refused at once: the tags took effect.
    sm.create_endpoint_config(
        EndpointConfigName="batched",
        ProductionVariants=[{"VariantName": "main", "ModelName": "mlp"}],
        Tags=[
            {"Key": "pier:batching:main:MaxBatchSize", "Value": "64"},
            {"Key": "pier:batching:main:MaxQueueDelayMicroseconds", "Value": "1000000"},
            {"Key": "pier:batching:main:MaxQueueSize", "Value": "1"},
            {"Key": "team", "Value": "search"},
        ],
    )
    sm.create_endpoint(EndpointName="batched", EndpointConfigName="batched")
    wait(sm, "batched")
    import concurrent.futures
    import time

    from botocore.config import Config

    common = dict(region_name="us-east-1", aws_access_key_id="any", aws_secret_access_key="any")
    rt = boto3.client("sagemaker-runtime", endpoint_url=f"http://{pier_server['http']}",
                      config=Config(retries={"mode": "standard", "total_max_attempts": 1}), **common)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        started = time.monotonic()
        first = pool.submit(rt.invoke_endpoint, EndpointName="batched", ContentType="text/csv", Body=CSV)
        time.sleep(0.3)
        with pytest.raises(botocore.exceptions.ClientError) as refused:
            rt.invoke_endpoint(EndpointName="batched", ContentType="text/csv", Body=CSV)
        assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 429
        assert first.result(timeout=10)["ResponseMetadata"]["HTTPStatusCode"] == 200
        assert time.monotonic() - started >= 0.9, "the first request waited for the delay"
    tags = sm.list_tags(ResourceArn=sm.describe_endpoint_config(EndpointConfigName="batched")["EndpointConfigArn"])["Tags"]
    assert {"Key": "pier:batching:main:MaxQueueSize", "Value": "1"} in tags

    with pytest.raises(botocore.exceptions.ClientError) as bad:
        sm.create_endpoint_config(
            EndpointConfigName="bad",
            ProductionVariants=[{"VariantName": "main", "ModelName": "mlp"}],
            Tags=[{"Key": "pier:batching:other:MaxBatchSize", "Value": "8"}],
        )
    assert bad.value.response["Error"]["Code"] == "ValidationException"
    assert "pier:batching:other:MaxBatchSize" in bad.value.response["Error"]["Message"]
