#!/usr/bin/env python3
"""What data capture and a shadow variant cost the caller, in one run: three endpoints of the
demo-size model (iris-logreg) on one `pier serve` — plain, capturing 100 % of requests and
answers to a local folder, and with a shadow variant of the same model taking a copy of every
request — loaded in turn with `pier loadtest` (closed loop, or open loop with --rate), the cells alternated for
--rounds rounds so drift hits all three alike. Prints per cell the median over rounds of
throughput, p50 and p99, their ratio to plain, and the server's CPU seconds beside wall
seconds (wall far above CPU means the machine was busy with other work: rerun).

  scripts/loadtest/capture_shadow_bench.py [--pier target/release/pier] [--clients 8]
      [--seconds 5] [--rounds 3]

Needs boto3 (tests/python/requirements.txt). Bounded: rounds x 3 x seconds, plus start-up.
"""

import argparse
import json
import os
import pathlib
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

import boto3

ROOT = pathlib.Path(__file__).resolve().parents[2]
MODEL = ROOT / "fixtures" / "onnx" / "iris-logreg" / "model.onnx"


def cpu_seconds(pid):
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pier", default=str(ROOT / "target" / "release" / "pier"))
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--rate", type=float, default=0.0,
                    help="open loop at this many requests per second instead of --clients "
                         "(below saturation, p99 shows what the extra work adds without queueing)")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()

    work = pathlib.Path(tempfile.mkdtemp(prefix="pier-capture-bench-"))
    capture_dir = work / "capture"
    server = subprocess.Popen(
        [args.pier, "serve", "--data-dir", str(work / "data"), "--http", "127.0.0.1:0",
         "--admin", "127.0.0.1:0", "--grpc", "127.0.0.1:0", "--capture-flush", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = server.stdout.readline()
    addrs = dict(part.split("=", 1) for part in line.split()[2:])
    sm = boto3.client("sagemaker", endpoint_url=f"http://{addrs['admin']}", region_name="us-east-1",
                      aws_access_key_id="any", aws_secret_access_key="any")
    try:
        sm.create_model(ModelName="iris", PrimaryContainer={"Image": "onnx", "ModelDataUrl": f"file://{MODEL}"})
        variant = [{"VariantName": "a", "ModelName": "iris", "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}]
        sm.create_endpoint_config(EndpointConfigName="plain", ProductionVariants=variant)
        sm.create_endpoint_config(EndpointConfigName="captured", ProductionVariants=variant, DataCaptureConfig={
            "EnableCapture": True, "InitialSamplingPercentage": 100,
            "DestinationS3Uri": f"file://{capture_dir}",
            "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
            "CaptureContentTypeHeader": {"CsvContentTypes": ["text/csv"], "JsonContentTypes": ["application/json"]}})
        sm.create_endpoint_config(EndpointConfigName="shadowed", ProductionVariants=variant, ShadowProductionVariants=[
            {"VariantName": "s", "ModelName": "iris", "InitialInstanceCount": 1, "InstanceType": "ml.m5.large",
             "InitialVariantWeight": 1.0}])
        cells = ["plain", "captured", "shadowed"]
        for name in cells:
            sm.create_endpoint(EndpointName=name, EndpointConfigName=name)
        for name in cells:
            sm.get_waiter("endpoint_in_service").wait(EndpointName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60})

        results = {name: [] for name in cells}
        load = ["-r", str(args.rate)] if args.rate else ["-c", str(args.clients)]
        for _ in range(args.rounds):
            for name in cells:
                report = work / f"{name}.json"
                c0, w0 = cpu_seconds(server.pid), time.time()
                subprocess.run(
                    [args.pier, "loadtest", "--url", f"http://{addrs['http']}", "-m", name, "--protocol", "sagemaker",
                     "--rows", "1", *load, "--warmup", "1", "--duration", str(args.seconds),
                     "--json", str(report), "-q"],
                    check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                wall, cpu = time.time() - w0, cpu_seconds(server.pid) - c0
                r = json.loads(report.read_text())
                failed = r["requests"] - r["ok"]
                results[name].append((r["throughput_rps"], r["latency_us"]["p50"], r["latency_us"]["p99"],
                                      wall, cpu, failed))

        def med(name, i):
            return statistics.median(x[i] for x in results[name])

        base = (med("plain", 0), med("plain", 1), med("plain", 2))
        what = f"open loop at {args.rate:g} req/s" if args.rate else f"{args.clients} clients"
        print(f"{what}, {args.rounds} rounds of {args.seconds:g} s per cell, medians")
        print(f"{'cell':<10} {'req/s':>9} {'ratio':>6} {'p50_us':>8} {'ratio':>6} {'p99_us':>8} {'ratio':>6} "
              f"{'wall_s':>7} {'cpu_s':>7} {'failed':>6}")
        for name in cells:
            rps, p50, p99 = med(name, 0), med(name, 1), med(name, 2)
            wall = sum(x[3] for x in results[name])
            cpu = sum(x[4] for x in results[name])
            failed = sum(x[5] for x in results[name])
            print(f"{name:<10} {rps:>9.0f} {rps / base[0]:>6.2f} {p50:>8.0f} {p50 / base[1]:>6.2f} {p99:>8.0f} "
                  f"{p99 / base[2]:>6.2f} {wall:>7.1f} {cpu:>7.1f} {failed:>6}")
        lines = sum(len(f.read_text().splitlines()) for f in capture_dir.rglob("*.jsonl"))
        print(f"captured lines so far: {lines}")
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
