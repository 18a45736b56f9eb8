#!/usr/bin/env python3
"""Load step against an autoscaled endpoint: 1 client, then 64, then none, on a
compute-bound model (cancer-gbc100 on tract, one row a request), while Pier's autoscaler
tracks SageMakerVariantInvocationsPerInstance. Prints one line a second: clients, the
variant's Current/DesiredInstanceCount, throughput, p99 and failures (from `pier loadtest`'s
per-second timeline), then the scaling activities and the server's CPU seconds per phase.

  scripts/loadtest/autoscaling_step.py [--pier target/debug/pier] [--python-boto3-venv ...]

Bounded: about 2 minutes. Needs boto3 (tests/python/requirements.txt).
"""

import argparse
import json
import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import threading
import time

import boto3

ROOT = pathlib.Path(__file__).resolve().parents[2]
RESOURCE = "endpoint/gbc/variant/a"
DIMENSION = "sagemaker:variant:DesiredInstanceCount"


def cpu_seconds(pid):
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pier", default=str(ROOT / "target" / "debug" / "pier"))
    ap.add_argument("--low", type=int, default=15, help="seconds at 1 client")
    ap.add_argument("--high", type=int, default=45, help="seconds at 64 clients")
    ap.add_argument("--idle", type=int, default=40, help="seconds with no client")
    ap.add_argument("--target", type=float, default=50000.0, help="invocations per instance per minute")
    ap.add_argument("--ort-sessions", type=int, default=0,
                    help="serve on ONNX Runtime with this many sessions per instance (a pier built "
                         "with `--features ort`, ORT_DYLIB_PATH set), so that each instance adds "
                         "a session pool; 0: tract, where instances share the compute pool")
    args = ap.parse_args()

    data = tempfile.mkdtemp(prefix="pier-autoscaling-")
    server = subprocess.Popen(
        [args.pier, "serve", "--data-dir", data, "--http", "127.0.0.1:0", "--admin", "127.0.0.1:0",
         "--grpc", "127.0.0.1:0", "--autoscaling-interval", "2", "--max-instances", "16"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = server.stdout.readline()
    addrs = dict(part.split("=", 1) for part in line.split()[2:])
    common = dict(region_name="us-east-1", aws_access_key_id="any", aws_secret_access_key="any")
    sm = boto3.client("sagemaker", endpoint_url=f"http://{addrs['admin']}", **common)
    aas = boto3.client("application-autoscaling", endpoint_url=f"http://{addrs['admin']}", **common)
    try:
        model = ROOT / "fixtures" / "onnx" / "cancer-gbc100" / "model.onnx"
        env = {}
        if args.ort_sessions:
            env = {"PIER_BACKEND": "ort", "PIER_SESSIONS": str(args.ort_sessions)}
        sm.create_model(ModelName="gbc", PrimaryContainer={
            "Image": "onnx", "ModelDataUrl": f"file://{model}", "Environment": env})
        sm.create_endpoint_config(EndpointConfigName="gbc", ProductionVariants=[
            {"VariantName": "a", "ModelName": "gbc", "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}])
        sm.create_endpoint(EndpointName="gbc", EndpointConfigName="gbc")
        sm.get_waiter("endpoint_in_service").wait(EndpointName="gbc", WaiterConfig={"Delay": 1, "MaxAttempts": 60})
        aas.register_scalable_target(ServiceNamespace="sagemaker", ResourceId=RESOURCE, ScalableDimension=DIMENSION,
                                     MinCapacity=1, MaxCapacity=8)
        aas.put_scaling_policy(
            PolicyName="invocations", ServiceNamespace="sagemaker", ResourceId=RESOURCE, ScalableDimension=DIMENSION,
            PolicyType="TargetTrackingScaling",
            TargetTrackingScalingPolicyConfiguration={
                "TargetValue": args.target, "ScaleOutCooldown": 5, "ScaleInCooldown": 15,
                "PredefinedMetricSpecification": {"PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"}})

        samples, stop = {}, threading.Event()

        def poll():
            while not stop.is_set():
                v = sm.describe_endpoint(EndpointName="gbc")["ProductionVariants"][0]
                samples[int(time.time())] = (v["CurrentInstanceCount"], v["DesiredInstanceCount"])
                time.sleep(0.5)

        poller = threading.Thread(target=poll)
        poller.start()
        rows, cpu = [], []
        with tempfile.TemporaryDirectory() as out:
            for clients, seconds in [(1, args.low), (64, args.high)]:
                report = pathlib.Path(out) / f"c{clients}.json"
                c0, w0 = cpu_seconds(server.pid), time.time()
                subprocess.run(
                    [args.pier, "loadtest", "--url", f"http://{addrs['http']}", "-m", "gbc", "--protocol", "sagemaker",
                     "--rows", "1", "-c", str(clients), "--warmup", "0", "--duration", str(seconds),
                     "--json", str(report), "-q"],
                    check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                cpu.append((f"{clients} clients", time.time() - w0, cpu_seconds(server.pid) - c0))
                r = json.loads(report.read_text())
                for p in r["timeline"]:
                    rows.append((r["started_unix_s"] + p["t_s"], clients, p["ok"], p["p99_us"], p["errors"]))
            c0, w0 = cpu_seconds(server.pid), time.time()
            t_idle = int(time.time())
            time.sleep(args.idle)
            cpu.append(("idle", time.time() - w0, cpu_seconds(server.pid) - c0))
            rows += [(t, 0, 0, 0, 0) for t in range(t_idle, t_idle + args.idle)]
        stop.set()
        poller.join()

        start = rows[0][0]
        print(f"{'t_s':>4} {'clients':>7} {'current':>7} {'desired':>7} {'req/s':>6} {'p99_ms':>7} {'failed':>6}")
        failed = 0
        for t, clients, ok, p99, errors in rows:
            current, desired = samples.get(t, samples.get(t - 1, ("?", "?")))
            failed += errors
            print(f"{t - start:>4} {clients:>7} {current:>7} {desired:>7} {ok:>6} {p99 / 1000:>7.1f} {errors:>6}")
        print(f"failed requests in all: {failed}")
        print("phase: wall s, server CPU s")
        for name, wall, c in cpu:
            print(f"  {name}: {wall:.1f} s wall, {c:.1f} s CPU")
        acts = aas.describe_scaling_activities(ServiceNamespace="sagemaker", ResourceId=RESOURCE)["ScalingActivities"]
        for a in reversed(acts):
            print(f"  {a['StartTime']:%H:%M:%S} {a['StatusCode']}: {a['Description']} ({a['Cause']})")
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
