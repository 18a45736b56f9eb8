"""The SageMaker Python SDK (v2) session code, unchanged, against Pier's control plane.

`Session.create_model` reuses a model on SageMaker's "Cannot create already existing model"
answer, and `_deployment_entity_exists` (behind `endpoint_from_production_variants` and the
SDK's deploy paths) tells "absent" from a failure by SageMaker's "Could not find" answer.
"""

import logging
import os

import boto3
import pytest

from conftest import FIXTURES

os.environ.setdefault("SAGEMAKER_SUPPRESS_V2_WARNING", "1")
import sagemaker  # noqa: E402  (in tests/python/requirements.txt: a missing SDK fails, never skips)
from sagemaker.session import Session, _deployment_entity_exists, production_variant  # noqa: E402

ROLE = "arn:aws:iam::000000000000:role/unused"


def session(addrs):
    boto = boto3.Session(aws_access_key_id="any", aws_secret_access_key="any", region_name="us-east-1")
    sm = boto.client("sagemaker", endpoint_url=f"http://{addrs['admin']}")
    rt = boto.client("sagemaker-runtime", endpoint_url=f"http://{addrs['http']}")
    return Session(boto_session=boto, sagemaker_client=sm, sagemaker_runtime_client=rt), sm


def test_session_create_model_reuses_and_entity_exists(pier_server, caplog):
    sess, sm = session(pier_server)
    container = {"Image": "onnx", "ModelDataUrl": f"file://{FIXTURES / 'iris-logreg' / 'model.onnx'}"}
    assert sess.create_model("sdk-model", ROLE, container) == "sdk-model"
    with caplog.at_level(logging.WARNING):
        assert sess.create_model("sdk-model", ROLE, container) == "sdk-model"
    assert "Using already existing model: sdk-model" in caplog.text
    assert _deployment_entity_exists(lambda: sm.describe_model(ModelName="sdk-model"))
    assert not _deployment_entity_exists(lambda: sm.describe_model(ModelName="absent"))
    assert not _deployment_entity_exists(lambda: sm.describe_endpoint_config(EndpointConfigName="absent"))

    # The SDK's own variant shape (AllTraffic, weight 1, instance count and type) is accepted
    # as sent and described back.
    variant = production_variant("sdk-model", "ml.m5.large", initial_instance_count=1)
    assert sess.endpoint_from_production_variants("sdk-endpoint", [variant], wait=False) == "sdk-endpoint"
    sess.wait_for_endpoint("sdk-endpoint", poll=1)
    described = sm.describe_endpoint_config(EndpointConfigName="sdk-endpoint")["ProductionVariants"][0]
    assert {k: described[k] for k in variant} == variant
    assert _deployment_entity_exists(lambda: sm.describe_endpoint(EndpointName="sdk-endpoint"))

    sess.delete_endpoint("sdk-endpoint")
    sm.get_waiter("endpoint_deleted").wait(EndpointName="sdk-endpoint", WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    assert not _deployment_entity_exists(lambda: sm.describe_endpoint(EndpointName="sdk-endpoint"))
    sess.delete_endpoint_config("sdk-endpoint")
    sess.delete_model("sdk-model")
    assert not _deployment_entity_exists(lambda: sm.describe_model(ModelName="sdk-model"))
