#!/usr/bin/env python3
"""Replicas on one PostgreSQL database and one store, measured in one run:

1. Convergence: --updates UpdateEndpoint calls (alternating two configs) through one replica;
   for each, the seconds from the call's answer, and from the endpoint being InService, until
   every replica serves the new variant (polled every 20 ms on each replica's data plane).
   Prints p50 and max.
2. Throughput: `pier loadtest` (closed loop, --clients) against one replica, then against all
   three (connections spread round-robin), alternated for --rounds rounds; the ratio 3 / 1 and
   the CPU seconds of the servers beside wall seconds (on a 2-core machine every replica shares
   the same two cores: this shows the cost of replication, not a scale-out gain).

  scripts/replicas/bench.py [--pier target/release/pier] [--updates 20] [--clients 16]
      [--seconds 5] [--rounds 3]

Needs boto3 (tests/python/requirements.txt) and Debian's postgresql.
"""

import argparse
import json
import os
import pathlib
import signal
import statistics
import subprocess
import sys
import tempfile
import time

import boto3
import botocore.exceptions

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "python"))
from postgres import Postgres, wait_for  # noqa: E402

FIXTURES = ROOT / "fixtures" / "onnx"
CSV = b"5.1,3.5,1.4,0.2\n"
COMMON = dict(region_name="us-east-1", aws_access_key_id="any", aws_secret_access_key="any")


def cpu_seconds(pid):
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start(pier, data, *extra):
    proc = subprocess.Popen([pier, "serve", "--data-dir", str(data), "--http", "127.0.0.1:0",
                             "--admin", "127.0.0.1:0", "--grpc", "127.0.0.1:0", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline()
    if not line.startswith("pier: serving "):
        raise RuntimeError(f"pier did not start: {line!r}")
    return proc, dict(part.split("=", 1) for part in line.split()[2:])


def variant_of(rt):
    try:
        return rt.invoke_endpoint(EndpointName="iris", ContentType="text/csv", Body=CSV)["InvokedProductionVariant"]
    except botocore.exceptions.ClientError:
        return None


def loadtest(pier, urls, clients, seconds):
    out = tempfile.mktemp(suffix=".json")
    cmd = [pier, "loadtest", *sum((["--url", f"http://{u}"] for u in urls), []), "--model", "iris",
           "--features", "4", "--concurrency", str(clients), "--warmup", "1", "--duration", str(seconds),
           "--json", out, "--quiet"]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env={**os.environ, "PIER_LOG": "warn"})
    report = json.loads(pathlib.Path(out).read_text())
    os.unlink(out)
    return report


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pier", default=str(ROOT / "target" / "release" / "pier"))
    ap.add_argument("--updates", type=int, default=20)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--reconcile-every", default="1")
    args = ap.parse_args()

    work = pathlib.Path(tempfile.mkdtemp(prefix="pier-replicas-bench-"))
    pg = Postgres()
    procs = []
    try:
        addrs = []
        for i in range(3):
            proc, a = start(args.pier, work / f"r{i}", "--database-url", pg.url, "--store", f"file://{work / 'store'}",
                            "--job-slots", "0", "--reconcile-every", args.reconcile_every, "--replica-id", f"r{i}")
            procs.append(proc)
            addrs.append(a)
        sm = [boto3.client("sagemaker", endpoint_url=f"http://{a['admin']}", **COMMON) for a in addrs]
        rt = [boto3.client("sagemaker-runtime", endpoint_url=f"http://{a['http']}", **COMMON) for a in addrs]
        for name, fixture in [("logreg", "iris-logreg"), ("mlp", "iris-mlp")]:
            sm[0].create_model(ModelName=name, ExecutionRoleArn="arn:aws:iam::000000000000:role/x",
                               PrimaryContainer={"Image": "onnx", "ModelDataUrl": f"file://{FIXTURES / fixture / 'model.onnx'}"})
        for name, model in [("blue", "logreg"), ("green", "mlp")]:
            sm[0].create_endpoint_config(EndpointConfigName=name, ProductionVariants=[{"VariantName": name, "ModelName": model}])
        sm[0].create_endpoint(EndpointName="iris", EndpointConfigName="blue")
        sm[0].get_waiter("endpoint_in_service").wait(EndpointName="iris", WaiterConfig={"Delay": 0.2, "MaxAttempts": 150})
        for r in rt:
            wait_for(lambda r=r: variant_of(r) == "blue", 30, "replica serving blue")

        from_call, from_in_service = [], []
        target = "blue"
        for i in range(args.updates):
            target = "green" if target == "blue" else "blue"
            t0 = time.monotonic()
            sm[1].update_endpoint(EndpointName="iris", EndpointConfigName=target)
            answered = time.monotonic()
            wait_for(lambda: sm[1].describe_endpoint(EndpointName="iris")["EndpointStatus"] == "InService", 30, "InService")
            in_service = time.monotonic()
            for r in rt:
                wait_for(lambda r=r: variant_of(r) == target, 30, f"replica serving {target}")
            done = time.monotonic()
            from_call.append(done - answered)
            from_in_service.append(done - in_service)
            print(f"update {i + 1:2}: all replicas serve {target:5} {done - answered:.3f} s after the call, "
                  f"{done - in_service:.3f} s after InService (the call took {answered - t0:.3f} s)", flush=True)
        print(f"\nconvergence over {args.updates} updates (--reconcile-every {args.reconcile_every}): "
              f"from the call p50 {statistics.median(from_call):.3f} s, max {max(from_call):.3f} s; "
              f"from InService p50 {statistics.median(from_in_service):.3f} s, max {max(from_in_service):.3f} s")

        results = {"one": [], "three": []}
        for _ in range(args.rounds):
            for cell, urls in [("one", [addrs[0]["http"]]), ("three", [a["http"] for a in addrs])]:
                cpu0 = sum(cpu_seconds(p.pid) for p in procs)
                w0 = time.monotonic()
                report = loadtest(args.pier, urls, args.clients, args.seconds)
                wall = time.monotonic() - w0
                cpu = sum(cpu_seconds(p.pid) for p in procs) - cpu0
                assert report["errors"] == {}, report["errors"]
                results[cell].append((report["throughput_rps"], report["latency_us"]["p99"], cpu, wall))
        print(f"\nthroughput, {args.clients} clients, {args.seconds} s cells, {args.rounds} rounds (median):")
        med = {k: (statistics.median(x[0] for x in v), statistics.median(x[1] for x in v),
                   sum(x[2] for x in v), sum(x[3] for x in v)) for k, v in results.items()}
        for cell, (rps, p99, cpu, wall) in med.items():
            print(f"  {cell:5} replica(s): {rps:10.0f} req/s  p99 {p99 / 1000:.2f} ms  servers' CPU {cpu:.1f} s over {wall:.1f} s wall")
        print(f"  ratio three / one: {med['three'][0] / med['one'][0]:.2f}x")
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        pg.stop()


if __name__ == "__main__":
    main()
