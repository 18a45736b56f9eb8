"""Multi-model endpoints with unchanged clients:

- boto3: CreateModel with `PrimaryContainer.Mode = "MultiModel"` over a local prefix of 40 tiny
  XGBoost `model.tar.gz` archives, `pier serve --multi-model-memory` holding 10 of them, and
  `invoke_endpoint(TargetModel=…)` for each: every model answers with its own prediction and
  the least recently used are evicted (Prometheus counters); a missing, escaping or
  misdirected TargetModel is a ValidationError naming it.
- The SageMaker Python SDK v2: `MultiDataModel` over an `s3://` prefix on s3s-fs —
  `add_model` uploads, `list_models` lists, `deploy()` creates the endpoint and
  `predictor.predict(…, target_model=…)` invokes.
"""

import io
import json
import tarfile

import boto3
import botocore.exceptions
import pytest
import sagemaker
from sagemaker.multidatamodel import MultiDataModel
from sagemaker.predictor import Predictor
from sagemaker.serializers import CSVSerializer

from conftest import start_pier, stop_pier
from test_training_s3 import BUCKET, pier_env, s3_client, s3_store  # noqa: F401 (fixture)

REGION = "us-east-1"
MODEL_BYTES = 1400


def stump(left, right):
    """A one-split XGBoost regression model (JSON): feature 0 below 0.5 gives `left`, else `right`;
    padded to MODEL_BYTES so every model has the same size."""
    tree = {
        "base_weights": [0.0, left, right], "categories": [], "categories_nodes": [],
        "categories_segments": [], "categories_sizes": [], "default_left": [1, 0, 0], "id": 0,
        "left_children": [1, -1, -1], "loss_changes": [1.0, 0.0, 0.0],
        "parents": [2147483647, 0, 0], "right_children": [2, -1, -1],
        "split_conditions": [0.5, left, right], "split_indices": [0, 0, 0],
        "split_type": [0, 0, 0], "sum_hessian": [2.0, 1.0, 1.0],
        "tree_param": {"num_deleted": "0", "num_feature": "2", "num_nodes": "3", "size_leaf_vector": "1"},
    }
    model = {
        "learner": {
            "attributes": {"pad": ""}, "feature_names": [], "feature_types": [],
            "gradient_booster": {"model": {
                "gbtree_model_param": {"num_parallel_tree": "1", "num_trees": "1"},
                "iteration_indptr": [0, 1], "tree_info": [0], "trees": [tree],
            }, "name": "gbtree"},
            "learner_model_param": {"base_score": "0E0", "boost_from_average": "1", "num_class": "0",
                                    "num_feature": "2", "num_target": "1"},
            "objective": {"name": "reg:squarederror", "reg_loss_param": {"scale_pos_weight": "1"}},
        },
        "version": [2, 1, 0],
    }
    size = len(json.dumps(model).encode())
    model["learner"]["attributes"]["pad"] = "x" * (MODEL_BYTES - size)
    data = json.dumps(model).encode()
    assert len(data) == MODEL_BYTES
    return data


def archive(model):
    """`model.tar.gz` holding `xgboost-model`, as SageMaker's XGBoost writes it."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        info = tarfile.TarInfo("xgboost-model")
        info.size = len(model)
        tar.addfile(info, io.BytesIO(model))
    return out.getvalue()


def clients(addrs):
    common = dict(region_name=REGION, aws_access_key_id="any", aws_secret_access_key="any")
    sm = boto3.client("sagemaker", endpoint_url=f"http://{addrs['admin']}", **common)
    rt = boto3.client("sagemaker-runtime", endpoint_url=f"http://{addrs['http']}", **common)
    return sm, rt


def metric(text, name, label):
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name) and label in line)


def test_boto3_invokes_forty_models_through_a_cache_of_ten(tmp_path):
    import urllib.request

    prefix = tmp_path / "models"
    prefix.mkdir()
    for i in range(40):
        (prefix / f"m{i}.tar.gz").write_bytes(archive(stump(i, -i)))
    (tmp_path / "outside.tar.gz").write_bytes(archive(stump(1, 1)))
    proc, addrs = start_pier(tmp_path / "data", "--multi-model-memory", str(10 * MODEL_BYTES))
    try:
        sm, rt = clients(addrs)
        with pytest.raises(botocore.exceptions.ClientError) as e:
            sm.create_model(ModelName="many", PrimaryContainer={
                "Image": "xgboost", "Mode": "MultiModel", "ModelDataUrl": f"file://{prefix}",
                "MultiModelConfig": {"ModelCacheSetting": "Disabled"}})
        assert "ModelCacheSetting Disabled" in e.value.response["Error"]["Message"]
        sm.create_model(ModelName="many", PrimaryContainer={
            "Image": "xgboost", "Mode": "MultiModel", "ModelDataUrl": f"file://{prefix}",
            "MultiModelConfig": {"ModelCacheSetting": "Enabled"}})
        container = sm.describe_model(ModelName="many")["PrimaryContainer"]
        assert container["Mode"] == "MultiModel"
        assert container["MultiModelConfig"] == {"ModelCacheSetting": "Enabled"}
        sm.create_endpoint_config(EndpointConfigName="many", ProductionVariants=[
            {"VariantName": "all", "ModelName": "many", "InitialInstanceCount": 1,
             "InstanceType": "ml.m5.large"}])
        sm.create_endpoint(EndpointName="many", EndpointConfigName="many")
        sm.get_waiter("endpoint_in_service").wait(EndpointName="many",
                                                   WaiterConfig={"Delay": 1, "MaxAttempts": 60})
        variant = sm.describe_endpoint(EndpointName="many")["ProductionVariants"][0]
        assert variant["DeployedImages"][0]["ResolvedImage"] == f"xgboost@file://{prefix}", variant
        for round_ in range(2):
            for i in range(40):
                r = rt.invoke_endpoint(EndpointName="many", TargetModel=f"m{i}.tar.gz",
                                       ContentType="text/csv", Body=b"0.9,0\n")
                assert float(r["Body"].read()) == -i, (round_, i)
                assert r["InvokedProductionVariant"] == "all"
        text = urllib.request.urlopen(f"http://{addrs['http']}/metrics").read().decode()
        # 40 models through a cache of 10, in order twice: every request loads, 70 evict.
        assert metric(text, "pier_multi_model_loads_total", 'model="many"') == 80
        assert metric(text, "pier_multi_model_evictions_total", 'model="many"') == 70
        assert metric(text, "pier_multi_model_loaded_models ", "") == 10
        # The last one is a hit.
        rt.invoke_endpoint(EndpointName="many", TargetModel="m39.tar.gz", ContentType="text/csv",
                           Body=b"0.1,0\n")
        text = urllib.request.urlopen(f"http://{addrs['http']}/metrics").read().decode()
        assert metric(text, "pier_multi_model_cache_hits_total", 'model="many"') == 1

        def refused(needle, **kwargs):
            with pytest.raises(botocore.exceptions.ClientError) as e:
                rt.invoke_endpoint(ContentType="text/csv", Body=b"0.1,0\n", **kwargs)
            error = e.value.response["Error"]
            assert error["Code"] == "ValidationError", error
            assert needle in error["Message"], error
        refused("TargetModel", EndpointName="many")
        refused("is not valid", EndpointName="many", TargetModel="../outside.tar.gz")
        refused("is not valid", EndpointName="many", TargetModel="%2e%2e/outside.tar.gz")
        refused("Failed to download model data", EndpointName="many", TargetModel="nope.tar.gz")
    finally:
        stop_pier(proc)


def test_sagemaker_sdk_multi_data_model_over_s3(tmp_path, s3_store, monkeypatch):  # noqa: F811
    proc, addrs = start_pier(tmp_path / "data", env=pier_env(s3_store))
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_store)
        sm, rt = clients(addrs)
        boto_session = boto3.Session(region_name=REGION, aws_access_key_id="pier-test-key",
                                     aws_secret_access_key="pier-test-secret")
        session = sagemaker.Session(boto_session=boto_session, sagemaker_client=sm,
                                    sagemaker_runtime_client=rt, default_bucket=BUCKET)
        for i in range(3):
            path = tmp_path / f"m{i}.tar.gz"
            path.write_bytes(archive(stump(10 + i, -10 - i)))
        mdm = MultiDataModel(name="sdk-mme", model_data_prefix=f"s3://{BUCKET}/mme/",
                             image_uri="xgboost", sagemaker_session=session,
                             role="arn:aws:iam::123456789012:role/SageMakerRole")
        for i in range(3):
            mdm.add_model(str(tmp_path / f"m{i}.tar.gz"), f"m{i}.tar.gz")
        assert sorted(mdm.list_models()) == ["m0.tar.gz", "m1.tar.gz", "m2.tar.gz"]
        # wait=False: the SDK's own wait polls every 30 s; boto3's waiter polls every second.
        mdm.deploy(initial_instance_count=1, instance_type="ml.m5.large", endpoint_name="sdk-mme",
                   wait=False)
        sm.get_waiter("endpoint_in_service").wait(EndpointName="sdk-mme",
                                                   WaiterConfig={"Delay": 1, "MaxAttempts": 60})
        predictor = Predictor("sdk-mme", sagemaker_session=session, serializer=CSVSerializer())
        for i in range(3):
            got = predictor.predict([0.1, 0.0], target_model=f"m{i}.tar.gz")
            assert float(got) == 10 + i
        # A model added after deploy is served too (loaded on its first request).
        (tmp_path / "late.tar.gz").write_bytes(archive(stump(99, 0)))
        mdm.add_model(str(tmp_path / "late.tar.gz"), "late.tar.gz")
        assert float(predictor.predict([0.1, 0.0], target_model="late.tar.gz")) == 99
    finally:
        stop_pier(proc)
