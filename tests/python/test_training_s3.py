"""Training jobs over S3, with a real S3-compatible store (`s3s-fs`, started here on a free
loopback port with fixed keys) and `pier serve` pointed at it by the standard AWS variables:

- boto3 for every built-in: upload the CSV, CreateTrainingJob with the SDK's ECR image URI
  reading `s3://` and writing `s3://…/model.tar.gz`, the `training_job_completed_or_stopped`
  waiter, CreateModel from `S3ModelArtifacts`, deploy, invoke; the artifact equals
  `pier train`'s on the same data.
- The SageMaker Python SDK v2, unchanged: `Estimator(image_uri=…).fit({"train":
  TrainingInput(…, content_type="text/csv")})`, `LinearLearner.fit(record_set(X, y))` (the SDK
  uploads RecordIO-protobuf to the default bucket), `deploy()` and `predict()`, and
  `fit(logs=True)` reading the job's log through `AWS_ENDPOINT_URL_CLOUDWATCH_LOGS`.
"""

import io
import os
import pathlib
import shutil
import socket
import subprocess
import tarfile
import time

import boto3
import botocore.exceptions
import numpy as np
import pytest
import sagemaker
from sagemaker import image_uris
from sagemaker.deserializers import JSONDeserializer
from sagemaker.inputs import TrainingInput
from sagemaker.serializers import CSVSerializer

from conftest import ROOT, pier_binary, start_pier, stop_pier
from test_training_jobs import CASES, REGION, ROLE, clients, image, wait_job

BUILTIN = ROOT / "fixtures" / "builtin"
ACCESS_KEY = "pier-test-key"
SECRET_KEY = "pier-test-secret"
BUCKET = "pier-data"


def s3s_fs_binary():
    found = os.environ.get("S3S_FS") or shutil.which("s3s-fs")
    if found:
        return found
    home = pathlib.Path.home() / ".cargo" / "bin" / "s3s-fs"
    assert home.is_file(), (
        "s3s-fs is not installed: cargo install --locked s3s-fs --version 0.14.1 --features binary")
    return str(home)


@pytest.fixture
def s3_store(tmp_path):
    """A running s3s-fs over a temporary folder with the bucket BUCKET; yields its endpoint."""
    root = tmp_path / "s3"
    (root / BUCKET).mkdir(parents=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [s3s_fs_binary(), "--host", "127.0.0.1", "--port", str(port),
         "--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY, str(root)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        assert proc.poll() is None, "s3s-fs exited at start"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert time.monotonic() < deadline, "s3s-fs did not start within 10 s"
            time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    proc.kill()
    proc.wait()


def pier_env(endpoint):
    return {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_REGION": REGION}


def s3_client(endpoint):
    return boto3.client("s3", endpoint_url=endpoint, region_name=REGION,
                        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY)


def test_every_builtin_over_s3_deploys_and_matches_pier_train(tmp_path, s3_store):
    proc, addrs = start_pier(tmp_path / "data", env=pier_env(s3_store))
    try:
        sm, rt = clients(addrs)
        s3 = s3_client(s3_store)
        for framework, runtime, train_file, hp in CASES:
            job = f"s3-{runtime}"
            s3.upload_file(str(BUILTIN / train_file), BUCKET, f"{job}/train/{train_file}")
            sm.create_training_job(
                TrainingJobName=job,
                AlgorithmSpecification={"TrainingImage": image(framework), "TrainingInputMode": "File"},
                RoleArn=ROLE,
                HyperParameters=hp,
                InputDataConfig=[{
                    "ChannelName": "train",
                    "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix",
                                                    "S3Uri": f"s3://{BUCKET}/{job}/train/",
                                                    "S3DataDistributionType": "FullyReplicated"}},
                    "ContentType": "text/csv",
                }],
                OutputDataConfig={"S3OutputPath": f"s3://{BUCKET}/output"},
                ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 10},
                StoppingCondition={"MaxRuntimeInSeconds": 3600},
            )
            d = wait_job(sm, job)
            assert d["TrainingJobStatus"] == "Completed", d.get("FailureReason")
            artifacts = d["ModelArtifacts"]["S3ModelArtifacts"]
            assert artifacts == f"s3://{BUCKET}/output/{job}/output/model.tar.gz"
            tarball = s3.get_object(Bucket=BUCKET, Key=f"output/{job}/output/model.tar.gz")["Body"].read()
            with tarfile.open(fileobj=io.BytesIO(tarball)) as tar:
                (member,) = tar.getmembers()
                inside = tar.extractfile(member).read()
            assert member.name == ("xgboost-model" if runtime == "xgboost" else "model_algo-1")

            # `pier train` on the same local file: the same artifact bytes.
            ref = tmp_path / f"ref-{runtime}"
            cmd = [pier_binary(), "train", "--data-dir", str(ref), "--algorithm", runtime,
                   "--train", str(BUILTIN / train_file), "--model-name", "ref",
                   "--hyperparameters", *[f"{k}={v}" for k, v in hp.items()]]
            subprocess.run(cmd, check=True, capture_output=True)
            (theirs,) = [p for p in (ref / "store" / "ref" / "1").iterdir() if p.name != "manifest.json"]
            assert inside == theirs.read_bytes(), runtime

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
            assert r["ResponseMetadata"]["HTTPStatusCode"] == 200, r["Body"].read()

        # Bad S3 input fails the job naming the channel and the location.
        sm.create_training_job(
            TrainingJobName="no-objects",
            AlgorithmSpecification={"TrainingImage": image("xgboost"), "TrainingInputMode": "File"},
            RoleArn=ROLE, HyperParameters={"num_round": "2"},
            InputDataConfig=[{"ChannelName": "train", "ContentType": "text/csv", "DataSource": {
                "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{BUCKET}/nothing/"}}}],
            OutputDataConfig={"S3OutputPath": f"s3://{BUCKET}/output"},
            ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 10},
            StoppingCondition={"MaxRuntimeInSeconds": 60},
        )
        with pytest.raises(botocore.exceptions.WaiterError):
            wait_job(sm, "no-objects")
        d = sm.describe_training_job(TrainingJobName="no-objects")
        assert d["TrainingJobStatus"] == "Failed"
        assert d["FailureReason"].startswith(f"channel 'train': no objects under s3://{BUCKET}/nothing/"), d
    finally:
        stop_pier(proc)


def sdk_session(addrs, sm, rt):
    boto_session = boto3.Session(region_name=REGION, aws_access_key_id=ACCESS_KEY,
                                 aws_secret_access_key=SECRET_KEY)
    return sagemaker.Session(boto_session=boto_session, sagemaker_client=sm,
                             sagemaker_runtime_client=rt, default_bucket=BUCKET)


def test_the_sagemaker_sdk_fits_deploys_and_predicts_over_s3(tmp_path, s3_store, monkeypatch, capsys):
    proc, addrs = start_pier(tmp_path / "data", env=pier_env(s3_store))
    try:
        sm, rt = clients(addrs)
        # The SDK's own S3 calls (record_set's upload) reach the test store this way.
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_store)
        session = sdk_session(addrs, sm, rt)
        train = BUILTIN / "breast_cancer_train.csv"
        s3_client(s3_store).upload_file(str(train), BUCKET, "sdk/train/train.csv")
        test_rows = [line.split(",") for line in (BUILTIN / "breast_cancer_test.csv").read_text().splitlines()]
        X_test = np.array([[float(v) for v in r[1:]] for r in test_rows], dtype="float32")
        y_test = np.array([float(r[0]) for r in test_rows])

        est = sagemaker.estimator.Estimator(
            image_uri=image_uris.retrieve("linear-learner", REGION), role=ROLE,
            instance_count=1, instance_type="ml.m5.large",
            output_path=f"s3://{BUCKET}/sdk-output", sagemaker_session=session,
            hyperparameters={"predictor_type": "binary_classifier", "epochs": "5"})
        est.fit({"train": TrainingInput(f"s3://{BUCKET}/sdk/train/", content_type="text/csv")}, logs=False)
        job = est.latest_training_job.name
        assert est.model_data == f"s3://{BUCKET}/sdk-output/{job}/output/model.tar.gz"
        predictor = est.deploy(initial_instance_count=1, instance_type="ml.m5.large",
                               serializer=CSVSerializer(), deserializer=JSONDeserializer())
        answer = predictor.predict(X_test[:20])
        labels = [p["predicted_label"] for p in answer["predictions"]]
        assert len(labels) == 20
        assert sum(int(l == y) for l, y in zip(labels, y_test[:20])) >= 16, labels

        # record_set: the SDK writes RecordIO-protobuf to the default bucket; no ContentType.
        data = np.loadtxt(train, delimiter=",", dtype="float32")
        ll = sagemaker.LinearLearner(
            role=ROLE, instance_count=1, instance_type="ml.m5.large",
            predictor_type="binary_classifier", epochs=5, sagemaker_session=session,
            output_path=f"s3://{BUCKET}/sdk-output")
        records = ll.record_set(data[:, 1:], labels=data[:, 0])
        assert records.s3_data.startswith(f"s3://{BUCKET}/")
        # logs=True: the SDK streams the job's log from the admin port's CloudWatch Logs API.
        monkeypatch.setenv("AWS_ENDPOINT_URL_CLOUDWATCH_LOGS", f"http://{addrs['admin']}")
        ll.fit(records, logs=True)
        printed = capsys.readouterr().out
        assert "Read channel train" in printed and "Training job completed" in printed, printed
        rio_predictor = ll.deploy(initial_instance_count=1, instance_type="ml.m5.large",
                                  serializer=CSVSerializer(), deserializer=JSONDeserializer())
        rio_answer = rio_predictor.predict(X_test[:20])
        rio_labels = [p["predicted_label"] for p in rio_answer["predictions"]]
        assert sum(int(l == y) for l, y in zip(rio_labels, y_test[:20])) >= 16, rio_labels
    finally:
        stop_pier(proc)
