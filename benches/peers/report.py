#!/usr/bin/env python3
"""Turns the cells run.sh measured into markdown: per model, a summary in the layout of
issue 19's table (one row per server, `pier loadtest` req/s over v2 REST JSON and v2 gRPC at
each concurrency, the highest first), the ratios the issue's targets name, then every cell.

Usage: report.py CELLS.tsv > tables.md
CELLS.tsv has one line per cell: server, model, generator, protocol, concurrency, the path
of the generator's own output (perf_analyzer -f CSV, wrk's WRK_RESULT line, pier loadtest
--json) or `-`, a reason when the cell could not run, then wall seconds, the server's CPU
seconds and the load generator's CPU seconds over the cell (empty when not measured).
"""

import csv
import json
import re
import sys

SUMMARY_GENERATOR = "pier loadtest"
HTTP, GRPC = "v2 REST JSON", "v2 gRPC"
ORDER = ["Pier", "Pier ort", "Triton", "MLServer", "FastAPI", "limit (hyper)", "limit (tonic)"]
MODELS = {
    "mlp": "MLP (scikit-learn MLPClassifier, iris, 4 features)",
    "gbt": "100-tree GradientBoosting (fixtures/onnx/cancer-gbc100, depth 3, 30 features)",
}


def parse(generator, path):
    """(throughput infer/s, p50 µs, p99 µs, note) of one cell's output."""
    if generator == "perf_analyzer":
        with open(path) as f:
            row = next(csv.DictReader(f))
        return float(row["Inferences/Second"]), float(row["p50 latency"]), float(row["p99 latency"]), ""
    if generator == "wrk":
        text = open(path).read()
        m = re.search(r"WRK_RESULT requests=(\d+) duration_us=(\d+) errors_status=(\d+) errors_other=(\d+) p50=(\d+) p90=(\d+) p99=(\d+)", text)
        if not m:
            raise ValueError("no WRK_RESULT line")
        requests, duration, bad, other, p50, _, p99 = map(int, m.groups())
        note = f"{bad} non-2xx, {other} socket errors" if bad or other else ""
        ok = requests - bad
        return ok / (duration / 1e6), float(p50), float(p99), note
    if generator == "pier loadtest":
        r = json.load(open(path))
        errors = {k: v for k, v in r.get("errors", {}).items() if v}
        note = ", ".join(f"{v} {k}" for k, v in errors.items())
        return float(r["throughput_rps"]), float(r["latency_us"]["p50"]), float(r["latency_us"]["p99"]), note
    raise ValueError(f"unknown generator {generator}")


def number(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def read(cells_path):
    rows = []
    for line in open(cells_path):
        parts = line.rstrip("\n").split("\t")
        parts += [""] * (10 - len(parts))
        server, model, generator, protocol, concurrency, source, reason, wall, server_cpu, gen_cpu = parts[:10]
        cell = {
            "server": server,
            "model": model,
            "generator": generator,
            "protocol": protocol,
            "c": int(concurrency) if concurrency.isdigit() else None,
            "wall": number(wall),
            "server_cpu": number(server_cpu),
            "gen_cpu": number(gen_cpu),
        }
        if source == "-":
            cell.update(rps=None, p50=None, p99=None, note=reason)
        else:
            try:
                rps, p50, p99, note = parse(generator, source)
                cell.update(rps=rps, p50=p50, p99=p99, note=note)
            except Exception as e:  # a cell whose output cannot be read is shown, not hidden
                cell.update(rps=None, p50=None, p99=None, note=f"no result: {e}")
        rows.append(cell)
    return rows


def fmt(v, digits=0):
    return f"{v:,.{digits}f}" if v is not None else "—"


def rank(server):
    return ORDER.index(server) if server in ORDER else len(ORDER)


def report_model(model, rows):
    print(f"## {MODELS.get(model, model)}")
    print()
    measured = [r for r in rows if r["c"] is not None]
    cs = sorted({r["c"] for r in measured}, reverse=True)
    summary = {(r["server"], r["protocol"], r["c"]): r["rps"] for r in measured if r["generator"] == SUMMARY_GENERATOR}

    def rps(server, protocol, c):
        return summary.get((server, protocol, c))

    servers = sorted({r["server"] for r in rows}, key=rank)
    table = [s for s in servers if not s.startswith("limit")]
    has_limits = any(s.startswith("limit") for s in servers)
    if summary:
        print(f"Summary: {SUMMARY_GENERATOR} (closed loop), one row a request, req/s.")
        print()
        head = " | ".join(f"HTTP c={c} | gRPC c={c}" for c in cs)
        print(f"| server | {head} |")
        print("|---|" + "---:|" * (2 * len(cs)))
        for s in table:
            if all(rps(s, p, c) is None for p in (HTTP, GRPC) for c in cs):
                continue  # not run for this model: its reason is in the cells below
            cols = " | ".join(f"{fmt(rps(s, HTTP, c))} | {fmt(rps(s, GRPC, c))}" for c in cs)
            print(f"| {s} | {cols} |")
        if has_limits:
            cols = " | ".join(f"{fmt(rps('limit (hyper)', HTTP, c))} | {fmt(rps('limit (tonic)', GRPC, c))}" for c in cs)
            print(f"| zero-work limit (hyper / tonic) | {cols} |")
        print()
        print("(— : no figure; the reason is in the cells below. FastAPI has no gRPC.)")
        print()

        ratios = []  # (name, target or None, a server, b server, b's protocol map)
        if model == "gbt":
            ratios.append(("Pier default build / Pier ort", 0.9, "Pier", "Pier ort", {HTTP: HTTP, GRPC: GRPC}))
            ratios.append(("Pier default build / Triton", 2.5, "Pier", "Triton", {HTTP: HTTP, GRPC: GRPC}))
        else:
            ratios.append(("Pier default build / Triton", None, "Pier", "Triton", {HTTP: HTTP, GRPC: GRPC}))
        ratios.append(("Pier / zero-work limit (HTTP: hyper, gRPC: tonic)", None, "Pier", None, {}))
        lines = []
        for name, target, a, b, _ in ratios:
            cols = []
            any_value = False
            for c in cs:
                for p in (HTTP, GRPC):
                    other = b if b else ("limit (hyper)" if p == HTTP else "limit (tonic)")
                    x, y = rps(a, p, c), rps(other, p, c)
                    if x and y:
                        any_value = True
                        r = x / y
                        mark = "" if target is None else (" ✓" if r >= target else " ✗")
                        cols.append(f"{r:.2f}×{mark}")
                    else:
                        cols.append("—")
            if any_value:
                t = f" (target ≥ {target}×)" if target else ""
                lines.append(f"| {name}{t} | " + " | ".join(cols) + " |")
        if lines:
            print("Ratios (same generator, protocol and concurrency; ✓ / ✗: the issue's target met or not):")
            print()
            print(f"| ratio | {head} |")
            print("|---|" + "---:|" * (2 * len(cs)))
            for line in lines:
                print(line)
            print()

    print("Every cell (\"vs Pier\": over Pier's cell with the same generator, protocol and concurrency;")
    print("CPU: seconds over the cell, warm-up included, the server's whole process session and the")
    print("load generator's; \"CPU / wall\": their sum over the wall seconds, at most the core count):")
    print()
    pier = {(r["generator"], r["protocol"], r["c"]): r["rps"] for r in measured if r["server"] == "Pier"}
    print("| server | load generator | protocol | c | infer/s | p50 (µs) | p99 (µs) | vs Pier | server CPU s | generator CPU s | wall s | CPU / wall | note |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in sorted(rows, key=lambda r: (rank(r["server"]), r["generator"], r["protocol"], r["c"] or 0)):
        base = pier.get((r["generator"], r["protocol"], r["c"]))
        ratio = f"{r['rps'] / base:.2f}×" if r["rps"] and base else "—"
        busy = (r["server_cpu"] or 0) + (r["gen_cpu"] or 0)
        load = f"{busy / r['wall']:.2f}" if r["wall"] else "—"
        c = r["c"] if r["c"] is not None else "—"
        print(
            f"| {r['server']} | {r['generator']} | {r['protocol']} | {c} | {fmt(r['rps'])} | {fmt(r['p50'])} | {fmt(r['p99'])} "
            f"| {ratio} | {fmt(r['server_cpu'], 2)} | {fmt(r['gen_cpu'], 2)} | {fmt(r['wall'], 2)} | {load} | {r['note']} |"
        )
    print()


def main(cells_path):
    rows = read(cells_path)
    models = list(dict.fromkeys(r["model"] for r in rows))
    for model in models:
        report_model(model, [r for r in rows if r["model"] == model])


if __name__ == "__main__":
    main(sys.argv[1])
