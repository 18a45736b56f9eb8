#!/usr/bin/env python3
"""Turns the cells run.sh measured into one markdown table.

Usage: report.py CELLS.tsv > table.md
CELLS.tsv has one line per cell: server, generator, protocol, concurrency, then the path of
the generator's own output (perf_analyzer -f CSV, wrk's WRK_RESULT line, pier loadtest
--json), or `-` with a reason for a cell that could not run. The ratio column is the cell's
throughput over Pier's with the same generator, protocol and concurrency.
"""

import csv
import json
import re
import sys


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
        return float(r["throughput_rps"]), float(r["latency_us"]["p50"]), float(r["latency_us"]["p99"]), ""
    raise ValueError(f"unknown generator {generator}")


def main(cells_path):
    rows = []
    for line in open(cells_path):
        parts = line.rstrip("\n").split("\t")
        if len(parts) < 5:
            continue
        server, generator, protocol, concurrency, source = parts[:5]
        reason = parts[5] if len(parts) > 5 else ""
        cell = {"server": server, "generator": generator, "protocol": protocol, "c": int(concurrency)}
        if source == "-":
            cell.update(rps=None, p50=None, p99=None, note=reason)
        else:
            try:
                rps, p50, p99, note = parse(generator, source)
                cell.update(rps=rps, p50=p50, p99=p99, note=note)
            except Exception as e:  # a cell whose output cannot be read is shown, not hidden
                cell.update(rps=None, p50=None, p99=None, note=f"no result: {e}")
        rows.append(cell)
    pier = {(r["generator"], r["protocol"], r["c"]): r["rps"] for r in rows if r["server"] == "Pier"}
    print("| server | load generator | protocol | concurrency | throughput (infer/s) | p50 (µs) | p99 (µs) | vs Pier | note |")
    print("|---|---|---|---:|---:|---:|---:|---:|---|")
    for r in rows:
        base = pier.get((r["generator"], r["protocol"], r["c"]))
        ratio = f"{r['rps'] / base:.2f}x" if r["rps"] and base else "—"
        fmt = lambda v: f"{v:,.0f}" if v is not None else "—"  # noqa: E731
        print(f"| {r['server']} | {r['generator']} | {r['protocol']} | {r['c']} | {fmt(r['rps'])} | {fmt(r['p50'])} | {fmt(r['p99'])} | {ratio} | {r['note']} |")


if __name__ == "__main__":
    main(sys.argv[1])
