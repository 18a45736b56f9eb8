"""Batch transform with unchanged clients, over a real S3-compatible store (`s3s-fs`):

- boto3: CreateTransformJob reading `s3://` CSV (a labelled file, the label dropped by
  `InputFilter`, the output joined to the input and filtered), the
  `transform_job_completed_or_stopped` waiter, DescribeTransformJob's fields and progress,
  ListTransformJobs; the `.out` objects equal what `invoke_endpoint` answers for the same rows.
- The SageMaker Python SDK v2: `Transformer(...).transform(..., split_type="Line",
  input_filter=..., join_source="Input", output_filter=...)` then `wait()`, and the job's log
  through `logs_for_transform_job` (the CloudWatch Logs subset on the admin port); and
  `estimator.transformer(...)` after a training job.
- A job that fails names the object and line, and the waiter reports it.
- `pier transform --shard I/N` with no server, and `pier jobs list | wait` on transform jobs.
"""

import json
import os
import subprocess
import urllib.request

import boto3
import botocore.exceptions
import pytest
import sagemaker
from sagemaker import image_uris
from sagemaker.inputs import TrainingInput
from sagemaker.transformer import Transformer

from conftest import FIXTURES, pier_binary, start_pier, stop_pier
from test_training_jobs import REGION, ROLE, clients
from test_training_s3 import ACCESS_KEY, BUCKET, BUILTIN, SECRET_KEY, pier_env, s3_client, s3_store  # noqa: F401


def rows():
    full = (BUILTIN / "breast_cancer_test.csv").read_text().splitlines()
    return full, [line.split(",", 1)[1] for line in full]


def deploy_gbc(sm):
    sm.create_model(ModelName="gbc", ExecutionRoleArn=ROLE, PrimaryContainer={
        "Image": "onnx", "ModelDataUrl": f"file://{FIXTURES / 'cancer-gbc100' / 'model.onnx'}"})
    sm.create_endpoint_config(EndpointConfigName="gbc-config", ProductionVariants=[{
        "VariantName": "v", "ModelName": "gbc", "InitialInstanceCount": 1,
        "InstanceType": "ml.m5.large", "InitialVariantWeight": 1.0}])
    sm.create_endpoint(EndpointName="gbc-ep", EndpointConfigName="gbc-config")
    sm.get_waiter("endpoint_in_service").wait(EndpointName="gbc-ep",
                                              WaiterConfig={"Delay": 1, "MaxAttempts": 60})


def invoke(rt, lines, accept="text/csv"):
    r = rt.invoke_endpoint(EndpointName="gbc-ep", ContentType="text/csv", Accept=accept,
                           Body="\n".join(lines) + "\n")
    return r["Body"].read().decode()


def wait(sm, name):
    sm.get_waiter("transform_job_completed_or_stopped").wait(
        TransformJobName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 120})
    return sm.describe_transform_job(TransformJobName=name)


def raw_describe(addrs, name):
    """DescribeTransformJob's JSON as sent (boto3 drops Pier's PierProgress extension field)."""
    req = urllib.request.Request(
        f"http://{addrs['admin']}/", data=json.dumps({"TransformJobName": name}).encode(),
        headers={"X-Amz-Target": "SageMaker.DescribeTransformJob",
                 "Content-Type": "application/x-amz-json-1.1"})
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read())


def read(s3, key):
    return s3.get_object(Bucket=BUCKET, Key=key)["Body"].read().decode()


def test_boto3_transform_jobs_match_invocations(tmp_path, s3_store):
    proc, addrs = start_pier(tmp_path / "data", env=pier_env(s3_store))
    try:
        sm, rt = clients(addrs)
        s3 = s3_client(s3_store)
        deploy_gbc(sm)
        full, features = rows()
        s3.put_object(Bucket=BUCKET, Key="batch/in/a.csv", Body="\n".join(full[:60]) + "\n")
        s3.put_object(Bucket=BUCKET, Key="batch/in/b.csv", Body="\n".join(full[60:]) + "\n")
        base = dict(
            ModelName="gbc", BatchStrategy="MultiRecord", MaxPayloadInMB=6,
            TransformInput={"DataSource": {"S3DataSource": {
                "S3DataType": "S3Prefix", "S3Uri": f"s3://{BUCKET}/batch/in/"}},
                "ContentType": "text/csv", "SplitType": "Line"},
            TransformResources={"InstanceType": "ml.m5.large", "InstanceCount": 1})
        sm.create_transform_job(
            TransformJobName="plain", **{**base, "DataProcessing": {"InputFilter": "$[1:]"}},
            TransformOutput={"S3OutputPath": f"s3://{BUCKET}/batch/plain", "Accept": "application/json",
                             "AssembleWith": "Line"})
        sm.create_transform_job(
            TransformJobName="joined", **base,
            DataProcessing={"InputFilter": "$[1:]", "JoinSource": "Input", "OutputFilter": "$[0,-1]"},
            TransformOutput={"S3OutputPath": f"s3://{BUCKET}/batch/joined", "Accept": "text/csv",
                             "AssembleWith": "Line"})
        d = wait(sm, "plain")
        assert d["TransformJobStatus"] == "Completed", d
        assert d["TransformJobArn"].endswith(":transform-job/plain")
        assert d["TransformOutput"]["Accept"] == "application/json"
        progress = raw_describe(addrs, "plain")["PierProgress"]
        assert progress["RecordsDone"] == len(full) and progress["ObjectsDone"] == 2, progress
        assert d["TransformEndTime"] >= d["TransformStartTime"]
        # One request per object (it fits MaxPayloadInMB): the endpoint's JSON answer, a line.
        assert read(s3, "batch/plain/a.csv.out") == invoke(rt, features[:60], "application/json") + "\n"
        assert read(s3, "batch/plain/b.csv.out") == invoke(rt, features[60:], "application/json") + "\n"
        d = wait(sm, "joined")
        assert d["TransformJobStatus"] == "Completed", d
        # Label (first input column) and the last output column (probability of class 1).
        want = [f"{row.split(',')[0]},{out.split(',')[-1]}"
                for row, out in zip(full[:60], invoke(rt, features[:60]).splitlines())]
        assert read(s3, "batch/joined/a.csv.out").splitlines() == want

        listed = sm.list_transform_jobs(StatusEquals="Completed", SortBy="Name", SortOrder="Ascending")
        assert [j["TransformJobName"] for j in listed["TransformJobSummaries"]] == ["joined", "plain"]

        # A record the model cannot take: Failed, naming the object and the line; no .out.
        s3.put_object(Bucket=BUCKET, Key="batch/bad/x.csv", Body=features[0] + "\n1,2\n")
        sm.create_transform_job(
            TransformJobName="bad", **{**base, "TransformInput": {**base["TransformInput"], "DataSource": {
                "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{BUCKET}/batch/bad/"}}}},
            TransformOutput={"S3OutputPath": f"s3://{BUCKET}/batch/bad-out"})
        with pytest.raises(botocore.exceptions.WaiterError):
            wait(sm, "bad")
        d = sm.describe_transform_job(TransformJobName="bad")
        assert d["TransformJobStatus"] == "Failed"
        assert d["FailureReason"].startswith(f"s3://{BUCKET}/batch/bad/x.csv: line 2:"), d["FailureReason"]
        assert "KeyCount" in s3.list_objects_v2(Bucket=BUCKET, Prefix="batch/bad-out/")
        assert s3.list_objects_v2(Bucket=BUCKET, Prefix="batch/bad-out/")["KeyCount"] == 0

        with pytest.raises(botocore.exceptions.ClientError) as e:
            sm.describe_transform_job(TransformJobName="nope")
        assert e.value.response["Error"]["Message"] == "Requested resource not found."
        with pytest.raises(botocore.exceptions.ClientError) as e:
            sm.create_transform_job(TransformJobName="plain", **base,
                                    TransformOutput={"S3OutputPath": f"s3://{BUCKET}/x"})
        assert e.value.response["Error"]["Code"] == "ResourceInUse"
    finally:
        stop_pier(proc)


def test_sagemaker_sdk_transformer(tmp_path, s3_store, monkeypatch, capsys):
    proc, addrs = start_pier(tmp_path / "data", env=pier_env(s3_store))
    try:
        sm, rt = clients(addrs)
        s3 = s3_client(s3_store)
        deploy_gbc(sm)
        full, features = rows()
        s3.put_object(Bucket=BUCKET, Key="sdk/in/test.csv", Body="\n".join(full) + "\n")
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_store)
        monkeypatch.setenv("AWS_ENDPOINT_URL_CLOUDWATCH_LOGS", f"http://{addrs['admin']}")
        boto_session = boto3.Session(region_name=REGION, aws_access_key_id=ACCESS_KEY,
                                     aws_secret_access_key=SECRET_KEY)
        session = sagemaker.Session(boto_session=boto_session, sagemaker_client=sm,
                                    sagemaker_runtime_client=rt, default_bucket=BUCKET)
        transformer = Transformer(
            "gbc", instance_count=1, instance_type="ml.m5.large", strategy="MultiRecord",
            assemble_with="Line", output_path=f"s3://{BUCKET}/sdk/out", accept="text/csv",
            sagemaker_session=session)
        transformer.transform(f"s3://{BUCKET}/sdk/in/", content_type="text/csv", split_type="Line",
                              input_filter="$[1:]", join_source="Input", output_filter="$[0,-1]",
                              wait=False, logs=False)
        transformer.wait(logs=False)
        job = transformer.latest_transform_job.name
        d = sm.describe_transform_job(TransformJobName=job)
        assert d["TransformJobStatus"] == "Completed", d
        want = [f"{row.split(',')[0]},{out.split(',')[-1]}"
                for row, out in zip(full, invoke(rt, features).splitlines())]
        assert read(s3, "sdk/out/test.csv.out").splitlines() == want
        # The SDK's log reader on the finished job prints its log.
        session.logs_for_transform_job(job, wait=False)
        printed = capsys.readouterr().out
        assert "Transform job completed" in printed, printed

        # estimator.transformer() after a training job: the SDK creates the Model from the
        # job's model.tar.gz, then transforms with it; rows as the deployed endpoint answers.
        s3.upload_file(str(BUILTIN / "breast_cancer_train.csv"), BUCKET, "sdk/train/train.csv")
        s3.put_object(Bucket=BUCKET, Key="sdk/features/test.csv", Body="\n".join(features) + "\n")
        est = sagemaker.estimator.Estimator(
            image_uri=image_uris.retrieve("linear-learner", REGION), role=ROLE, instance_count=1,
            instance_type="ml.m5.large", output_path=f"s3://{BUCKET}/sdk/model",
            sagemaker_session=session, hyperparameters={"predictor_type": "binary_classifier", "epochs": "3"})
        est.fit({"train": TrainingInput(f"s3://{BUCKET}/sdk/train/", content_type="text/csv")}, logs=False)
        est_transformer = est.transformer(instance_count=1, instance_type="ml.m5.large",
                                          strategy="MultiRecord", assemble_with="Line",
                                          output_path=f"s3://{BUCKET}/sdk/ll-out", accept="text/csv")
        est_transformer.transform(f"s3://{BUCKET}/sdk/features/", content_type="text/csv",
                                  split_type="Line", wait=False, logs=False)
        est_transformer.wait(logs=False)
        sm.create_endpoint_config(EndpointConfigName="ll-config", ProductionVariants=[{
            "VariantName": "v", "ModelName": est_transformer.model_name, "InitialInstanceCount": 1,
            "InstanceType": "ml.m5.large", "InitialVariantWeight": 1.0}])
        sm.create_endpoint(EndpointName="ll-ep", EndpointConfigName="ll-config")
        sm.get_waiter("endpoint_in_service").wait(EndpointName="ll-ep", WaiterConfig={"Delay": 1})
        answer = rt.invoke_endpoint(EndpointName="ll-ep", ContentType="text/csv", Accept="text/csv",
                                    Body="\n".join(features) + "\n")["Body"].read().decode()
        assert read(s3, "sdk/ll-out/test.csv.out") == answer
    finally:
        stop_pier(proc)


def test_pier_transform_cli_shards_and_pier_jobs(tmp_path):
    """`pier transform --shard I/N` (and JOB_COMPLETION_INDEX / NUM_SHARDS) splits the objects
    k mod N with no server; together the shards write what the server's job writes. `pier jobs
    list` and `pier jobs wait` cover transform jobs."""
    full, features = rows()
    inp = tmp_path / "in"
    (inp / "sub").mkdir(parents=True)
    names = ["a.csv", "b.csv", "c.csv", "sub/d.csv"]
    for k, name in enumerate(names):
        (inp / name).write_text("\n".join(features[k * 20:(k + 1) * 20]) + "\n")
    data = tmp_path / "data"
    proc, addrs = start_pier(data)
    try:
        sm, _ = clients(addrs)
        sm.create_model(ModelName="gbc", ExecutionRoleArn=ROLE, PrimaryContainer={
            "Image": "onnx", "ModelDataUrl": f"file://{FIXTURES / 'cancer-gbc100' / 'model.onnx'}"})
        sm.create_transform_job(
            TransformJobName="served", ModelName="gbc",
            TransformInput={"DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": str(inp)}},
                            "ContentType": "text/csv", "SplitType": "Line"},
            TransformOutput={"S3OutputPath": str(tmp_path / "served"), "AssembleWith": "Line"},
            TransformResources={"InstanceType": "ml.m5.large", "InstanceCount": 2})
        admin = ["--admin-url", f"http://{addrs['admin']}"]
        waited = subprocess.run([pier_binary(), "jobs", "wait", "served", *admin],
                                capture_output=True, text=True, timeout=60)
        assert waited.returncode == 0 and "served: Completed" in waited.stdout, waited
        listed = subprocess.run([pier_binary(), "jobs", "list", *admin], capture_output=True,
                                text=True, timeout=60)
        assert any(l.split()[:3] == ["served", "transform", "Completed"] for l in listed.stdout.splitlines()), listed.stdout
    finally:
        stop_pier(proc)
    env = {k: v for k, v in os.environ.items() if k not in ("JOB_COMPLETION_INDEX", "NUM_SHARDS")}
    base = [pier_binary(), "transform", "--data-dir", str(data), "--model", "gbc",
            "--input", f"file://{inp}", "--output", str(tmp_path / "sharded")]
    first = subprocess.run([*base, "--shard", "0/2"], capture_output=True, text=True, env=env, timeout=60)
    assert first.returncode == 0, first.stderr
    assert "Completed: 2 objects, 40 records" in first.stdout, first.stdout
    done = sorted(str(p.relative_to(tmp_path / "sharded")) for p in (tmp_path / "sharded").rglob("*.out"))
    assert done == ["a.csv.out", "c.csv.out"], done
    second = subprocess.run(base, capture_output=True, text=True, timeout=60,
                            env={**env, "JOB_COMPLETION_INDEX": "1", "NUM_SHARDS": "2"})
    assert second.returncode == 0, second.stderr
    for name in names:
        assert (tmp_path / "sharded" / f"{name}.out").read_bytes() == \
            (tmp_path / "served" / f"{name}.out").read_bytes(), name
    bad = subprocess.run([*base, "--shard", "2/2"], capture_output=True, text=True, env=env, timeout=60)
    assert bad.returncode != 0 and "index must be below the count" in bad.stderr, bad.stderr


def test_recordio_protobuf_split_by_recordio_matches_invocations(tmp_path):
    """The SDK's recordio-protobuf (`write_numpy_to_dense_tensor`, what `record_set()` uploads)
    in SplitType RecordIO: the `.out` equals the endpoint's CSV answer for the same rows; a
    frame cut short fails the job naming the object and the record."""
    import io

    import numpy as np
    from sagemaker.amazon.common import write_numpy_to_dense_tensor

    proc, addrs = start_pier(tmp_path / "data")
    try:
        sm, rt = clients(addrs)
        deploy_gbc(sm)
        _, features = rows()
        x = np.array([[float(v) for v in line.split(",")] for line in features], dtype=np.float32)
        buf = io.BytesIO()
        write_numpy_to_dense_tensor(buf, x, np.zeros(len(x), dtype=np.float32))
        (tmp_path / "in").mkdir()
        (tmp_path / "in" / "rows.pbr").write_bytes(buf.getvalue())
        (tmp_path / "bad").mkdir()
        (tmp_path / "bad" / "cut.pbr").write_bytes(buf.getvalue()[:-7])
        base = dict(
            ModelName="gbc", BatchStrategy="MultiRecord", MaxPayloadInMB=1,
            TransformResources={"InstanceType": "ml.m5.large", "InstanceCount": 1})
        source = lambda d: {"DataSource": {"S3DataSource": {
            "S3DataType": "S3Prefix", "S3Uri": f"file://{tmp_path / d}"}},
            "ContentType": "application/x-recordio-protobuf", "SplitType": "RecordIO"}
        sm.create_transform_job(
            TransformJobName="rio", **base, TransformInput=source("in"),
            TransformOutput={"S3OutputPath": f"file://{tmp_path / 'out'}", "Accept": "text/csv",
                             "AssembleWith": "Line"})
        d = wait(sm, "rio")
        assert d["TransformJobStatus"] == "Completed", d
        assert d["TransformInput"]["SplitType"] == "RecordIO"
        got = (tmp_path / "out" / "rows.pbr.out").read_text()
        want = invoke(rt, [",".join(f"{v:.9g}" for v in r) for r in x])
        assert got.splitlines() == want.splitlines()
        assert len(got.splitlines()) == len(x)

        sm.create_transform_job(
            TransformJobName="rio-bad", **base, TransformInput=source("bad"),
            TransformOutput={"S3OutputPath": f"file://{tmp_path / 'bad-out'}", "Accept": "text/csv"})
        with pytest.raises(botocore.exceptions.WaiterError):
            wait(sm, "rio-bad")
        d = sm.describe_transform_job(TransformJobName="rio-bad")
        assert d["TransformJobStatus"] == "Failed"
        assert f"cut.pbr: record {len(x)}: the input ends inside" in d["FailureReason"], d["FailureReason"]
        assert not (tmp_path / "bad-out" / "cut.pbr.out").exists()

        with pytest.raises(botocore.exceptions.ClientError) as e:
            sm.create_transform_job(
                TransformJobName="rio-line", **base,
                TransformInput={**source("in"), "SplitType": "Line"},
                TransformOutput={"S3OutputPath": f"file://{tmp_path / 'x'}"})
        assert "split by RecordIO, not Line" in e.value.response["Error"]["Message"]
    finally:
        stop_pier(proc)
