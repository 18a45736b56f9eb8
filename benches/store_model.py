"""Writes a large ONNX model for `store_load_bench` (server/examples/store_load_bench.rs):
y = x @ W with W a K x M float32 initializer (64 MiB at the defaults), as a folder holding
model.onnx and signature.json, the layout of fixtures/onnx/*.

    .venv/bin/python benches/store_model.py OUT_DIR [M]
"""

import json
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

K = 1024


def main() -> None:
    out = sys.argv[1]
    m = int(sys.argv[2]) if len(sys.argv) > 2 else 16384
    os.makedirs(out, exist_ok=True)
    w = np.random.default_rng(0).standard_normal((K, m), dtype=np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"])],
        "store_bench",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", K])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", m])],
        [numpy_helper.from_array(w, "W")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, os.path.join(out, "model.onnx"))
    signature = {
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, K]}],
        "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, m]}],
    }
    with open(os.path.join(out, "signature.json"), "w") as f:
        json.dump(signature, f, indent=1)
    print(f"{out}/model.onnx: {os.path.getsize(os.path.join(out, 'model.onnx'))} bytes")


if __name__ == "__main__":
    main()
