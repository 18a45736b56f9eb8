#!/usr/bin/env python3
"""Tuning on real training, through the server: `pier serve --job-slots 4`, one
HyperParameterTuningJob per strategy and seed created with boto3 (MaxParallelTrainingJobs=4),
the XGBoost built-in on a 50k-row classification set (40k train, 10k validation, 10 features,
a non-linear noisy label: the generator of `jobs/examples/tuning_real.rs`, here with numpy), four
hyperparameters (`eta` log, `max_depth`, `min_child_weight` log, `subsample`), `validation:auc`
maximised. Random and Bayesian children train `num_round` rounds; Hyperband's get
`MaxResource` rounds and are stopped at its rungs.

Reports per strategy and seed: the best `validation:auc`, the children's boosting rounds (the
last `#progress` line of each child's log, read through the CloudWatch Logs API), the sum of
the children's training seconds (TrainingStartTime..TrainingEndTime), the search's wall
seconds, and the server's CPU seconds over the search (all training runs in its process).
Not run in CI:

    cargo build --release --workspace
    .venv/bin/python benches/tuning/real_training.py [--seeds 0,1] [--jobs 30] [--parallel 4]
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import boto3
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REGION = "us-east-1"
ROLE = "arn:aws:iam::000000000000:role/SageMakerRole"
IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1"
TICKS = os.sysconf("SC_CLK_TCK")
RANGES = {
    "IntegerParameterRanges": [{"Name": "max_depth", "MinValue": "2", "MaxValue": "10"}],
    "ContinuousParameterRanges": [
        {"Name": "eta", "MinValue": "0.01", "MaxValue": "0.5", "ScalingType": "Logarithmic"},
        {"Name": "min_child_weight", "MinValue": "1", "MaxValue": "50", "ScalingType": "Logarithmic"},
        {"Name": "subsample", "MinValue": "0.5", "MaxValue": "1"},
    ],
    "CategoricalParameterRanges": [],
}


def data(rows, seed):
    """Rows of (label, 10 features): the label a noisy non-linear function of the features."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, size=(rows, 10)).astype(np.float32)
    noise = rng.uniform(-1, 1, rows) + rng.uniform(-1, 1, rows)
    logit = (2 * x[:, 0] * x[:, 1] - 1.5 * x[:, 2] + np.sin(3 * x[:, 3]) + x[:, 4] ** 2
             - 0.5 * x[:, 5] * x[:, 6] * x[:, 7] + 0.8 * (x[:, 8] > 0.3) + noise)
    return np.column_stack([(logit > 0.2).astype(np.float32), x])


def serve(pier, data_dir, parallel, threads):
    cmd = [pier, "serve", "--data-dir", data_dir, "--http", "127.0.0.1:0", "--admin", "127.0.0.1:0",
           "--grpc", "127.0.0.1:0", "--job-slots", str(parallel), "--training-threads", str(threads)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    while True:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"pier serve exited with {proc.wait()}")
        if line.startswith("pier: serving "):
            addrs = dict(p.split("=", 1) for p in line.split()[2:])
            break
    threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
    return proc, addrs


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def tuning_job(name, strategy, seed, jobs, parallel, rounds, train, validation, out):
    config = {
        "Strategy": strategy,
        "HyperParameterTuningJobObjective": {"Type": "Maximize", "MetricName": "validation:auc"},
        "ResourceLimits": {"MaxNumberOfTrainingJobs": jobs, "MaxParallelTrainingJobs": parallel},
        "ParameterRanges": RANGES,
        "RandomSeed": seed,
        "TrainingJobEarlyStoppingType": "Off",
    }
    # Hyperband sets each child's num_round to MaxResource and stops it at its rungs.
    static = {"objective": "binary:logistic", "num_round": str(rounds)}
    if strategy == "Hyperband":
        config["StrategyConfig"] = {"HyperbandStrategyConfig": {"MinResource": 2, "MaxResource": rounds}}
    channel = lambda n, p: {"ChannelName": n, "ContentType": "text/csv", "DataSource": {"S3DataSource": {
        "S3DataType": "S3Prefix", "S3Uri": f"file://{p}", "S3DataDistributionType": "FullyReplicated"}}}
    return dict(
        HyperParameterTuningJobName=name,
        HyperParameterTuningJobConfig=config,
        TrainingJobDefinition={
            "AlgorithmSpecification": {"TrainingImage": IMAGE, "TrainingInputMode": "File"},
            "RoleArn": ROLE,
            "StaticHyperParameters": static,
            "InputDataConfig": [channel("train", train), channel("validation", validation)],
            "OutputDataConfig": {"S3OutputPath": f"file://{out}"},
            "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1},
            "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
        },
    )


def rounds_of(logs, job):
    """The last `#progress DONE/TOTAL` of a child's log: the boosting rounds it ran."""
    done = 0
    for stream in logs.describe_log_streams(logGroupName="/aws/sagemaker/TrainingJobs",
                                            logStreamNamePrefix=job)["logStreams"]:
        kwargs = {"logGroupName": "/aws/sagemaker/TrainingJobs",
                  "logStreamName": stream["logStreamName"], "startFromHead": True}
        while True:
            page = logs.get_log_events(**kwargs)
            for e in page["events"]:
                if e["message"].startswith("#progress "):
                    done = max(done, int(e["message"].split()[1].split("/")[0]))
            if not page["events"] or page["nextForwardToken"] == kwargs.get("nextToken"):
                break
            kwargs["nextToken"] = page["nextForwardToken"]
    return done


def search(sm, logs, pid, req):
    name = req["HyperParameterTuningJobName"]
    wall, cpu = time.monotonic(), cpu_seconds(pid)
    sm.create_hyper_parameter_tuning_job(**req)
    while True:
        d = sm.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)
        if d["HyperParameterTuningJobStatus"] in ("Completed", "Failed", "Stopped"):
            break
        time.sleep(0.5)
    wall, cpu = time.monotonic() - wall, cpu_seconds(pid) - cpu
    if d["HyperParameterTuningJobStatus"] != "Completed":
        raise RuntimeError(f"{name}: {d['HyperParameterTuningJobStatus']} {d.get('FailureReason')}")
    children, token = [], None
    while True:
        page = sm.list_training_jobs_for_hyper_parameter_tuning_job(
            HyperParameterTuningJobName=name, MaxResults=100, **({"NextToken": token} if token else {}))
        children += page["TrainingJobSummaries"]
        token = page.get("NextToken")
        if not token:
            break
    train_s, rounds, stopped = 0.0, 0, 0
    for c in children:
        t = sm.describe_training_job(TrainingJobName=c["TrainingJobName"])
        if t.get("TrainingStartTime") and t.get("TrainingEndTime"):
            train_s += (t["TrainingEndTime"] - t["TrainingStartTime"]).total_seconds()
        rounds += rounds_of(logs, c["TrainingJobName"])
        stopped += t["TrainingJobStatus"] == "Stopped"
    best = d["BestTrainingJob"]["FinalHyperParameterTuningJobObjectiveMetric"]["Value"]
    return {"best": best, "children": len(children), "stopped": stopped, "rounds": rounds,
            "train_s": train_s, "wall_s": wall, "cpu_s": cpu,
            "counters": d["TrainingJobStatusCounters"]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pier", default=os.path.join(ROOT, "target/release/pier"))
    ap.add_argument("--seeds", default="0,1", help="comma-separated RandomSeed values")
    ap.add_argument("--jobs", type=int, default=30, help="MaxNumberOfTrainingJobs")
    ap.add_argument("--parallel", type=int, default=4, help="MaxParallelTrainingJobs and --job-slots")
    ap.add_argument("--rounds", type=int, default=40, help="num_round (Hyperband: MaxResource)")
    ap.add_argument("--training-threads", type=int, default=2, help="pier serve --training-threads")
    ap.add_argument("--strategies", default="Random,Bayesian,Hyperband")
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    strategies = args.strategies.split(",")
    tmp = tempfile.mkdtemp(prefix="pier-tuning-real-")
    try:
        for split, rows, seed in (("train", 40_000, 1), ("validation", 10_000, 2)):
            os.makedirs(f"{tmp}/{split}")
            np.savetxt(f"{tmp}/{split}/{split}.csv", data(rows, seed), delimiter=",", fmt="%.6g")
        proc, addrs = serve(args.pier, f"{tmp}/data", args.parallel, args.training_threads)
        try:
            common = dict(region_name=REGION, aws_access_key_id="any", aws_secret_access_key="any",
                          endpoint_url=f"http://{addrs['admin']}")
            sm, logs = boto3.client("sagemaker", **common), boto3.client("logs", **common)
            print(f"XGBoost built-in through pier serve --job-slots {args.parallel} "
                  f"--training-threads {args.training_threads}: 40k/10k rows, 4 hyperparameters, "
                  f"{args.jobs} jobs, {args.parallel} at once, up to {args.rounds} rounds; "
                  f"{os.cpu_count()} CPUs")
            print(f"{'seed':<5} {'strategy':<10} {'best auc':>9} {'rounds':>7} {'stopped':>7} "
                  f"{'train s':>8} {'wall s':>7} {'cpu s':>7}")
            results = {}
            for seed in seeds:
                for strategy in strategies:
                    name = f"real-{strategy.lower()[:5]}-{seed}"
                    r = search(sm, logs, proc.pid, tuning_job(
                        name, strategy, seed, args.jobs, args.parallel, args.rounds,
                        f"{tmp}/train/", f"{tmp}/validation/", f"{tmp}/out"))
                    results.setdefault(strategy, []).append(r)
                    print(f"{seed:<5} {strategy:<10} {r['best']:>9.5f} {r['rounds']:>7} "
                          f"{r['stopped']:>7} {r['train_s']:>8.1f} {r['wall_s']:>7.1f} "
                          f"{r['cpu_s']:>7.1f}", flush=True)
            print("mean over seeds:")
            for strategy, rs in results.items():
                m = lambda k: statistics.mean(r[k] for r in rs)
                print(f"      {strategy:<10} {m('best'):>9.5f} {m('rounds'):>7.0f} {m('stopped'):>7.1f} "
                      f"{m('train_s'):>8.1f} {m('wall_s'):>7.1f} {m('cpu_s'):>7.1f}")
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
