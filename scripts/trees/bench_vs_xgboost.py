#!/usr/bin/env python3
"""Pier's tree predictor vs XGBoost's own inplace_predict, one thread each.

Trains a 100-tree, depth-6 binary:logistic model on 50 features, times
`Booster.inplace_predict` (nthread=1, best of several runs) on 100k rows, then builds
(`cargo build --release --workspace --example tree_bench`) and runs the `tree_bench` example
on the same model and rows, checks that both predict the same, and prints rows/s for each and
the ratio. With `--rounds N` the two are timed alternately N times (the reference before and
after each Pier run) and the best of each kept, so that load from other processes on a shared
machine favours neither side. `--pier-bin PATH` (repeatable) times other builds of the example
too, e.g. one from before a change, in the same rounds.

With `--library lightgbm` the same comparison is made against LightGBM's
`Booster.predict(num_threads=1)` (num_leaves = 2^depth, max_depth = depth; LightGBM's
defaults are `--num-leaves 31 --depth -1`).

Usage (from the repository root):
  /work/venv-trees/bin/python scripts/trees/bench_vs_xgboost.py [--rows 100000] [--runs 7]
      [--missing 0.1] [--library xgboost|lightgbm] [--rounds 5] [--pier-bin OLD_BUILD]
Set CARGO_TARGET_DIR as you like; the example is built in release mode.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np


def train(args, x_train, y_train):
    """Returns (name, version, save(path), predict(x) on one thread)."""
    if args.library == "xgboost":
        import xgboost as xgb

        booster = xgb.train(
            {"objective": "binary:logistic", "max_depth": args.depth, "eta": 0.1,
             "tree_method": "hist", "nthread": 2, "seed": 0},
            xgb.DMatrix(x_train, label=y_train), num_boost_round=args.trees)
        booster.set_param({"nthread": 1})

        def save(path):
            booster.save_model(path + ".json")
            return path + ".json"

        return ("xgboost inplace_predict (nthread=1)", f"xgboost {xgb.__version__}", save,
                booster.inplace_predict)
    import lightgbm as lgb

    booster = lgb.train(
        {"objective": "binary", "num_leaves": args.num_leaves or 2 ** args.depth,
         "max_depth": args.depth,
         "learning_rate": 0.1, "num_threads": 2, "verbose": -1, "seed": 0},
        lgb.Dataset(x_train, label=y_train), num_boost_round=args.trees)

    def save(path):
        booster.save_model(path + ".txt")
        return path + ".txt"

    return ("lightgbm predict (num_threads=1)", f"lightgbm {lgb.__version__}", save,
            lambda x: booster.predict(x, num_threads=1))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--features", type=int, default=50)
    ap.add_argument("--trees", type=int, default=100)
    ap.add_argument("--depth", type=int, default=6)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--missing", type=float, default=0.0, help="fraction of inputs set to NaN")
    ap.add_argument("--library", choices=["xgboost", "lightgbm"], default="xgboost")
    ap.add_argument("--num-leaves", type=int, default=0,
                    help="LightGBM num_leaves (default 2^depth); use --depth -1 for no depth limit")
    ap.add_argument("--rounds", type=int, default=1,
                    help="alternate reference and Pier timings this many times, keep the best")
    ap.add_argument("--pier-bin", action="append", default=[],
                    help="also time this build of tree_bench (e.g. from before a change)")
    ap.add_argument("--keep", help="write the model and data here (for callgrind runs)")
    args = ap.parse_args()

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    rng = np.random.default_rng(42)
    n_train = 50_000
    x = rng.normal(size=(n_train + args.rows, args.features)).astype(np.float32)
    w = rng.normal(size=args.features)
    logits = x[:, :10] @ w[:10] + 0.5 * np.sin(3 * x[:, 10]) * x[:, 11]
    y = (rng.random(len(x)) < 1 / (1 + np.exp(-logits))).astype(np.float32)
    if args.missing > 0:
        x[rng.random(size=x.shape) < args.missing] = np.nan
    x_train, y_train, x_test = x[:n_train], y[:n_train], np.ascontiguousarray(x[n_train:])

    label, version, save, predict = train(args, x_train, y_train)

    def time_reference():
        best = float("inf")
        for _ in range(args.runs):
            start = time.perf_counter()
            predict(x_test)
            best = min(best, time.perf_counter() - start)
        return best

    expected = predict(x_test)  # warm-up and reference output
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(root, "target"))
    subprocess.run(["cargo", "build", "--quiet", "--release", "--workspace", "--example",
                    "tree_bench"], cwd=root, check=True)
    bins = [os.path.join(target, "release", "examples", "tree_bench")] + args.pier_bin

    with tempfile.TemporaryDirectory() as tmp:
        out_dir = args.keep or tmp
        os.makedirs(out_dir, exist_ok=True)
        model = save(os.path.join(out_dir, "model"))
        data = os.path.join(out_dir, "data.bin")
        with open(data, "wb") as f:
            f.write(np.array(x_test.shape, dtype="<u8").tobytes())
            f.write(x_test.astype("<f4").tobytes())
        ref_best = time_reference()
        pier = [None] * len(bins)
        for _ in range(args.rounds):
            for b, binary in enumerate(bins):
                preds = os.path.join(tmp, f"preds{b}.bin")
                cmd = [binary, model, data, str(args.runs), preds]
                out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
                run = json.loads(out.strip().splitlines()[-1])
                if pier[b] is None or run["best_seconds"] < pier[b]["best_seconds"]:
                    pier[b] = run
                if b == 0:
                    got = np.fromfile(preds, dtype="<f4")
                elif np.fromfile(preds, dtype="<f4").tobytes() != got.tobytes():
                    sys.exit(f"{binary} predicts differently from the current build")
                ref_best = min(ref_best, time_reference())

    diff = float(np.max(np.abs(got - expected)))
    ref_rps = args.rows / ref_best
    print(f"model: {args.trees} trees, depth {args.depth}, {args.features} features, "
          f"binary, {args.rows} rows, missing {args.missing:.0%}; {version}")
    print(f"{label}: {ref_rps:,.0f} rows/s (best {ref_best * 1e3:.2f} ms)")
    for binary, run in zip(bins, pier):
        name = "pier TreeEnsemble::predict (1 thread)" if binary == bins[0] else binary
        print(f"{name}: {run['rows_per_second']:,.0f} rows/s "
              f"(best {run['best_seconds'] * 1e3:.3f} ms, process CPU {run.get('cpu_seconds', 0):.2f} s "
              f"over wall {run.get('wall_seconds', 0):.2f} s); "
              f"ratio pier/{args.library}: {run['rows_per_second'] / ref_rps:.2f}x")
    print(f"max |pier - {args.library}| = {diff:.3g}; best of {args.rounds} rounds x {args.runs} runs")
    if diff > 1e-6:
        sys.exit("predictions differ from the reference library's")


if __name__ == "__main__":
    main()
