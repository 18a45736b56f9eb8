"""Training jobs through boto3 and the SageMaker SDK's session, unchanged, against a real
`pier serve`: for every built-in, CreateTrainingJob over a local channel → boto3's
`training_job_completed_or_stopped` waiter → CreateModel from `S3ModelArtifacts` with the
SDK's ECR image URI → deploy → invoke, and the artifact equals `pier train`'s on the same data.
The job's log is read by the SDK's own `logs_for_job` through `AWS_ENDPOINT_URL_CLOUDWATCH_LOGS`.
"""

import pathlib
import subprocess

import boto3
import botocore.exceptions
import pytest
import sagemaker
from sagemaker import image_uris

from conftest import ROOT, pier_binary, start_pier, stop_pier

BUILTIN = ROOT / "fixtures" / "builtin"
REGION = "us-east-1"
ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"

# (SDK framework name, Pier runtime, train file, hyperparameters)
CASES = [
    ("linear-learner", "linear-learner", "breast_cancer_train.csv",
     {"predictor_type": "binary_classifier", "epochs": "3", "mini_batch_size": "20"}),
    ("kmeans", "kmeans", "wine_train.csv", {"k": "3", "feature_dim": "14"}),
    ("pca", "pca", "wine_train.csv", {"num_components": "2"}),
    ("factorization-machines", "factorization-machines", "breast_cancer_train.csv",
     {"predictor_type": "binary_classifier", "num_factors": "2", "epochs": "5"}),
    ("xgboost", "xgboost", "breast_cancer_train.csv",
     {"objective": "binary:logistic", "num_round": "10", "max_depth": "3"}),
]


def clients(addrs):
    common = dict(region_name=REGION, aws_access_key_id="any", aws_secret_access_key="any")
    sm = boto3.client("sagemaker", endpoint_url=f"http://{addrs['admin']}", **common)
    rt = boto3.client("sagemaker-runtime", endpoint_url=f"http://{addrs['http']}", **common)
    return sm, rt


def image(framework):
    version = "1.7-1" if framework == "xgboost" else None
    return image_uris.retrieve(framework, REGION, version=version)


def create_job(sm, name, framework, train, hp, out, **extra):
    sm.create_training_job(
        TrainingJobName=name,
        AlgorithmSpecification={"TrainingImage": image(framework), "TrainingInputMode": "File"},
        RoleArn=ROLE,
        HyperParameters=hp,
        InputDataConfig=[{
            "ChannelName": "train",
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"file://{train}",
                                            "S3DataDistributionType": "FullyReplicated"}},
            "ContentType": "text/csv",
        }],
        OutputDataConfig={"S3OutputPath": f"file://{out}"},
        ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 10},
        StoppingCondition={"MaxRuntimeInSeconds": 3600},
        **extra,
    )


def wait_job(sm, name):
    sm.get_waiter("training_job_completed_or_stopped").wait(
        TrainingJobName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 300})
    return sm.describe_training_job(TrainingJobName=name)


def test_every_builtin_trains_deploys_and_matches_pier_train(tmp_path):
    proc, addrs = start_pier(tmp_path / "data", "--grpc", "127.0.0.1:0")
    try:
        sm, rt = clients(addrs)
        out = tmp_path / "out"
        for framework, runtime, train_file, hp in CASES:
            job = f"job-{runtime}"
            create_job(sm, job, framework, BUILTIN / train_file, hp, out)
            d = wait_job(sm, job)
            assert d["TrainingJobStatus"] == "Completed", d.get("FailureReason")
            assert [t["Status"] for t in d["SecondaryStatusTransitions"]] == [
                "Starting", "Downloading", "Training", "Uploading", "Completed"]
            artifacts = d["ModelArtifacts"]["S3ModelArtifacts"]
            assert artifacts == f"file://{out}/{job}/output/model.tar.gz"
            assert pathlib.Path(artifacts[len("file://"):]).is_file()
            assert d["FinalMetricDataList"], d
            # (PierArtifact, pier://JOB/1, is not in botocore's model, so boto3 drops it.)

            # `pier train` on the same data, in another data folder: the same artifact bytes.
            ref = tmp_path / f"ref-{runtime}"
            cmd = [pier_binary(), "train", "--data-dir", str(ref), "--algorithm", runtime,
                   "--train", str(BUILTIN / train_file), "--model-name", "ref",
                   "--hyperparameters", *[f"{k}={v}" for k, v in hp.items()]]
            assert "pier://ref/1" in subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            (mine,) = [p for p in (tmp_path / "data" / "store" / job / "1").iterdir() if p.name != "manifest.json"]
            (theirs,) = [p for p in (ref / "store" / "ref" / "1").iterdir() if p.name != "manifest.json"]
            assert mine.read_bytes() == theirs.read_bytes(), runtime

            model = f"model-{runtime}"
            sm.create_model(ModelName=model, ExecutionRoleArn=ROLE,
                            PrimaryContainer={"Image": image(framework), "ModelDataUrl": artifacts})
            sm.create_endpoint_config(EndpointConfigName=model, ProductionVariants=[{
                "VariantName": "v", "ModelName": model, "InitialInstanceCount": 1,
                "InstanceType": "ml.m5.large", "InitialVariantWeight": 1}])
            sm.create_endpoint(EndpointName=model, EndpointConfigName=model)
            sm.get_waiter("endpoint_in_service").wait(EndpointName=model, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
            first = (BUILTIN / train_file.replace("_train", "_test")).read_text().splitlines()[0]
            row = first if runtime in ("kmeans", "pca") else first.split(",", 1)[1]
            r = rt.invoke_endpoint(EndpointName=model, ContentType="text/csv", Accept="application/json", Body=row)
            body = r["Body"].read()
            assert r["ResponseMetadata"]["HTTPStatusCode"] == 200, body

        listed = sm.list_training_jobs(StatusEquals="Completed", SortBy="Name", SortOrder="Ascending")
        assert [j["TrainingJobName"] for j in listed["TrainingJobSummaries"]] == sorted(
            f"job-{c[1]}" for c in CASES)
    finally:
        stop_pier(proc)


def test_errors_stop_and_the_sdk_reads_the_log(tmp_path, monkeypatch, capsys):
    proc, addrs = start_pier(tmp_path / "data", "--grpc", "127.0.0.1:0")
    try:
        sm, _ = clients(addrs)
        out = tmp_path / "out"
        train = BUILTIN / "breast_cancer_train.csv"
        hp = {"objective": "binary:logistic", "num_round": "5"}
        create_job(sm, "logged", "xgboost", train, hp, out)
        with pytest.raises(botocore.exceptions.ClientError) as e:
            create_job(sm, "logged", "xgboost", train, hp, out)
        assert e.value.response["Error"]["Code"] == "ResourceInUse"
        with pytest.raises(botocore.exceptions.ClientError) as e:
            sm.describe_training_job(TrainingJobName="missing")
        assert e.value.response["Error"]["Code"] == "ValidationException"
        assert e.value.response["Error"]["Message"] == "Requested resource not found."
        with pytest.raises(botocore.exceptions.ClientError) as e:
            create_job(sm, "bad-hp", "xgboost", train, {"num_round": "5", "eta": "fast"}, out)
        assert "eta" in e.value.response["Error"]["Message"]

        # The SDK's own log reader, pointed at Pier by AWS_ENDPOINT_URL_CLOUDWATCH_LOGS (botocore
        # names the variable by the service id "CloudWatch Logs"; AWS_ENDPOINT_URL_LOGS is not read).
        monkeypatch.setenv("AWS_ENDPOINT_URL_CLOUDWATCH_LOGS", f"http://{addrs['admin']}")
        boto_session = boto3.Session(region_name=REGION, aws_access_key_id="any", aws_secret_access_key="any")
        session = sagemaker.Session(boto_session=boto_session, sagemaker_client=sm, default_bucket="unused")
        session.logs_for_job("logged", wait=True, poll=1)
        printed = capsys.readouterr().out
        assert "#progress" in printed and "Training job completed" in printed, printed

        # A running job stops.
        long_hp = {"objective": "binary:logistic", "num_round": "1000000", "max_depth": "8"}
        create_job(sm, "long", "xgboost", train, long_hp, out)
        waiter_started = sm.describe_training_job(TrainingJobName="long")
        assert waiter_started["TrainingJobStatus"] == "InProgress"
        sm.stop_training_job(TrainingJobName="long")
        d = wait_job(sm, "long")
        assert d["TrainingJobStatus"] == "Stopped"
        assert not (tmp_path / "data" / "store" / "long").exists()
    finally:
        stop_pier(proc)
