"""Data capture and shadow variants with unchanged clients:

- The SageMaker Python SDK v2's `Model.deploy(data_capture_config=DataCaptureConfig(...))`
  against Pier, capturing to a real S3-compatible store (s3s-fs); `predictor.predict` answers,
  and the captured objects are SageMaker's JSON Lines under
  `<prefix>/<endpoint>/<variant>/yyyy/mm/dd/hh/`, holding exactly what was sent and answered.
- boto3's `create_endpoint_config(ShadowProductionVariants=...)` (botocore checks the shape),
  `describe_endpoint` showing the shadow, `invoke_endpoint(InferenceId=...)` answered by the
  production variant only, and `pier endpoints compare` reporting the shadow's agreement.
"""

import json
import os
import subprocess
import time

import boto3

os.environ.setdefault("SAGEMAKER_SUPPRESS_V2_WARNING", "1")
from sagemaker.deserializers import JSONDeserializer  # noqa: E402
from sagemaker.model import Model  # noqa: E402
from sagemaker.model_monitor import DataCaptureConfig  # noqa: E402
from sagemaker.predictor import Predictor  # noqa: E402
from sagemaker.serializers import CSVSerializer  # noqa: E402
from sagemaker.session import Session  # noqa: E402

from conftest import FIXTURES, pier_binary, start_pier, stop_pier
from test_training_s3 import BUCKET, pier_env, s3_client, s3_store  # noqa: F401 (fixture)

REGION = "us-east-1"
ROLE = "arn:aws:iam::000000000000:role/unused"
MODEL = FIXTURES / "iris-logreg" / "model.onnx"


def sdk_session(addrs):
    boto = boto3.Session(aws_access_key_id="any", aws_secret_access_key="any", region_name=REGION)
    sm = boto.client("sagemaker", endpoint_url=f"http://{addrs['admin']}")
    rt = boto.client("sagemaker-runtime", endpoint_url=f"http://{addrs['http']}")
    return Session(boto_session=boto, sagemaker_client=sm, sagemaker_runtime_client=rt,
                   default_bucket=BUCKET), sm, rt


def captured(s3, prefix, n, within=20.0):
    """The parsed lines under `prefix`, once there are at least `n`, with their keys."""
    deadline = time.monotonic() + within
    while True:
        keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
                for o in page.get("Contents", [])]
        lines = []
        for key in keys:
            body = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read().decode()
            assert body.endswith("\n"), key
            lines += [(key, json.loads(line)) for line in body.splitlines()]
        if len(lines) >= n or time.monotonic() > deadline:
            return lines
        time.sleep(0.2)


def test_sdk_data_capture_to_s3_and_boto3_shadow_variants(tmp_path, s3_store):  # noqa: F811
    proc, addrs = start_pier(tmp_path / "data", "--capture-flush", "0.2", env=pier_env(s3_store))
    try:
        sess, sm, rt = sdk_session(addrs)
        s3 = s3_client(s3_store)

        # The SDK's deploy with its DataCaptureConfig (REQUEST/RESPONSE mapped to Input/Output).
        model = Model(image_uri="onnx", model_data=f"file://{MODEL}", role=ROLE, sagemaker_session=sess,
                      name="captured-model")
        capture = DataCaptureConfig(enable_capture=True, sampling_percentage=100,
                                    destination_s3_uri=f"s3://{BUCKET}/capture", sagemaker_session=sess)
        # wait=False and botocore's waiter: the SDK's own wait polls every 30 s.
        model.deploy(initial_instance_count=1, instance_type="ml.m5.large", endpoint_name="captured",
                     data_capture_config=capture, wait=False)
        sm.get_waiter("endpoint_in_service").wait(EndpointName="captured",
                                                  WaiterConfig={"Delay": 1, "MaxAttempts": 60})
        predictor = Predictor("captured", sagemaker_session=sess, serializer=CSVSerializer(),
                              deserializer=JSONDeserializer())
        d = sm.describe_endpoint(EndpointName="captured")
        assert d["DataCaptureConfig"]["CaptureStatus"] == "Started"
        assert d["DataCaptureConfig"]["CurrentSamplingPercentage"] == 100
        rows = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]
        answers = [predictor.predict(row) for row in rows]
        assert all(answers)
        lines = captured(s3, "capture/captured/", len(rows))
        assert len(lines) == len(rows), lines
        sent = sorted(",".join(str(x) for x in row) for row in rows)
        got = sorted(line["captureData"]["endpointInput"]["data"] for _, line in lines)
        assert got == sent
        for key, line in lines:
            parts = key.split("/")
            variant = sm.describe_endpoint(EndpointName="captured")["ProductionVariants"][0]["VariantName"]
            assert parts[:3] == ["capture", "captured", variant] and len(parts) == 8, key
            assert line["captureData"]["endpointInput"]["encoding"] == "CSV"
            out = line["captureData"]["endpointOutput"]
            assert out["encoding"] == "JSON" and json.loads(out["data"]) in answers, line
            assert line["eventVersion"] == "0"

        # Shadow variants through boto3 (botocore validates the request shape).
        sm.create_endpoint_config(
            EndpointConfigName="shadowed",
            ProductionVariants=[{"VariantName": "live", "ModelName": "captured-model",
                                 "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}],
            ShadowProductionVariants=[{"VariantName": "shadow", "ModelName": "captured-model",
                                       "InitialInstanceCount": 1, "InstanceType": "ml.m5.large",
                                       "InitialVariantWeight": 1.0}])
        sm.create_endpoint(EndpointName="shadowed", EndpointConfigName="shadowed")
        sm.get_waiter("endpoint_in_service").wait(EndpointName="shadowed",
                                                  WaiterConfig={"Delay": 1, "MaxAttempts": 60})
        d = sm.describe_endpoint(EndpointName="shadowed")
        assert [v["VariantName"] for v in d["ShadowProductionVariants"]] == ["shadow"]
        for i in range(20):
            r = rt.invoke_endpoint(EndpointName="shadowed", ContentType="text/csv", Body="5.1,3.5,1.4,0.2",
                                   InferenceId=f"id-{i}")
            assert r["InvokedProductionVariant"] == "live"
        deadline = time.monotonic() + 20
        while True:
            out = subprocess.run([pier_binary(), "endpoints", "compare", "shadowed",
                                  "--metrics-url", f"http://{addrs['http']}/metrics"],
                                 capture_output=True, text=True, check=True).stdout
            rows = {line.split()[0]: line.split() for line in out.splitlines()[1:] if line.strip()}
            if "shadow" in rows and float(rows["shadow"][2]) >= 20:
                break
            assert time.monotonic() < deadline, out
            time.sleep(0.2)
        assert rows["live"][1] == "live" and float(rows["live"][2]) == 20, out
        assert rows["shadow"][1] == "shadow" and rows["shadow"][6] == "100.0%", out
    finally:
        stop_pier(proc)


def test_sdk_pipeline_model_answers_as_its_containers_chained(pier_server):
    """`PipelineModel(models=[...]).deploy()` creates a Containers model; its answer is the
    second container's answer to the first one's CSV answer."""
    from sagemaker.pipeline import PipelineModel

    sess, sm, rt = sdk_session(pier_server)
    first = Model(image_uri="onnx", model_data=f"file://{MODEL}", role=ROLE, sagemaker_session=sess,
                  env={"SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT": "text/csv"})
    second = Model(image_uri="onnx", model_data=f"file://{FIXTURES / 'iris-mlp' / 'model.onnx'}",
                   role=ROLE, sagemaker_session=sess)
    pipeline = PipelineModel(models=[first, second], role=ROLE, sagemaker_session=sess, name="sdk-pipeline")
    pipeline.deploy(initial_instance_count=1, instance_type="ml.m5.large", endpoint_name="sdk-pipeline",
                    wait=False)
    sm.get_waiter("endpoint_in_service").wait(EndpointName="sdk-pipeline",
                                              WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    d = sm.describe_model(ModelName="sdk-pipeline")
    assert len(d["Containers"]) == 2 and "PrimaryContainer" not in d, d
    row = "5.9,3.0,4.2,1.5"
    piped = rt.invoke_endpoint(EndpointName="sdk-pipeline", ContentType="text/csv", Accept="text/csv",
                               Body=row)["Body"].read()
    for name, model in (("step-1", MODEL), ("step-2", FIXTURES / "iris-mlp" / "model.onnx")):
        sm.create_model(ModelName=name, PrimaryContainer={"Image": "onnx", "ModelDataUrl": f"file://{model}"})
        sm.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[
            {"VariantName": "v", "ModelName": name, "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}])
        sm.create_endpoint(EndpointName=name, EndpointConfigName=name)
        sm.get_waiter("endpoint_in_service").wait(EndpointName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    middle = rt.invoke_endpoint(EndpointName="step-1", ContentType="text/csv", Accept="text/csv",
                                Body=row)["Body"].read()
    by_hand = rt.invoke_endpoint(EndpointName="step-2", ContentType="text/csv", Accept="text/csv",
                                 Body=middle)["Body"].read()
    assert piped == by_hand, (piped, by_hand)
