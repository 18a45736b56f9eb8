#!/usr/bin/env python3
"""Writes the one model every server in the peer comparison serves, into OUT_DIR:

  model.onnx    the estimator exported by skl2onnx (zipmap=False; outputs `label` INT64 [-1]
                and `probabilities` FP32 [-1, 3]; input `X` FP32 [-1, 4]) — Pier, Triton
                (Python backend + onnxruntime) and the FastAPI server run this file;
  model.joblib  the same fitted estimator, for MLServer's mlserver-sklearn runtime;
  payload.json  one request row, for perf_analyzer's --input-data.

The estimator is fixtures/onnx/iris-mlp's (scripts/make_fixtures.py, `mlp_classifier`):
scikit-learn MLPClassifier, 16 hidden units, random_state=0, on iris as float32 —
deterministic. Usage: make_model.py OUT_DIR
"""

import json
import pathlib
import sys

import joblib
import numpy as np
import onnxruntime as ort
from skl2onnx import to_onnx
from sklearn.datasets import load_iris
from sklearn.neural_network import MLPClassifier

OPSETS = {"": 17, "ai.onnx.ml": 3}


def main(out: pathlib.Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    x, y = load_iris(return_X_y=True)
    x = x.astype(np.float32)
    clf = MLPClassifier(hidden_layer_sizes=(16,), max_iter=2000, random_state=0).fit(x, y)
    onnx_model = to_onnx(clf, x[:1], target_opset=OPSETS, options={id(clf): {"zipmap": False}})
    (out / "model.onnx").write_bytes(onnx_model.SerializeToString())
    joblib.dump(clf, out / "model.joblib")
    row = [5.1, 3.5, 1.4, 0.2]
    (out / "payload.json").write_text(json.dumps({"data": [{"X": {"content": row, "shape": [1, 4]}}]}))
    # The ONNX file and the estimator must agree, or the comparison is not of one model.
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    label, proba = session.run(None, {"X": x})
    assert (label == clf.predict(x)).all(), "ONNX labels differ from scikit-learn's"
    assert np.abs(proba - clf.predict_proba(x)).max() < 1e-4, "ONNX probabilities differ"
    print(f"wrote {out}/model.onnx and model.joblib (agree on all {len(x)} iris rows)")


if __name__ == "__main__":
    main(pathlib.Path(sys.argv[1]))
