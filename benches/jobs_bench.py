#!/usr/bin/env python3
"""Training-job measurements, standard library only.

1. Job overhead: CreateTrainingJob -> Completed (polled every 5 ms) minus `pier train` on the
   same data and hyperparameters (median of ROUNDS each; a small XGBoost job).
2. Serving during training: the demo endpoint's latency under `pier loadtest -c 8` (10 s)
   while idle, then while a 200k-row GBDT job trains on the runner's own pool
   (`--training-threads`), with the server's CPU seconds over each window.

usage: benches/jobs_bench.py [PIER_BINARY] [ROUNDS]   (default target/release/pier, 5)
Build first: cargo build --release --workspace
"""

import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PIER = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "target/release/pier")
ROUNDS = int(sys.argv[2]) if len(sys.argv) > 2 else 5
TRAIN = os.path.join(ROOT, "fixtures/builtin/breast_cancer_train.csv")
HP = {"objective": "binary:logistic", "num_round": "20", "max_depth": "3"}
TICKS = os.sysconf("SC_CLK_TCK")


def serve(data, *extra):
    proc = subprocess.Popen(
        [PIER, "serve", "--data-dir", data, "--http", "127.0.0.1:0", "--admin", "127.0.0.1:0",
         "--grpc", "127.0.0.1:0", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    while True:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError("pier serve exited")
        if line.startswith("pier: serving "):
            addrs = dict(p.split("=", 1) for p in line.split()[2:])
            break
    # Keep draining stdout (the demo prints a banner).
    import threading
    threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
    return proc, addrs


def api(admin, action, body):
    req = urllib.request.Request(
        f"http://{admin}/", data=json.dumps(body).encode(), method="POST",
        headers={"X-Amz-Target": f"SageMaker.{action}", "Content-Type": "application/x-amz-json-1.1"})
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read())


def job(name, train, hp, out):
    return {
        "TrainingJobName": name,
        "AlgorithmSpecification": {"TrainingImage": "xgboost", "TrainingInputMode": "File"},
        "HyperParameters": hp,
        "InputDataConfig": [{"ChannelName": "train", "ContentType": "text/csv", "DataSource": {
            "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": train}}}],
        "OutputDataConfig": {"S3OutputPath": out},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1},
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
    }


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def overhead(tmp):
    train_wall = []
    for i in range(ROUNDS):
        t = time.perf_counter()
        subprocess.run([PIER, "train", "--data-dir", f"{tmp}/ref{i}", "--algorithm", "xgboost",
                        "--train", TRAIN, "--model-name", "ref",
                        "--hyperparameters", *[f"{k}={v}" for k, v in HP.items()]],
                       check=True, capture_output=True)
        train_wall.append(time.perf_counter() - t)
    proc, addrs = serve(f"{tmp}/data")
    try:
        job_wall, queue, run = [], [], []
        for i in range(ROUNDS):
            name = f"overhead-{i}"
            t = time.perf_counter()
            api(addrs["admin"], "CreateTrainingJob", job(name, TRAIN, HP, f"{tmp}/out"))
            while True:
                d = api(addrs["admin"], "DescribeTrainingJob", {"TrainingJobName": name})
                if d["TrainingJobStatus"] != "InProgress":
                    break
                time.sleep(0.005)
            job_wall.append(time.perf_counter() - t)
            assert d["TrainingJobStatus"] == "Completed", d
            queue.append(d["TrainingStartTime"] - d["CreationTime"])
            run.append(d["TrainingEndTime"] - d["TrainingStartTime"])
    finally:
        proc.terminate()
        proc.wait()
    med = statistics.median
    print(f"pier train (process, read, train, publish): median {med(train_wall):.3f} s  "
          f"[{', '.join(f'{x:.3f}' for x in train_wall)}]")
    print(f"CreateTrainingJob -> Completed seen:         median {med(job_wall):.3f} s  "
          f"[{', '.join(f'{x:.3f}' for x in job_wall)}]")
    print(f"  of which queued (create -> claimed):       median {med(queue):.3f} s")
    print(f"  of which running (claimed -> ended):       median {med(run):.3f} s")
    print(f"job overhead = job - pier train:             {med(job_wall) - med(train_wall):+.3f} s")


def loadtest(http, label, tmp):
    report = f"{tmp}/{label}.json"
    body = f"{tmp}/body.csv"
    with open(body, "w") as f:
        f.write("5.1,3.5,1.4,0.2\n")
    subprocess.run([PIER, "loadtest", "--url", f"http://{http}", "-m", "demo", "--input-file", body,
                    "--content-type", "text/csv", "-c", "8", "--warmup", "1", "--duration", "10",
                    "--json", report], check=True, capture_output=True)
    with open(report) as f:
        return json.load(f)


def serving_during_training(tmp):
    rng = random.Random(1)
    train = f"{tmp}/big.csv"
    with open(train, "w") as f:
        for _ in range(200_000):
            x = [rng.random() for _ in range(20)]
            y = 1 if x[0] + x[1] * x[2] - x[3] > 0.5 else 0
            f.write(f"{y}," + ",".join(f"{v:.5f}" for v in x) + "\n")
    threads = os.environ.get("TRAINING_THREADS", "1")
    proc, addrs = serve(f"{tmp}/serve", "--demo", "--training-threads", threads)
    try:
        c0 = cpu_seconds(proc.pid)
        t0 = time.perf_counter()
        idle = loadtest(addrs["http"], "idle", tmp)
        idle_cpu, idle_wall = cpu_seconds(proc.pid) - c0, time.perf_counter() - t0
        hp = {"objective": "binary:logistic", "num_round": "100000", "max_depth": "6"}
        api(addrs["admin"], "CreateTrainingJob", job("gbdt-200k", train, hp, f"{tmp}/out"))
        while api(addrs["admin"], "DescribeTrainingJob",
                  {"TrainingJobName": "gbdt-200k"})["SecondaryStatus"] != "Training":
            time.sleep(0.05)
        c0 = cpu_seconds(proc.pid)
        t0 = time.perf_counter()
        busy = loadtest(addrs["http"], "training", tmp)
        busy_cpu, busy_wall = cpu_seconds(proc.pid) - c0, time.perf_counter() - t0
        d = api(addrs["admin"], "DescribeTrainingJob", {"TrainingJobName": "gbdt-200k"})
        assert d["SecondaryStatus"] == "Training", d
        api(addrs["admin"], "StopTrainingJob", {"TrainingJobName": "gbdt-200k"})
    finally:
        proc.terminate()
        proc.wait()
    for label, r, cpu, wall in [("idle", idle, idle_cpu, idle_wall), ("training", busy, busy_cpu, busy_wall)]:
        lat = r["latency_us"]
        print(f"{label:9} {r['throughput_rps']:8.0f} req/s  p50 {lat['p50'] / 1000:.3f} ms  "
              f"p99 {lat['p99'] / 1000:.3f} ms  server CPU {cpu:.1f} s over {wall:.1f} s wall")
    print(f"p99 training / idle = {busy['latency_us']['p99'] / idle['latency_us']['p99']:.2f}x "
          f"(--training-threads {threads}, {os.cpu_count()} cores)")


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        which = os.environ.get("ONLY", "both")
        if which in ("both", "overhead"):
            overhead(tmp)
        if which in ("both", "serving"):
            serving_during_training(tmp)
