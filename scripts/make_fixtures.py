#!/usr/bin/env python3
"""Writes the ONNX fixtures under fixtures/onnx/ that Pier's tests and `pier serve --demo` use.

Each fixture is a folder holding:
  model.onnx      the model (opset 17, ai.onnx.ml opset 3 for scikit-learn models)
  signature.json  inputs/outputs as Pier's manifest records them (-1 = open batch dimension)
  case.json       example inputs and onnxruntime's reference outputs for them

Run it from the repository root with onnx, skl2onnx, onnxruntime, scikit-learn and numpy
installed (see the versions printed at the top of case.json). The outputs are committed, so
the Rust tests need no Python.
"""

import json
import pathlib

import numpy as np
import onnx
import onnxruntime as ort
import skl2onnx
import sklearn
from onnx import TensorProto, helper
from skl2onnx import to_onnx
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris
from sklearn.ensemble import GradientBoostingClassifier, GradientBoostingRegressor, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.svm import SVC

ROOT = pathlib.Path(__file__).resolve().parent.parent / "fixtures" / "onnx"
OPSETS = {"": 17, "ai.onnx.ml": 3}
DTYPES = {
    np.dtype("float32"): "FP32",
    np.dtype("float64"): "FP64",
    np.dtype("int64"): "INT64",
    np.dtype("int32"): "INT32",
    np.dtype("bool"): "BOOL",
}
ONNX_DTYPES = {TensorProto.FLOAT: "FP32", TensorProto.INT64: "INT64", TensorProto.DOUBLE: "FP64"}


def signature(model):
    def spec(value_info):
        if not value_info.type.HasField("tensor_type"):
            # A sequence of maps (ZipMap): served one JSON object per row, as BYTES.
            return {"name": value_info.name, "datatype": "BYTES", "shape": [-1]}
        t = value_info.type.tensor_type
        shape = [d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim]
        return {"name": value_info.name, "datatype": ONNX_DTYPES[t.elem_type], "shape": shape}

    return {"inputs": [spec(i) for i in model.graph.input], "outputs": [spec(o) for o in model.graph.output]}


def tensor_json(array):
    array = np.asarray(array)
    return {"datatype": DTYPES[array.dtype], "shape": list(array.shape), "data": array.ravel().tolist()}


def write(name, model, inputs, description, reference=True, root=ROOT):
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    onnx.checker.check_model(model)
    (folder / "model.onnx").write_bytes(model.SerializeToString())
    sig = signature(model)
    (folder / "signature.json").write_text(json.dumps(sig, indent=1) + "\n")
    case = {
        "description": description,
        "made_with": {
            "onnx": onnx.__version__,
            "onnxruntime": ort.__version__,
            "skl2onnx": skl2onnx.__version__,
            "scikit-learn": sklearn.__version__,
        },
        "inputs": {k: tensor_json(v) for k, v in inputs.items()},
    }
    if reference:
        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        names = [o.name for o in session.get_outputs()]
        outputs = session.run(names, inputs)
        case["outputs"] = {n: tensor_json(o) for n, o in zip(names, outputs)}
    (folder / "case.json").write_text(json.dumps(case) + "\n")
    print(f"{name}: {(folder / 'model.onnx').stat().st_size} bytes")


def mlp():
    """A 4-16-3 MLP with ReLU and softmax, batch dimension named 'batch'."""
    rng = np.random.default_rng(0)
    w1 = rng.normal(0, 0.5, (4, 16)).astype(np.float32)
    b1 = rng.normal(0, 0.1, 16).astype(np.float32)
    w2 = rng.normal(0, 0.5, (16, 3)).astype(np.float32)
    b2 = rng.normal(0, 0.1, 3).astype(np.float32)
    init = [
        helper.make_tensor(n, TensorProto.FLOAT, a.shape, a.ravel())
        for n, a in [("w1", w1), ("b1", b1), ("w2", w2), ("b2", b2)]
    ]
    nodes = [
        helper.make_node("MatMul", ["input", "w1"], ["h0"]),
        helper.make_node("Add", ["h0", "b1"], ["h1"]),
        helper.make_node("Relu", ["h1"], ["h2"]),
        helper.make_node("MatMul", ["h2", "w2"], ["l0"]),
        helper.make_node("Add", ["l0", "b2"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1),
    ]
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 3])],
        init,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="pier-fixtures")
    model.ir_version = 8
    x = rng.normal(0, 1, (7, 4)).astype(np.float32)
    write("mlp", model, {"input": x}, "4-16-3 MLP, ReLU, softmax; dynamic batch named 'batch'")


def mlp_wide():
    """A 20-96-64-8 network of Gemm (transB, alpha, beta), LeakyRelu, Tanh, MatMul + Add and
    Sigmoid: wide enough (8,576 multiply-adds a row) that Pier's default backend runs small
    calls natively and large ones on tract."""
    rng = np.random.default_rng(1)
    w1 = rng.normal(0, 0.3, (96, 20)).astype(np.float32)  # stored transposed (transB)
    c1 = rng.normal(0, 0.1, 96).astype(np.float32)
    w2 = rng.normal(0, 0.2, (96, 64)).astype(np.float32)
    c2 = rng.normal(0, 0.1, 64).astype(np.float32)
    w3 = rng.normal(0, 0.3, (64, 8)).astype(np.float32)
    b3 = rng.normal(0, 0.1, 8).astype(np.float32)
    init = [
        helper.make_tensor(n, TensorProto.FLOAT, a.shape, a.ravel())
        for n, a in [("w1", w1), ("c1", c1), ("w2", w2), ("c2", c2), ("w3", w3), ("b3", b3)]
    ]
    nodes = [
        helper.make_node("Gemm", ["x", "w1", "c1"], ["g1"], transB=1, alpha=0.5, beta=2.0),
        helper.make_node("LeakyRelu", ["g1"], ["a1"], alpha=0.1),
        helper.make_node("Gemm", ["a1", "w2", "c2"], ["g2"]),
        helper.make_node("Tanh", ["g2"], ["a2"]),
        helper.make_node("MatMul", ["a2", "w3"], ["m3"]),
        helper.make_node("Add", ["b3", "m3"], ["l3"]),
        helper.make_node("Sigmoid", ["l3"], ["scores"]),
    ]
    graph = helper.make_graph(
        nodes,
        "mlp_wide",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 20])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", 8])],
        init,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="pier-fixtures")
    model.ir_version = 8
    x = rng.normal(0, 1, (12, 20)).astype(np.float32)
    write("mlp-wide", model, {"x": x}, "20-96-64-8 Gemm/LeakyRelu/Gemm/Tanh/MatMul+Add/Sigmoid; dynamic batch")


def sklearn_model(estimator, x, **options):
    return to_onnx(estimator, x[:1], target_opset=OPSETS, options={id(estimator): options} if options else None)


def logistic_regression():
    x, y = load_iris(return_X_y=True)
    x = x.astype(np.float32)
    clf = LogisticRegression(max_iter=500).fit(x, y)
    model = sklearn_model(clf, x, zipmap=False)
    write("iris-logreg", model, {"X": x[::15]}, "scikit-learn LogisticRegression on iris (3 classes), zipmap=False")


def mlp_classifier():
    x, y = load_iris(return_X_y=True)
    x = x.astype(np.float32)
    clf = MLPClassifier(hidden_layer_sizes=(16,), max_iter=2000, random_state=0).fit(x, y)
    model = sklearn_model(clf, x, zipmap=False)
    write("iris-mlp", model, {"X": x[::15]}, "scikit-learn MLPClassifier (16 hidden units) on iris, zipmap=False")


def random_forest():
    x, y = load_breast_cancer(return_X_y=True)
    x = x[:, :8].astype(np.float32)
    clf = RandomForestClassifier(n_estimators=8, max_depth=4, random_state=0).fit(x, y)
    model = sklearn_model(clf, x, zipmap=False)
    write("cancer-forest", model, {"X": x[::40]}, "scikit-learn RandomForestClassifier, 2 classes, 8 trees, zipmap=False")


def zipmap_classifier():
    x, y = load_iris(return_X_y=True)
    x = x.astype(np.float32)
    clf = LogisticRegression(max_iter=500).fit(x, y)
    model = sklearn_model(clf, x)  # zipmap on: output is a sequence of maps
    write("iris-zipmap", model, {"X": x[::15]}, "LogisticRegression with ZipMap (unsupported by tract)", reference=False)


def svm_classifier():
    """An SVC (ai.onnx.ml SVMClassifier): an operator neither tract nor Pier's native code
    runs, so the default backend refuses it at load, naming it."""
    x, y = load_iris(return_X_y=True)
    x = x.astype(np.float32)
    clf = SVC(kernel="linear").fit(x, y)
    model = sklearn_model(clf, x, zipmap=False)
    write("iris-svm", model, {"X": x[::15]}, "scikit-learn SVC (SVMClassifier), zipmap=False")


def gradient_boosting_regressor():
    x, y = load_diabetes(return_X_y=True)
    x = x.astype(np.float32)
    reg = GradientBoostingRegressor(n_estimators=10, max_depth=3, random_state=0).fit(x, y)
    model = sklearn_model(reg, x)
    write("diabetes-gbr", model, {"X": x[::30]}, "GradientBoostingRegressor (TreeEnsembleRegressor)")


def bench_gradient_boosting():
    """~100-tree binary GradientBoostingClassifier for the serving benchmark, also in the
    conformance suite. Binary classification exports TreeEnsembleClassifier with one
    base value, which onnxruntime runs and tract runs after Pier pads `base_values`
    (TreeEnsembleRegressor is onnxruntime-only)."""
    x, y = load_breast_cancer(return_X_y=True)
    x = x.astype(np.float32)
    clf = GradientBoostingClassifier(n_estimators=100, max_depth=3, random_state=0).fit(x, y)
    model = sklearn_model(clf, x, zipmap=False)
    write("cancer-gbc100", model, {"X": x[::40]}, "GradientBoostingClassifier, 100 trees of depth 3, 30 features, zipmap=False")


FIXTURES = {
    "mlp": mlp,
    "mlp-wide": mlp_wide,
    "iris-logreg": logistic_regression,
    "iris-mlp": mlp_classifier,
    "cancer-forest": random_forest,
    "iris-zipmap": zipmap_classifier,
    "iris-svm": svm_classifier,
    "diabetes-gbr": gradient_boosting_regressor,
    "cancer-gbc100": bench_gradient_boosting,
}

if __name__ == "__main__":
    import sys

    # With names, writes only those fixtures (e.g. `make_fixtures.py iris-svm`).
    for name in sys.argv[1:] or FIXTURES:
        FIXTURES[name]()
