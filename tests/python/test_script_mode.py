"""Script mode with the SageMaker Python SDK v2, unchanged: `SKLearn(entry_point="train.py",
source_dir=…, framework_version="1.2-1", hyperparameters=…, metric_definitions=[…])
.fit({"train": "s3://…"})` against `pier serve` and an S3-compatible store (s3s-fs). The SDK
uploads the source folder as sourcedir.tar.gz; Pier runs train.py (scikit-learn, exported to
ONNX with skl2onnx) under the sagemaker-training toolkit's contract with this venv's Python;
the job's log streams through the SDK's log reader; MetricDefinitions give
FinalMetricDataList; `deploy()` and `predict()` serve the ONNX model the script wrote. The
same with `sagemaker.xgboost.XGBoost(entry_point=…)` (the booster the script saved, served
natively, equal to xgboost's own predictions), and a kill -9'd server's orphaned script.
"""

import json
import time
import sys
import textwrap

import numpy as np
from sagemaker.deserializers import JSONDeserializer
from sagemaker.serializers import CSVSerializer
from sagemaker.sklearn.estimator import SKLearn

from conftest import start_pier, stop_pier
from test_training_jobs import ROLE, clients
from test_training_s3 import BUCKET, BUILTIN, pier_env, s3_client, s3_store, sdk_session  # noqa: F401

TRAIN_PY = textwrap.dedent('''
    import argparse, glob, os
    import numpy as np
    from sklearn.ensemble import RandomForestClassifier
    from skl2onnx import to_onnx

    p = argparse.ArgumentParser()
    p.add_argument("--n_estimators", type=int)
    p.add_argument("--max_depth", type=int)
    p.add_argument("--model-dir", default=os.environ["SM_MODEL_DIR"])
    p.add_argument("--train", default=os.environ["SM_CHANNEL_TRAIN"])
    a = p.parse_args()
    files = sorted(glob.glob(os.path.join(a.train, "*.csv")))
    data = np.vstack([np.loadtxt(f, delimiter=",", dtype="float32", ndmin=2) for f in files])
    X, y = data[:, 1:], data[:, 0].astype("int64")
    model = RandomForestClassifier(n_estimators=a.n_estimators, max_depth=a.max_depth,
                                   random_state=0).fit(X, y)
    for k in range(1, a.n_estimators + 1):
        proba = np.mean([t.predict_proba(X) for t in model.estimators_[:k]], axis=0)
        print(f"trees={k} train_accuracy={np.mean(proba.argmax(1) == y):.4f}")
    onx = to_onnx(model, X[:1], options={id(model): {"zipmap": False}})
    with open(os.path.join(a.model_dir, "model.onnx"), "wb") as f:
        f.write(onx.SerializeToString())
    print("exported model.onnx")
''')


def test_sklearn_estimator_fits_a_script_and_deploys_its_onnx_model(tmp_path, s3_store, monkeypatch, capsys):
    proc, addrs = start_pier(tmp_path / "data", "--python", sys.executable, env=pier_env(s3_store))
    try:
        sm, rt = clients(addrs)
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_store)
        monkeypatch.setenv("AWS_ENDPOINT_URL_CLOUDWATCH_LOGS", f"http://{addrs['admin']}")
        session = sdk_session(addrs, sm, rt)
        s3_client(s3_store).upload_file(str(BUILTIN / "breast_cancer_train.csv"), BUCKET,
                                        "script/train/train.csv")
        source = tmp_path / "source"
        source.mkdir()
        (source / "train.py").write_text(TRAIN_PY)

        est = SKLearn(
            entry_point="train.py", source_dir=str(source), framework_version="1.2-1",
            py_version="py3", role=ROLE, instance_count=1, instance_type="ml.m5.large",
            sagemaker_session=session, output_path=f"s3://{BUCKET}/script-output",
            hyperparameters={"n_estimators": 8, "max_depth": 3},
            metric_definitions=[{"Name": "train:accuracy", "Regex": "train_accuracy=([0-9.]+)"}])
        # fit(wait=False) and the SDK's own log reader with a 1 s poll (fit's waits poll every
        # 5-10 s, which only makes the test slow).
        est.fit({"train": f"s3://{BUCKET}/script/train/"}, wait=False)
        session.logs_for_job(est.latest_training_job.name, wait=True, poll=1)
        printed = capsys.readouterr().out
        assert "trees=8 train_accuracy=" in printed and "exported model.onnx" in printed, printed

        job = est.latest_training_job.name
        d = sm.describe_training_job(TrainingJobName=job)
        assert d["TrainingJobStatus"] == "Completed", d.get("FailureReason")
        assert d["AlgorithmSpecification"]["TrainingImage"].endswith("/sagemaker-scikit-learn:1.2-1-cpu-py3")
        assert d["HyperParameters"]["sagemaker_program"] == '"train.py"'
        assert d["HyperParameters"]["sagemaker_submit_directory"].startswith(f'"s3://{BUCKET}/')
        last = [line for line in printed.splitlines() if "trees=8 train_accuracy=" in line][-1]
        want = float(last.rsplit("=", 1)[1])
        (metric,) = d["FinalMetricDataList"]
        assert metric["MetricName"] == "train:accuracy" and metric["Value"] == want, metric
        assert want > 0.9
        assert est.model_data == f"s3://{BUCKET}/script-output/{job}/output/model.tar.gz"
        # Published to the store with the runtime its file shows (boto3 drops PierArtifact).
        manifest = json.loads((tmp_path / "data" / "store" / job / "1" / "manifest.json").read_text())
        assert manifest["runtime"] == "onnx" and manifest["provenance"]["training_job"] == job

        predictor = est.deploy(initial_instance_count=1, instance_type="ml.m5.large",
                               serializer=CSVSerializer(), deserializer=JSONDeserializer(), wait=False)
        session.wait_for_endpoint(predictor.endpoint_name, poll=1)
        test_rows = [line.split(",") for line in (BUILTIN / "breast_cancer_test.csv").read_text().splitlines()]
        X_test = np.array([[float(v) for v in r[1:]] for r in test_rows[:20]], dtype="float32")
        y_test = [int(float(r[0])) for r in test_rows[:20]]
        answer = predictor.predict(X_test)
        predictions = answer["predictions"]
        assert len(predictions) == 20, answer
        assert all(abs(sum(p["probabilities"]) - 1) < 1e-5 for p in predictions), answer
        got = [p["label"] for p in predictions]
        assert sum(int(g == t) for g, t in zip(got, y_test)) >= 16, (got, y_test)

        # The SDK's HyperparameterTuner over the script's hyperparameters; the objective is a
        # MetricDefinitions metric matched on the scripts' logs.
        from sagemaker.tuner import HyperparameterTuner, IntegerParameter
        tuner = HyperparameterTuner(
            est, "train:accuracy", {"max_depth": IntegerParameter(1, 4)},
            metric_definitions=[{"Name": "train:accuracy", "Regex": "train_accuracy=([0-9.]+)"}],
            objective_type="Maximize", strategy="Random", max_jobs=2, max_parallel_jobs=1)
        tuner.fit({"train": f"s3://{BUCKET}/script/train/"}, wait=False)
        name = tuner.latest_tuning_job.name
        deadline = time.monotonic() + 240
        while True:
            t = sm.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)
            if t["HyperParameterTuningJobStatus"] in ("Completed", "Failed", "Stopped"):
                break
            assert time.monotonic() < deadline, t
            time.sleep(1)
        assert t["HyperParameterTuningJobStatus"] == "Completed", t.get("FailureReason")
        children = sm.list_training_jobs_for_hyper_parameter_tuning_job(
            HyperParameterTuningJobName=name)["TrainingJobSummaries"]
        assert len(children) == 2, children
        values = {c["TrainingJobName"]: c["FinalHyperParameterTuningJobObjectiveMetric"]["Value"]
                  for c in children}
        assert tuner.best_training_job() == max(values, key=values.get), values
    finally:
        stop_pier(proc)


STUBBORN_PY = textwrap.dedent('''
    import argparse, os, signal, subprocess, sys, time
    p = argparse.ArgumentParser()
    p.add_argument("--pids")
    a = p.parse_args()
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    child = subprocess.Popen([sys.executable, "-c", "import time\\nwhile True: time.sleep(0.2)"])
    open(a.pids + ".tmp", "w").write(f"{os.getpid()} {child.pid}")
    os.rename(a.pids + ".tmp", a.pids)
    while True:
        time.sleep(0.2)
''')


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def test_a_killed_server_leaves_no_script_running_after_restart(tmp_path):
    """kill -9 of `pier serve` orphans its script (nothing could stop it); the next runner on
    this host fails the job as SageMaker would and kills what the job left running."""
    import tarfile
    source = tmp_path / "sourcedir.tar.gz"
    script = tmp_path / "train.py"
    script.write_text(STUBBORN_PY)
    with tarfile.open(source, "w:gz") as tar:
        tar.add(script, arcname="train.py")
    train = tmp_path / "train.csv"
    train.write_text("1,2\n")
    pids_file = tmp_path / "pids"
    data = tmp_path / "data"
    proc, addrs = start_pier(data, "--python", sys.executable)
    restarted = None
    try:
        sm, _ = clients(addrs)
        sm.create_training_job(
            TrainingJobName="orphan", RoleArn=ROLE,
            AlgorithmSpecification={"TrainingImage": "pier-script", "TrainingInputMode": "File"},
            HyperParameters={"sagemaker_program": json.dumps("train.py"),
                             "sagemaker_submit_directory": json.dumps(f"file://{source}"),
                             "pids": json.dumps(str(pids_file))},
            InputDataConfig=[{"ChannelName": "train", "DataSource": {"S3DataSource": {
                "S3DataType": "S3Prefix", "S3Uri": f"file://{train}"}}}],
            OutputDataConfig={"S3OutputPath": f"file://{tmp_path / 'out'}"},
            ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1},
            StoppingCondition={"MaxRuntimeInSeconds": 600})
        deadline = time.monotonic() + 60
        while not pids_file.exists():
            assert time.monotonic() < deadline, "the script never started"
            time.sleep(0.05)
        pids = [int(p) for p in pids_file.read_text().split()]
        proc.kill()
        proc.wait()
        assert all(alive(p) for p in pids), "the script should outlive a kill -9'd server"

        restarted, addrs = start_pier(data, "--python", sys.executable)
        sm, _ = clients(addrs)
        deadline = time.monotonic() + 30
        while True:
            d = sm.describe_training_job(TrainingJobName="orphan")
            if d["TrainingJobStatus"] != "InProgress":
                break
            assert time.monotonic() < deadline, d
            time.sleep(0.1)
        assert d["TrainingJobStatus"] == "Failed", d
        assert "ended before the job did" in d["FailureReason"], d["FailureReason"]
        deadline = time.monotonic() + 10
        while any(alive(p) for p in pids):
            assert time.monotonic() < deadline, [p for p in pids if alive(p)]
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            proc.kill()
        if restarted is not None:
            stop_pier(restarted)


XGB_TRAIN_PY = textwrap.dedent('''
    import argparse, glob, os
    import numpy as np
    import xgboost as xgb

    p = argparse.ArgumentParser()
    p.add_argument("--num_round", type=int)
    p.add_argument("--max_depth", type=int)
    a = p.parse_args()
    def load(channel):
        files = sorted(glob.glob(os.path.join(os.environ[f"SM_CHANNEL_{channel.upper()}"], "*.csv")))
        data = np.vstack([np.loadtxt(f, delimiter=",", ndmin=2) for f in files])
        return xgb.DMatrix(data[:, 1:], label=data[:, 0])
    train, validation = load("train"), load("validation")
    booster = xgb.train({"objective": "binary:logistic", "max_depth": a.max_depth, "eval_metric": "logloss"},
                        train, num_boost_round=a.num_round, evals=[(validation, "validation")],
                        verbose_eval=True)
    booster.save_model(os.path.join(os.environ["SM_MODEL_DIR"], "model.json"))
''')


def test_xgboost_estimator_runs_a_script_whose_booster_pier_serves(tmp_path, s3_store, monkeypatch):
    import io
    import tarfile

    import xgboost
    from sagemaker.xgboost.estimator import XGBoost

    proc, addrs = start_pier(tmp_path / "data", "--python", sys.executable, env=pier_env(s3_store))
    try:
        sm, rt = clients(addrs)
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_store)
        session = sdk_session(addrs, sm, rt)
        s3 = s3_client(s3_store)
        s3.upload_file(str(BUILTIN / "breast_cancer_train.csv"), BUCKET, "xgb/train/train.csv")
        s3.upload_file(str(BUILTIN / "breast_cancer_test.csv"), BUCKET, "xgb/validation/test.csv")
        source = tmp_path / "xgb-source"
        source.mkdir()
        (source / "train.py").write_text(XGB_TRAIN_PY)

        est = XGBoost(
            entry_point="train.py", source_dir=str(source), framework_version="1.7-1",
            py_version="py3", role=ROLE, instance_count=1, instance_type="ml.m5.large",
            sagemaker_session=session, output_path=f"s3://{BUCKET}/xgb-output",
            hyperparameters={"num_round": 10, "max_depth": 3},
            metric_definitions=[{"Name": "validation:logloss",
                                 "Regex": r"validation-logloss:([0-9.]+)"}])
        est.fit({"train": f"s3://{BUCKET}/xgb/train/", "validation": f"s3://{BUCKET}/xgb/validation/"},
                wait=False)
        job = est.latest_training_job.name
        session.wait_for_job(job, poll=1)
        d = sm.describe_training_job(TrainingJobName=job)
        assert d["TrainingJobStatus"] == "Completed", d.get("FailureReason")
        (metric,) = d["FinalMetricDataList"]
        assert metric["MetricName"] == "validation:logloss" and 0 < metric["Value"] < 0.5, metric

        # The booster the script saved, as the SDK's model_data holds it.
        key = est.model_data.split(f"s3://{BUCKET}/", 1)[1]
        tarball = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        with tarfile.open(fileobj=io.BytesIO(tarball)) as tar:
            booster = xgboost.Booster(model_file=bytearray(tar.extractfile("model.json").read()))
        manifest = json.loads((tmp_path / "data" / "store" / job / "1" / "manifest.json").read_text())
        assert manifest["runtime"] == "xgboost", manifest

        predictor = est.deploy(initial_instance_count=1, instance_type="ml.m5.large",
                               serializer=CSVSerializer(), deserializer=JSONDeserializer(), wait=False)
        session.wait_for_endpoint(predictor.endpoint_name, poll=1)
        rows = np.loadtxt(BUILTIN / "breast_cancer_test.csv", delimiter=",", dtype="float32")[:20, 1:]
        answer = predictor.predict(rows)
        scores = [p["score"] for p in answer["predictions"]]
        want = booster.predict(xgboost.DMatrix(rows))
        assert np.allclose(scores, want, atol=1e-6), (scores, want.tolist())
    finally:
        stop_pier(proc)
