"""SageMaker's answers to the letter, checked with the clients that match on them.

boto3's `endpoint_in_service` / `endpoint_deleted` waiters, `aws sagemaker wait
endpoint-deleted`, the SageMaker SDK's `_deployment_entity_exists` / `Session.create_model`
logic, list filters, tags, refused fields; and every control-plane answer (errors aside) is
validated against botocore's service model: required members, types, enums, patterns and
lengths, with Pier's own `Pier*` members allowed.
"""

import json
import os
import re
import subprocess
import sys
import time

import boto3
import botocore.config
import botocore.exceptions
import botocore.session
import pytest

from conftest import FIXTURES

CSV = b"5.1,3.5,1.4,0.2\n"
ROLE = "arn:aws:iam::000000000000:role/unused"
SERVICE = botocore.session.get_session().get_service_model("sagemaker")

# The operations Pier implements on the control plane; each must be validated at least once.
IMPLEMENTED = {
    "CreateModel", "DescribeModel", "ListModels", "DeleteModel",
    "CreateEndpointConfig", "DescribeEndpointConfig", "ListEndpointConfigs", "DeleteEndpointConfig",
    "CreateEndpoint", "DescribeEndpoint", "ListEndpoints", "UpdateEndpoint",
    "UpdateEndpointWeightsAndCapacities", "DeleteEndpoint",
    "AddTags", "ListTags", "DeleteTags",
}


# Pier's documented extensions to a modelled member's value: ModelDataUrl is described back as
# given, and Pier takes its own store references and local files there besides https/s3 URLs.
EXTENSIONS = {"ModelDataUrl": re.compile(r"(pier|file)://.+|/.+")}


class ShapeChecker:
    """Validates raw JSON answers against the operation's output shape."""

    def __init__(self):
        self.validated = set()
        self.problems = []

    def after_call(self, http_response, model, **_):
        if http_response.status_code != 200:
            return
        body = json.loads(http_response.content or b"{}")
        before = len(self.problems)
        self.check(model.output_shape, body, model.name)
        if len(self.problems) == before:
            self.validated.add(model.name)

    def check(self, shape, value, path):
        if shape is None:
            return
        t = shape.type_name
        problem = lambda why: self.problems.append(f"{path}: {why} (got {value!r:.200})")
        if t == "structure":
            if not isinstance(value, dict):
                return problem("not an object")
            for name in shape.required_members:
                if name not in value:
                    problem(f"required member {name} missing")
            for name, member in value.items():
                if name in shape.members:
                    self.check(shape.members[name], member, f"{path}.{name}")
                elif not name.startswith("Pier"):
                    problem(f"member {name} is not in the service model")
        elif t == "list":
            if not isinstance(value, list):
                return problem("not a list")
            self.lengths(shape, len(value), problem)
            for i, item in enumerate(value):
                self.check(shape.member, item, f"{path}[{i}]")
        elif t == "map":
            if not isinstance(value, dict):
                return problem("not a map")
            for k, v in value.items():
                self.check(shape.key, k, f"{path}<key>")
                self.check(shape.value, v, f"{path}[{k}]")
        elif t == "string":
            if not isinstance(value, str):
                return problem("not a string")
            if shape.enum and value not in shape.enum:
                problem(f"not in enum {shape.enum}")
            self.lengths(shape, len(value), problem)
            pattern = shape.metadata.get("pattern")
            if pattern:
                try:
                    regex = re.compile(pattern)
                except re.error:
                    regex = None  # Java-only syntax (\p{...}); the other checks still apply
                member = path.rsplit(".", 1)[-1]
                extension = EXTENSIONS.get(member)
                if extension and extension.fullmatch(value):
                    regex = None
                if regex and not regex.fullmatch(value) and not regex.match(value):
                    problem(f"does not match {pattern}")
        elif t in ("integer", "long"):
            if not isinstance(value, int) or isinstance(value, bool):
                return problem("not an integer")
            self.range(shape, value, problem)
        elif t in ("float", "double"):
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                return problem("not a number")
            self.range(shape, value, problem)
        elif t == "boolean":
            if not isinstance(value, bool):
                problem("not a boolean")
        elif t == "timestamp":
            if not isinstance(value, (int, float, str)) or isinstance(value, bool):
                problem("not a timestamp")

    @staticmethod
    def lengths(shape, n, problem):
        lo, hi = shape.metadata.get("min"), shape.metadata.get("max")
        if lo is not None and n < lo:
            problem(f"shorter than {lo}")
        if hi is not None and n > hi:
            problem(f"longer than {hi}")

    @staticmethod
    def range(shape, v, problem):
        lo, hi = shape.metadata.get("min"), shape.metadata.get("max")
        if lo is not None and v < lo:
            problem(f"below {lo}")
        if hi is not None and v > hi:
            problem(f"above {hi}")


@pytest.fixture(scope="module")
def checker():
    return ShapeChecker()


@pytest.fixture
def sm(pier_server, checker):
    client = boto3.client(
        "sagemaker", endpoint_url=f"http://{pier_server['admin']}", region_name="us-east-1",
        aws_access_key_id="any", aws_secret_access_key="any",
    )
    client.meta.events.register("after-call.sagemaker", checker.after_call)
    return client


def model_url(fixture="iris-logreg"):
    return f"file://{FIXTURES / fixture / 'model.onnx'}"


def create_model(sm, name, **extra):
    return sm.create_model(ModelName=name, PrimaryContainer={"Image": "onnx", "ModelDataUrl": model_url()},
                           ExecutionRoleArn=ROLE, **extra)


def create_config(sm, name, model, **extra):
    variant = {"VariantName": "main", "ModelName": model, "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}
    return sm.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[variant], **extra)


def in_service(sm, name):
    sm.get_waiter("endpoint_in_service").wait(EndpointName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60})


def error(call, **kwargs):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        call(**kwargs)
    return e.value.response


def deployment_entity_exists(describe_fn):
    """The SageMaker Python SDK's `sagemaker.session._deployment_entity_exists`, verbatim logic."""
    try:
        describe_fn()
        return True
    except botocore.exceptions.ClientError as ce:
        error_code = ce.response["Error"]["Code"]
        if not (error_code == "ValidationException" and "Could not find" in ce.response["Error"]["Message"]):
            raise ce
        return False


def test_waiters_and_aws_cli_after_delete(sm, pier_server):
    create_model(sm, "m")
    create_config(sm, "c", "m")
    sm.create_endpoint(EndpointName="e", EndpointConfigName="c")
    in_service(sm, "e")
    d = sm.describe_endpoint(EndpointName="e")
    v = d["ProductionVariants"][0]
    assert v["DeployedImages"][0]["SpecifiedImage"] == "onnx"
    assert v["DeployedImages"][0]["ResolvedImage"] == "onnx@pier:m/1"
    assert v["VariantStatus"] == []
    assert d["ResponseMetadata"]["RequestId"]

    sm.delete_endpoint(EndpointName="e")
    sm.get_waiter("endpoint_deleted").wait(EndpointName="e", WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    assert not deployment_entity_exists(lambda: sm.describe_endpoint(EndpointName="e"))
    assert deployment_entity_exists(lambda: sm.describe_endpoint_config(EndpointConfigName="c"))
    assert deployment_entity_exists(lambda: sm.describe_model(ModelName="m"))

    env = dict(os.environ, AWS_ACCESS_KEY_ID="any", AWS_SECRET_ACCESS_KEY="any", AWS_DEFAULT_REGION="us-east-1")
    for name in ["e", "never-existed"]:
        done = subprocess.run(
            [sys.executable, "-m", "awscli", "sagemaker", "wait", "endpoint-deleted", "--endpoint-name", name,
             "--endpoint-url", f"http://{pier_server['admin']}"],
            env=env, capture_output=True, text=True, timeout=120,
        )
        assert done.returncode == 0, done.stderr


def test_not_found_and_duplicates_in_sagemaker_words(sm):
    r = error(sm.describe_endpoint, EndpointName="ghost")
    assert r["Error"] == {"Code": "ValidationException", "Message": 'Could not find endpoint "ghost".'}
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 400 and r["ResponseMetadata"]["RequestId"]
    r = error(sm.describe_model, ModelName="ghost")
    assert r["Error"]["Code"] == "ValidationException"
    assert r["Error"]["Message"].startswith('Could not find model "arn:aws:sagemaker:')
    for call, kw in [
        (sm.describe_endpoint_config, {"EndpointConfigName": "ghost"}),
        (sm.delete_endpoint_config, {"EndpointConfigName": "ghost"}),
        (sm.delete_model, {"ModelName": "ghost"}),
        (sm.delete_endpoint, {"EndpointName": "ghost"}),
        (sm.update_endpoint, {"EndpointName": "ghost", "EndpointConfigName": "ghost"}),
        (sm.update_endpoint_weights_and_capacities,
         {"EndpointName": "ghost", "DesiredWeightsAndCapacities": [{"VariantName": "a", "DesiredWeight": 1.0}]}),
    ]:
        r = error(call, **kw)
        assert r["Error"]["Code"] == "ValidationException", r
        assert "Could not find" in r["Error"]["Message"], r

    # The SDK's Session.create_model reuses a model on exactly this answer.
    arn = create_model(sm, "dup")["ModelArn"]
    r = error(create_model, sm=sm, name="dup")
    assert r["Error"] == {"Code": "ValidationException", "Message": f'Cannot create already existing model "{arn}".'}
    assert "Cannot create already existing model" in r["Error"]["Message"]
    arn = create_config(sm, "dup", "dup")["EndpointConfigArn"]
    r = error(create_config, sm=sm, name="dup", model="dup")
    assert r["Error"]["Message"] == f'Cannot create already existing endpoint configuration "{arn}".'
    arn = sm.create_endpoint(EndpointName="dup", EndpointConfigName="dup")["EndpointArn"]
    r = error(sm.create_endpoint, EndpointName="dup", EndpointConfigName="dup")
    assert r["Error"]["Message"] == f'Cannot create already existing endpoint "{arn}".'
    in_service(sm, "dup")
    sm.delete_endpoint(EndpointName="dup")


def test_list_filters_work_or_are_refused(sm):
    create_model(sm, "first")
    time.sleep(0.05)
    middle = time.time()
    time.sleep(0.05)
    create_model(sm, "second")
    names = lambda r: [m["ModelName"] for m in r["Models"]]
    assert names(sm.list_models(CreationTimeAfter=middle)) == ["second"]
    assert names(sm.list_models(CreationTimeBefore=middle)) == ["first"]
    assert names(sm.list_models(SortBy="Name", SortOrder="Ascending")) == ["first", "second"]
    assert names(sm.list_models(NameContains="SEC")) == ["second"]
    page = sm.list_models(MaxResults=1, SortBy="Name", SortOrder="Ascending")
    assert names(page) == ["first"] and page["NextToken"] not in ("1", "2")
    assert names(sm.list_models(MaxResults=1, SortBy="Name", SortOrder="Ascending", NextToken=page["NextToken"])) == ["second"]
    forged = page["NextToken"][:-2] + ("00" if page["NextToken"][-2:] != "00" else "01")
    assert error(sm.list_models, NextToken=forged)["Error"]["Code"] == "ValidationException"
    assert error(sm.list_models, SortBy="Status")["Error"]["Code"] == "ValidationException"
    assert [c["EndpointConfigName"] for c in sm.list_endpoint_configs(CreationTimeAfter=time.time() + 60)["EndpointConfigs"]] == []

    create_config(sm, "good", "first")
    sm.create_endpoint(EndpointName="up", EndpointConfigName="good")
    in_service(sm, "up")
    eps = lambda r: [e["EndpointName"] for e in r["Endpoints"]]
    assert eps(sm.list_endpoints(StatusEquals="InService")) == ["up"]
    assert eps(sm.list_endpoints(StatusEquals="Failed")) == []
    assert eps(sm.list_endpoints(SortBy="Status", LastModifiedTimeAfter=middle)) == ["up"]
    assert eps(sm.list_endpoints(LastModifiedTimeBefore=middle)) == []
    r = error(sm.list_endpoints, StatusEquals="Running")
    assert r["Error"]["Code"] == "ValidationException" and "statusEquals" in r["Error"]["Message"]
    sm.delete_endpoint(EndpointName="up")


def test_nothing_accepted_is_dropped(sm):
    create_model(sm, "kept", EnableNetworkIsolation=True)
    d = sm.describe_model(ModelName="kept")
    assert d["EnableNetworkIsolation"] is True and d["ExecutionRoleArn"] == ROLE
    sm.create_endpoint_config(EndpointConfigName="kept", ProductionVariants=[
        {"VariantName": "main", "ModelName": "kept", "InitialInstanceCount": 2, "InstanceType": "ml.m5.large"}])
    v = sm.describe_endpoint_config(EndpointConfigName="kept")["ProductionVariants"][0]
    assert (v["InitialVariantWeight"], v["InitialInstanceCount"], v["InstanceType"]) == (1.0, 2, "ml.m5.large")

    refused = [
        (sm.create_endpoint_config, dict(EndpointConfigName="x", ProductionVariants=[{"VariantName": "v", "ModelName": "kept", "InitialInstanceCount": 1}],
                                         DataCaptureConfig={"InitialSamplingPercentage": 50, "DestinationS3Uri": "s3://bucket/p",
                                                            "KmsKeyId": "alias/k",
                                                            "CaptureOptions": [{"CaptureMode": "Input"}]}), "KmsKeyId"),
        (sm.create_endpoint_config, dict(EndpointConfigName="x", ProductionVariants=[{"VariantName": "v", "ModelName": "kept",
                                         "ServerlessConfig": {"MemorySizeInMB": 1024, "MaxConcurrency": 1}}]), "ServerlessConfig"),
        (sm.create_endpoint_config, dict(EndpointConfigName="x", ProductionVariants=[{"VariantName": "v", "ModelName": "kept", "InitialInstanceCount": 1}],
                                         AsyncInferenceConfig={"OutputConfig": {"S3OutputPath": "s3://b/o"}}), "AsyncInferenceConfig"),
        (sm.create_endpoint_config, dict(EndpointConfigName="x", ProductionVariants=[{"VariantName": "v", "ModelName": "kept", "InitialInstanceCount": 1}],
                                         ShadowProductionVariants=[{"VariantName": "v", "ModelName": "kept", "InitialInstanceCount": 1}]), "used twice"),
        (sm.create_model, dict(ModelName="x", Containers=[{"Image": "onnx", "ModelDataUrl": model_url()}],
                               InferenceExecutionConfig={"Mode": "Direct"}), "Direct"),
        # A multi-model Model's ModelDataUrl is a prefix (a folder), never one model file.
        (sm.create_model, dict(ModelName="x", PrimaryContainer={"Image": "onnx", "ModelDataUrl": model_url(), "Mode": "MultiModel"}), "is not a folder"),
    ]
    # Range checks from the service model hold on the server too (boto3 checks them first).
    unchecked = boto3.client("sagemaker", endpoint_url=sm.meta.endpoint_url, region_name="us-east-1",
                             aws_access_key_id="any", aws_secret_access_key="any",
                             config=botocore.config.Config(parameter_validation=False))
    refused += [
        (unchecked.create_endpoint_config, dict(EndpointConfigName="x", ProductionVariants=[
            {"VariantName": "v", "ModelName": "kept", "InitialInstanceCount": 0}]), "InitialInstanceCount"),
        (unchecked.create_model, dict(ModelName="-x", PrimaryContainer={"Image": "onnx", "ModelDataUrl": model_url()}), "-x"),
        (unchecked.list_models, dict(MaxResults=101), "MaxResults"),
    ]
    for call, kwargs, field in refused:
        r = error(call, **kwargs)
        assert r["Error"]["Code"] == "ValidationException", r
        assert field in r["Error"]["Message"], (field, r["Error"])
    assert deployment_entity_exists(lambda: sm.describe_model(ModelName="x")) is False

    # RetainAllVariantProperties keeps the weights and counts of variants with the same name.
    sm.create_endpoint(EndpointName="kept", EndpointConfigName="kept")
    in_service(sm, "kept")
    sm.update_endpoint_weights_and_capacities(EndpointName="kept", DesiredWeightsAndCapacities=[
        {"VariantName": "main", "DesiredWeight": 5.0, "DesiredInstanceCount": 3}])
    create_config(sm, "kept-2", "kept")
    sm.update_endpoint(EndpointName="kept", EndpointConfigName="kept-2", RetainAllVariantProperties=True,
                       ExcludeRetainedVariantProperties=[{"VariantPropertyType": "DesiredInstanceCount"}])
    in_service(sm, "kept")
    v = sm.describe_endpoint(EndpointName="kept")["ProductionVariants"][0]
    assert (v["CurrentWeight"], v["DesiredInstanceCount"]) == (5.0, 1)
    sm.update_endpoint(EndpointName="kept", EndpointConfigName="kept")
    in_service(sm, "kept")
    v = sm.describe_endpoint(EndpointName="kept")["ProductionVariants"][0]
    assert (v["CurrentWeight"], v["DesiredInstanceCount"]) == (1.0, 2)

    # Deleting what a live endpoint uses is allowed, as in SageMaker.
    sm.delete_endpoint_config(EndpointConfigName="kept")
    sm.delete_model(ModelName="kept")
    assert sm.describe_endpoint(EndpointName="kept")["EndpointStatus"] == "InService"
    sm.delete_endpoint(EndpointName="kept")
    sm.get_waiter("endpoint_deleted").wait(EndpointName="kept", WaiterConfig={"Delay": 1, "MaxAttempts": 30})


def test_tags_for_every_resource(sm):
    model_arn = create_model(sm, "tagged", Tags=[{"Key": "team", "Value": "ml"}])["ModelArn"]
    config_arn = create_config(sm, "tagged", "tagged", Tags=[{"Key": "stage", "Value": "dev"}])["EndpointConfigArn"]
    endpoint_arn = sm.create_endpoint(EndpointName="tagged", EndpointConfigName="tagged",
                                      Tags=[{"Key": "owner", "Value": "a@b.c"}])["EndpointArn"]
    assert sm.list_tags(ResourceArn=model_arn)["Tags"] == [{"Key": "team", "Value": "ml"}]
    assert sm.list_tags(ResourceArn=config_arn)["Tags"] == [{"Key": "stage", "Value": "dev"}]
    sm.add_tags(ResourceArn=endpoint_arn, Tags=[{"Key": "owner", "Value": "x"}, {"Key": "cost", "Value": "7"}])
    assert sm.list_tags(ResourceArn=endpoint_arn)["Tags"] == [{"Key": "owner", "Value": "x"}, {"Key": "cost", "Value": "7"}]
    sm.delete_tags(ResourceArn=endpoint_arn, TagKeys=["owner"])
    assert sm.list_tags(ResourceArn=endpoint_arn)["Tags"] == [{"Key": "cost", "Value": "7"}]
    assert error(sm.add_tags, ResourceArn=model_arn, Tags=[{"Key": "aws:x", "Value": "y"}])["Error"]["Code"] == "ValidationException"
    sm.delete_model(ModelName="tagged")
    r = error(sm.list_tags, ResourceArn=model_arn)
    assert r["Error"]["Code"] == "ValidationException" and "Could not find" in r["Error"]["Message"]
    in_service(sm, "tagged")
    sm.delete_endpoint(EndpointName="tagged")


def test_every_answer_matches_the_service_model(checker):
    """Runs last in this module: every implemented operation answered, and validated."""
    assert checker.problems == [], "\n".join(checker.problems)
    missing = IMPLEMENTED - checker.validated
    assert not missing, f"operations never exercised or never valid: {sorted(missing)}"
