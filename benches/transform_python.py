"""The Python baseline of `server/examples/transform_bench.rs`: the same generated CSV scored
with pandas chunks and onnxruntime, written as CSV, as a hand-written batch job would do it.

Usage: .venv/bin/python benches/transform_python.py CSV MODEL.onnx [rows-per-chunk]
Prints records/s, wall seconds and CPU seconds (user + system of this process).
"""

import os
import sys
import time

import numpy as np
import onnxruntime as ort
import pandas as pd


def main():
    csv, model = sys.argv[1], sys.argv[2]
    chunk = int(sys.argv[3]) if len(sys.argv) > 3 else 30000
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    # Beside the input folder, not in it: the Rust bench transforms everything in that folder.
    out_path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(csv))), "python.out")
    t0, c0 = time.perf_counter(), os.times()
    rows = 0
    with open(out_path, "w") as out:
        for frame in pd.read_csv(csv, header=None, chunksize=chunk, dtype=np.float32):
            outputs = session.run(None, {name: frame.to_numpy()})
            cols = [o.reshape(len(frame), -1) for o in outputs]
            np.savetxt(out, np.hstack([c.astype(np.float64) for c in cols]), delimiter=",", fmt="%.7g")
            rows += len(frame)
    wall = time.perf_counter() - t0
    c1 = os.times()
    cpu = (c1.user - c0.user) + (c1.system - c0.system)
    print(f"| python (pandas chunks of {chunk} + onnxruntime) | {rows / wall:.0f} | {wall:.2f} | {cpu:.2f} |")


if __name__ == "__main__":
    main()
