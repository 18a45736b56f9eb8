#!/usr/bin/env python3
"""Multi-model endpoint against a single-model endpoint of the same model, on one server:

1. cache-hit latency: `pier loadtest` (SageMaker CSV, one row, closed loop) against the
   single-model endpoint `single` and against the multi-model endpoint `mme` with
   `X-Amzn-SageMaker-Target-Model: xgb.tar.gz` (loaded before the run), alternated
   single/mme/single/mme; p50/p99/throughput of each and the ratios mme/single of the
   medians;
2. cold-load latency: the first request of each of `--targets` distinct archives (tiny
   XGBoost stumps) from one keep-alive client, client-side p50/p99 and the server's own
   load time (`pier_multi_model_load_duration_seconds`).

The server's CPU seconds (from /proc) and the load generator's are printed beside each
phase's wall seconds. The model is `fixtures/trees/xgb_sagemaker/xgboost-model` (SageMaker
XGBoost, binary:logistic, 5 features).

  scripts/loadtest/multi_model.py [--pier target/release/pier] [--duration 8] [--clients 4]

Bounded: about a minute. Needs boto3 (tests/python/requirements.txt).
"""

import argparse
import http.client
import io
import json
import os
import pathlib
import resource
import subprocess
import tarfile
import tempfile
import time

import boto3

ROOT = pathlib.Path(__file__).resolve().parents[2]
XGB = ROOT / "fixtures" / "trees" / "xgb_sagemaker" / "xgboost-model"
ROW = "0.5,1.0,-0.3,0.2,0.1\n"


def cpu_seconds(pid):
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def archive(data):
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        info = tarfile.TarInfo("xgboost-model")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def stump(i):
    """A one-split XGBoost regression model over 5 features (JSON)."""
    tree = {"base_weights": [0.0, i, -i], "categories": [], "categories_nodes": [],
            "categories_segments": [], "categories_sizes": [], "default_left": [1, 0, 0], "id": 0,
            "left_children": [1, -1, -1], "loss_changes": [1.0, 0.0, 0.0],
            "parents": [2147483647, 0, 0], "right_children": [2, -1, -1],
            "split_conditions": [0.5, i, -i], "split_indices": [0, 0, 0], "split_type": [0, 0, 0],
            "sum_hessian": [2.0, 1.0, 1.0],
            "tree_param": {"num_deleted": "0", "num_feature": "5", "num_nodes": "3", "size_leaf_vector": "1"}}
    return json.dumps({"learner": {
        "attributes": {}, "feature_names": [], "feature_types": [],
        "gradient_booster": {"model": {"gbtree_model_param": {"num_parallel_tree": "1", "num_trees": "1"},
                                       "iteration_indptr": [0, 1], "tree_info": [0], "trees": [tree]},
                             "name": "gbtree"},
        "learner_model_param": {"base_score": "0E0", "boost_from_average": "1", "num_class": "0",
                                "num_feature": "5", "num_target": "1"},
        "objective": {"name": "reg:squarederror", "reg_loss_param": {"scale_pos_weight": "1"}}},
        "version": [2, 1, 0]}).encode()


def pct(values, p):
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def loadtest(args, addrs, endpoint, headers, label, workdir, pid):
    report = workdir / f"{label}.json"
    cmd = [args.pier, "loadtest", "--url", f"http://{addrs['http']}", "-m", endpoint,
           "--input-file", str(workdir / "row.csv"), "--content-type", "text/csv",
           "-c", str(args.clients), "--warmup", "1", "--duration", str(args.duration),
           "--json", str(report), "--label", label]
    for h in headers:
        cmd += ["-H", h]
    server0, client0, wall0 = cpu_seconds(pid), children_cpu(), time.monotonic()
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    wall = time.monotonic() - wall0
    r = json.loads(report.read_text())
    lat = r["latency_us"]
    server_cpu = cpu_seconds(pid) - server0
    return {"label": label, "rps": r["throughput_rps"], "p50": lat["p50"], "p99": lat["p99"],
            "cpu_us_per_req": server_cpu / max(1, r["ok"]) * 1e6,
            "errors": r["requests"] - r["ok"],
            "server_cpu": server_cpu, "client_cpu": children_cpu() - client0, "wall": wall}


def loadtest_pair(args, addrs, workdir, pid, round_):
    """`single` and `mme` (hits) loaded at the same time, so both see the same machine."""
    procs = []
    for endpoint, headers in [("single", []), ("mme", ["X-Amzn-SageMaker-Target-Model: xgb.tar.gz"])]:
        report = workdir / f"pair-{endpoint}-{round_}.json"
        cmd = [args.pier, "loadtest", "--url", f"http://{addrs['http']}", "-m", endpoint,
               "--input-file", str(workdir / "row.csv"), "--content-type", "text/csv",
               "-c", str(args.clients), "--warmup", "1", "--duration", str(args.duration),
               "--json", str(report)]
        for h in headers:
            cmd += ["-H", h]
        procs.append((endpoint, report, subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)))
    out = {}
    for endpoint, report, proc in procs:
        assert proc.wait() == 0
        r = json.loads(report.read_text())
        out[endpoint] = {"rps": r["throughput_rps"], "p50": r["latency_us"]["p50"],
                         "p99": r["latency_us"]["p99"], "errors": r["requests"] - r["ok"]}
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pier", default=str(ROOT / "target" / "release" / "pier"))
    ap.add_argument("--duration", type=int, default=8)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--targets", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=4, help="single/mme alternations")
    args = ap.parse_args()

    workdir = pathlib.Path(tempfile.mkdtemp(prefix="pier-mme-bench-"))
    prefix = workdir / "models"
    prefix.mkdir()
    (prefix / "xgb.tar.gz").write_bytes(archive(XGB.read_bytes()))
    for i in range(args.targets):
        (prefix / f"m{i}.tar.gz").write_bytes(archive(stump(i)))
    (workdir / "row.csv").write_text(ROW)

    server = subprocess.Popen(
        [args.pier, "serve", "--data-dir", str(workdir / "data"), "--http", "127.0.0.1:0",
         "--admin", "127.0.0.1:0", "--grpc", "127.0.0.1:0", "--job-slots", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    addrs = dict(part.split("=", 1) for part in server.stdout.readline().split()[2:])
    common = dict(region_name="us-east-1", aws_access_key_id="any", aws_secret_access_key="any")
    sm = boto3.client("sagemaker", endpoint_url=f"http://{addrs['admin']}", **common)
    try:
        sm.create_model(ModelName="single", PrimaryContainer={"Image": "xgboost", "ModelDataUrl": f"file://{XGB}"})
        sm.create_model(ModelName="mme", PrimaryContainer={
            "Image": "xgboost", "Mode": "MultiModel", "ModelDataUrl": f"file://{prefix}"})
        for name in ["single", "mme"]:
            sm.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[
                {"VariantName": "a", "ModelName": name, "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}])
            sm.create_endpoint(EndpointName=name, EndpointConfigName=name)
            sm.get_waiter("endpoint_in_service").wait(EndpointName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60})

        host, port = addrs["http"].rsplit(":", 1)
        conn_holder = [http.client.HTTPConnection(host, int(port))]

        def invoke(endpoint, target=None):
            conn = conn_holder[0]
            headers = {"Content-Type": "text/csv"}
            if target:
                headers["X-Amzn-SageMaker-Target-Model"] = target
            t0 = time.perf_counter()
            conn.request("POST", f"/endpoints/{endpoint}/invocations", body=ROW, headers=headers)
            r = conn.getresponse()
            body = r.read()
            assert r.status == 200, (r.status, body)
            return time.perf_counter() - t0, body

        _, single_answer = invoke("single")
        _, mme_answer = invoke("mme", "xgb.tar.gz")
        assert single_answer == mme_answer, (single_answer, mme_answer)

        # 1. Cache hits against the single-model endpoint, alternated.
        runs = []
        for round_ in range(args.rounds):
            runs.append(loadtest(args, addrs, "single", [], f"single-{round_}", workdir, server.pid))
            runs.append(loadtest(args, addrs, "mme", ["X-Amzn-SageMaker-Target-Model: xgb.tar.gz"],
                                 f"mme-hit-{round_}", workdir, server.pid))
        print(f"cache hits: pier loadtest -c {args.clients} --duration {args.duration} (SageMaker CSV, 1 row)")
        print(f"{'run':<12}{'req/s':>10}{'p50 us':>9}{'p99 us':>9}{'errors':>8}{'server cpu s':>14}"
              f"{'cpu us/req':>12}{'client cpu s':>14}{'wall s':>8}")
        for r in runs:
            print(f"{r['label']:<12}{r['rps']:>10.0f}{r['p50']:>9.0f}{r['p99']:>9.0f}{str(r['errors']):>8}"
                  f"{r['server_cpu']:>14.2f}{r['cpu_us_per_req']:>12.1f}{r['client_cpu']:>14.2f}{r['wall']:>8.1f}")
        # Each round's mme run against the single run just before it; the median of those ratios.
        for key, name in [("p50", "p50"), ("p99", "p99"), ("rps", "throughput"),
                          ("cpu_us_per_req", "server cpu per request")]:
            ratios = sorted(runs[i + 1][key] / runs[i][key] for i in range(0, len(runs), 2))
            print(f"ratio mme/single {name}: median {pct(ratios, 50):.3f} "
                  f"(rounds: {', '.join(f'{x:.2f}' for x in ratios)})")

        # 1b. Both at once: the same noise for both, ratios per round.
        print(f"cache hits, both endpoints loaded at the same time (-c {args.clients} each):")
        pairs = [loadtest_pair(args, addrs, workdir, server.pid, i) for i in range(args.rounds)]
        for i, p in enumerate(pairs):
            print(f"  round {i}: single {p['single']['rps']:.0f} req/s p50 {p['single']['p50']:.0f} us "
                  f"p99 {p['single']['p99']:.0f} us | mme {p['mme']['rps']:.0f} req/s p50 {p['mme']['p50']:.0f} us "
                  f"p99 {p['mme']['p99']:.0f} us | errors {p['single']['errors'] + p['mme']['errors']}")
        for key, name in [("p50", "p50"), ("p99", "p99"), ("rps", "throughput")]:
            ratios = sorted(p["mme"][key] / p["single"][key] for p in pairs)
            print(f"ratio mme/single {name} (same time): median {pct(ratios, 50):.3f} "
                  f"(rounds: {', '.join(f'{x:.2f}' for x in ratios)})")

        # 2. Cold loads: the first request of each target (a fresh connection: the first one
        # idled through the load tests).
        conn_holder[0].close()
        conn_holder[0] = http.client.HTTPConnection(host, int(port))
        server0, wall0 = cpu_seconds(server.pid), time.monotonic()
        cold = [invoke("mme", f"m{i}.tar.gz")[0] for i in range(args.targets)]
        wall, cpu = time.monotonic() - wall0, cpu_seconds(server.pid) - server0
        hits = [invoke("mme", f"m{i}.tar.gz")[0] for i in range(args.targets)]
        metrics = urlopen_text(f"http://{addrs['http']}/metrics")
        load_sum = metric(metrics, "pier_multi_model_load_duration_seconds_sum")
        load_count = metric(metrics, "pier_multi_model_load_duration_seconds_count")
        print(f"cold loads: {args.targets} targets, one keep-alive client")
        print(f"  first request p50 {pct(cold, 50) * 1e3:.2f} ms, p99 {pct(cold, 99) * 1e3:.2f} ms, "
              f"mean {sum(cold) / len(cold) * 1e3:.2f} ms; server load time mean "
              f"{load_sum / load_count * 1e3:.2f} ms over {load_count:.0f} loads")
        print(f"  second request (hit) p50 {pct(hits, 50) * 1e3:.3f} ms, p99 {pct(hits, 99) * 1e3:.3f} ms")
        print(f"  wall {wall:.2f} s, server cpu {cpu:.2f} s")
    finally:
        server.terminate()
        server.wait(timeout=30)


def urlopen_text(url):
    import urllib.request
    return urllib.request.urlopen(url).read().decode()


def metric(text, name):
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


if __name__ == "__main__":
    main()
