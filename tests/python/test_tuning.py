"""Hyperparameter tuning through the SageMaker Python SDK v2, unchanged, against a real
`pier serve` and an S3-compatible store (s3s-fs): `HyperparameterTuner(Estimator(xgboost),
"validation:auc", {eta: Logarithmic, max_depth}, strategy="Bayesian").fit(...)`, `.wait()`,
`.best_training_job()`, `.deploy(...)` and `predict`, `HyperparameterTuningJobAnalytics(...)
.dataframe()`, and boto3's view of the same search (Describe, ListTrainingJobsFor…). Small
data, four jobs, two at a time.
"""

import numpy as np
import sagemaker
from sagemaker import image_uris
from sagemaker.analytics import HyperparameterTuningJobAnalytics
from sagemaker.deserializers import CSVDeserializer
from sagemaker.inputs import TrainingInput
from sagemaker.serializers import CSVSerializer
from sagemaker.tuner import ContinuousParameter, HyperparameterTuner, IntegerParameter

from conftest import ROOT, start_pier, stop_pier
from test_training_jobs import REGION, ROLE, clients
from test_training_s3 import BUCKET, pier_env, s3_client, s3_store, sdk_session  # noqa: F401

BUILTIN = ROOT / "fixtures" / "builtin"


def test_the_sdk_tuner_fits_waits_deploys_and_analyses(tmp_path, s3_store, monkeypatch):  # noqa: F811
    proc, addrs = start_pier(tmp_path / "data", "--job-slots", "2", env=pier_env(s3_store))
    try:
        sm, rt = clients(addrs)
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_store)
        session = sdk_session(addrs, sm, rt)
        s3 = s3_client(s3_store)
        s3.upload_file(str(BUILTIN / "breast_cancer_train.csv"), BUCKET, "tuning/train/train.csv")
        s3.upload_file(str(BUILTIN / "breast_cancer_test.csv"), BUCKET, "tuning/validation/test.csv")

        est = sagemaker.estimator.Estimator(
            image_uri=image_uris.retrieve("xgboost", REGION, version="1.7-1"), role=ROLE,
            instance_count=1, instance_type="ml.m5.large",
            output_path=f"s3://{BUCKET}/tuning-output", sagemaker_session=session,
            hyperparameters={"objective": "binary:logistic", "num_round": "8"})
        tuner = HyperparameterTuner(
            est, "validation:auc",
            {"eta": ContinuousParameter(0.01, 0.5, "Logarithmic"), "max_depth": IntegerParameter(2, 6)},
            max_jobs=4, max_parallel_jobs=2, strategy="Bayesian", objective_type="Maximize")
        tuner.fit({
            "train": TrainingInput(f"s3://{BUCKET}/tuning/train/", content_type="text/csv"),
            "validation": TrainingInput(f"s3://{BUCKET}/tuning/validation/", content_type="text/csv"),
        }, job_name="sdk-tune")
        tuner.wait()

        d = sm.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName="sdk-tune")
        assert d["HyperParameterTuningJobStatus"] == "Completed", d.get("FailureReason")
        assert d["TrainingJobStatusCounters"]["Completed"] == 4, d
        assert d["ObjectiveStatusCounters"]["Succeeded"] == 4, d
        assert d["HyperParameterTuningJobConfig"]["Strategy"] == "Bayesian"
        best = tuner.best_training_job()
        assert best == d["BestTrainingJob"]["TrainingJobName"]
        assert best.startswith("sdk-tune-")

        children = sm.list_training_jobs_for_hyper_parameter_tuning_job(
            HyperParameterTuningJobName="sdk-tune", SortBy="FinalObjectiveMetricValue",
            SortOrder="Descending")["TrainingJobSummaries"]
        assert [c["TrainingJobName"] for c in children][0] == best
        t = sm.describe_training_job(TrainingJobName=best)
        assert t["TuningJobArn"] == d["HyperParameterTuningJobArn"]
        assert t["ModelArtifacts"]["S3ModelArtifacts"] == f"s3://{BUCKET}/tuning-output/{best}/output/model.tar.gz"

        df = HyperparameterTuningJobAnalytics("sdk-tune", sagemaker_session=session).dataframe()
        assert len(df) == 4
        for column in ("eta", "max_depth", "FinalObjectiveValue", "TrainingJobName",
                       "TrainingJobStatus", "TrainingElapsedTimeSeconds"):
            assert column in df.columns, df.columns
        assert df["FinalObjectiveValue"].max() == d["BestTrainingJob"][
            "FinalHyperParameterTuningJobObjectiveMetric"]["Value"]
        assert df["eta"].between(0.01, 0.5).all() and df["max_depth"].between(2, 6).all()
        assert len(set(zip(df["eta"], df["max_depth"]))) == 4, df

        predictor = tuner.deploy(initial_instance_count=1, instance_type="ml.m5.large",
                                 serializer=CSVSerializer(), deserializer=CSVDeserializer())
        rows = [line.split(",") for line in (BUILTIN / "breast_cancer_test.csv").read_text().splitlines()[:40]]
        X = np.array([[float(v) for v in r[1:]] for r in rows])
        y = np.array([float(r[0]) for r in rows])
        scores = np.array([float(v) for row in predictor.predict(X) for v in row])
        assert len(scores) == 40 and ((scores >= 0) & (scores <= 1)).all(), scores
        assert ((scores > 0.5) == (y > 0.5)).mean() >= 0.85, scores
    finally:
        stop_pier(proc)
