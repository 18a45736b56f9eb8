"""boto3's application-autoscaling client, unchanged, against Pier's admin port: register a
variant's DesiredInstanceCount, a target-tracking policy on
SageMakerVariantInvocationsPerInstance, load that scales it out, idle that scales it back in
after the cooldown, activities, deregister. Every answer is checked against botocore's
service model (required members present, no member the model does not know)."""

import json
import threading
import time

import boto3
import pytest

from conftest import FIXTURES, start_pier, stop_pier

CSV = b"5.1,3.5,1.4,0.2\n6.7,3.0,5.2,2.3\n"
RESOURCE = "endpoint/ep/variant/a"
DIMENSION = "sagemaker:variant:DesiredInstanceCount"


def check_shape(shape, value, path):
    """`value` (raw JSON) fits botocore's `shape`."""
    kind = shape.type_name
    if kind == "structure":
        assert isinstance(value, dict), path
        for name in shape.required_members:
            assert name in value, f"{path}: {name} is required"
        for name, member in value.items():
            assert name in shape.members, f"{path}: {name} is not in the service model"
            check_shape(shape.members[name], member, f"{path}.{name}")
    elif kind == "list":
        assert isinstance(value, list), path
        for i, item in enumerate(value):
            check_shape(shape.member, item, f"{path}[{i}]")
    elif kind == "string":
        assert isinstance(value, str), path
        if shape.enum:
            assert value in shape.enum, f"{path}: {value} not in {shape.enum}"
    elif kind == "integer":
        assert isinstance(value, int), path
    elif kind in ("double", "timestamp"):
        assert isinstance(value, (int, float)), path
    elif kind == "boolean":
        assert isinstance(value, bool), path


@pytest.fixture
def pier(tmp_path):
    proc, addrs = start_pier(tmp_path / "data", "--autoscaling-interval", "0.25", "--max-instances", "8",
                             "--compute-threads", "2")
    yield addrs
    stop_pier(proc)


def clients(addrs):
    common = dict(region_name="us-east-1", aws_access_key_id="any", aws_secret_access_key="any")
    sm = boto3.client("sagemaker", endpoint_url=f"http://{addrs['admin']}", **common)
    aas = boto3.client("application-autoscaling", endpoint_url=f"http://{addrs['admin']}", **common)
    checked = []

    def validate(http_response, model, **_):
        if http_response.status_code == 200:
            check_shape(model.output_shape, json.loads(http_response.content or b"{}"), model.name)
            checked.append(model.name)

    aas.meta.events.register("after-call.application-autoscaling", validate)
    return sm, aas, common, checked


def counts(sm):
    v = sm.describe_endpoint(EndpointName="ep")["ProductionVariants"][0]
    return v["CurrentInstanceCount"], v["DesiredInstanceCount"]


def wait_for(sm, want, within):
    deadline = time.monotonic() + within
    while counts(sm) != (want, want):
        assert time.monotonic() < deadline, f"count never reached {want}: {counts(sm)}"
        time.sleep(0.1)


def test_autoscaling_with_boto3(pier):
    sm, aas, common, checked = clients(pier)
    sm.create_model(ModelName="iris", PrimaryContainer={
        "Image": "onnx", "ModelDataUrl": f"file://{FIXTURES / 'iris-logreg' / 'model.onnx'}"})
    sm.create_endpoint_config(EndpointConfigName="c", ProductionVariants=[
        {"VariantName": "a", "ModelName": "iris", "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}])
    sm.create_endpoint(EndpointName="ep", EndpointConfigName="c")
    sm.get_waiter("endpoint_in_service").wait(EndpointName="ep", WaiterConfig={"Delay": 1, "MaxAttempts": 60})

    # A policy before its target: ObjectNotFoundException, as AWS answers.
    tt = {"TargetValue": 120.0, "ScaleOutCooldown": 1, "ScaleInCooldown": 2,
          "PredefinedMetricSpecification": {"PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"}}
    with pytest.raises(aas.exceptions.ObjectNotFoundException):
        aas.put_scaling_policy(PolicyName="tt", ServiceNamespace="sagemaker", ResourceId=RESOURCE,
                               ScalableDimension=DIMENSION, PolicyType="TargetTrackingScaling",
                               TargetTrackingScalingPolicyConfiguration=tt)
    with pytest.raises(aas.exceptions.ValidationException):
        aas.register_scalable_target(ServiceNamespace="sagemaker", ResourceId=RESOURCE,
                                     ScalableDimension=DIMENSION, MinCapacity=3, MaxCapacity=2)
    with pytest.raises(aas.exceptions.LimitExceededException):
        aas.register_scalable_target(ServiceNamespace="sagemaker", ResourceId=RESOURCE,
                                     ScalableDimension=DIMENSION, MinCapacity=1, MaxCapacity=9)

    arn = aas.register_scalable_target(ServiceNamespace="sagemaker", ResourceId=RESOURCE,
                                       ScalableDimension=DIMENSION, MinCapacity=1, MaxCapacity=4)["ScalableTargetARN"]
    targets = aas.describe_scalable_targets(ServiceNamespace="sagemaker", ResourceIds=[RESOURCE])["ScalableTargets"]
    assert [(t["ResourceId"], t["MinCapacity"], t["MaxCapacity"], t["ScalableTargetARN"]) for t in targets] == [
        (RESOURCE, 1, 4, arn)]
    policy = aas.put_scaling_policy(PolicyName="tt", ServiceNamespace="sagemaker", ResourceId=RESOURCE,
                                    ScalableDimension=DIMENSION, PolicyType="TargetTrackingScaling",
                                    TargetTrackingScalingPolicyConfiguration=tt)
    assert policy["PolicyARN"].endswith("policyName/tt") and len(policy["Alarms"]) == 2
    # The same metric as a customized CloudWatch metric is accepted too (a second policy).
    aas.put_scaling_policy(
        PolicyName="custom", ServiceNamespace="sagemaker", ResourceId=RESOURCE,
        ScalableDimension=DIMENSION, PolicyType="TargetTrackingScaling",
        TargetTrackingScalingPolicyConfiguration={
            "TargetValue": 120.0, "ScaleOutCooldown": 1, "ScaleInCooldown": 2,
            "CustomizedMetricSpecification": {
                "MetricName": "InvocationsPerInstance", "Namespace": "AWS/SageMaker", "Statistic": "Sum",
                "Dimensions": [{"Name": "EndpointName", "Value": "ep"}, {"Name": "VariantName", "Value": "a"}]}})
    policies = aas.describe_scaling_policies(ServiceNamespace="sagemaker", ResourceId=RESOURCE)["ScalingPolicies"]
    assert sorted(p["PolicyName"] for p in policies) == ["custom", "tt"]

    # Load: eight busy clients ask for far more than 120 invocations a minute per instance.
    stop, failures, done = threading.Event(), [], [0]

    def client():
        rt = boto3.client("sagemaker-runtime", endpoint_url=f"http://{pier['http']}", **common)
        while not stop.is_set():
            try:
                rt.invoke_endpoint(EndpointName="ep", ContentType="text/csv", Body=CSV)
                done[0] += 1
            except Exception as e:  # noqa: BLE001 - every failure is reported
                failures.append(repr(e))

    threads = [threading.Thread(target=client) for _ in range(8)]
    for t in threads:
        t.start()
    try:
        wait_for(sm, 4, 30)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert failures == [], failures[:3]
    assert done[0] > 0
    idle = time.monotonic()
    wait_for(sm, 1, 30)
    assert time.monotonic() - idle >= 1.0, "scale-in did not wait for the cooldown"

    activities = aas.describe_scaling_activities(ServiceNamespace="sagemaker", ResourceId=RESOURCE)["ScalingActivities"]
    assert len(activities) >= 2
    assert {a["StatusCode"] for a in activities} == {"Successful"}
    assert activities[0]["Description"] == "Setting desired instance count to 1."
    assert any("Setting desired instance count to 4." == a["Description"] for a in activities)
    page = aas.describe_scaling_activities(ServiceNamespace="sagemaker", MaxResults=1)
    assert len(page["ScalingActivities"]) == 1 and "NextToken" in page

    aas.delete_scaling_policy(PolicyName="custom", ServiceNamespace="sagemaker", ResourceId=RESOURCE,
                              ScalableDimension=DIMENSION)
    aas.deregister_scalable_target(ServiceNamespace="sagemaker", ResourceId=RESOURCE, ScalableDimension=DIMENSION)
    with pytest.raises(aas.exceptions.ObjectNotFoundException):
        aas.deregister_scalable_target(ServiceNamespace="sagemaker", ResourceId=RESOURCE, ScalableDimension=DIMENSION)
    assert aas.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"] == []
    assert aas.describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"] == []
    assert {"RegisterScalableTarget", "DescribeScalableTargets", "PutScalingPolicy", "DescribeScalingPolicies",
            "DescribeScalingActivities", "DeregisterScalableTarget"} <= set(checked)
