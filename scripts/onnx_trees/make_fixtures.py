#!/usr/bin/env python3
"""Writes fixtures/onnx-trees/<case>/: ONNX tree ensembles exported by skl2onnx (GradientBoosting,
RandomForest, ExtraTrees, HistGradientBoosting) and onnxmltools (XGBoost, LightGBM), plus
hand-written graphs covering every node mode, aggregate and post transform, each with inputs
holding missing values (null = NaN) and onnxruntime's outputs for them.

  model.onnx   the exported model (small: a few KB)
  case.json    {"description", "made_with", "inputs": {name: {datatype, shape, data}},
                "outputs": {name: tensor | {"zipmap": [[[key, value], ...] per row]}}}

runtimes/tests/onnx_trees.rs loads each through Pier's default backend and compares with
these outputs (1e-6 on scores, labels exactly), so the Rust tests need no Python.

Usage (from the repository root):
  python3 -m venv .venv-onnxtrees
  .venv-onnxtrees/bin/pip install 'onnxruntime==1.32.*' onnx skl2onnx scikit-learn \
      onnxmltools xgboost lightgbm numpy
  .venv-onnxtrees/bin/python scripts/onnx_trees/make_fixtures.py
"""

import json
import pathlib
import shutil

import lightgbm
import numpy as np
import onnx
import onnxmltools
import onnxruntime as ort
import skl2onnx
import sklearn
import xgboost
from onnx import TensorProto, helper
from onnxmltools.convert.common.data_types import FloatTensorType
from skl2onnx import to_onnx
from sklearn.ensemble import (
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import Normalizer, StandardScaler

# skl2onnx 1.20 passes HistGradientBoosting's `missing_go_to_left` as numpy booleans, which
# onnx refuses in an integer list; hand it integers.
_make_attribute = helper.make_attribute


def _make_attribute_with_int_bools(key, value, *args, **kwargs):
    if isinstance(value, (list, tuple)) and any(isinstance(v, (bool, np.bool_)) for v in value):
        value = [int(v) for v in value]
    return _make_attribute(key, value, *args, **kwargs)


helper.make_attribute = _make_attribute_with_int_bools

ROOT = pathlib.Path(__file__).resolve().parent.parent.parent / "fixtures" / "onnx-trees"
OPSETS = {"": 17, "ai.onnx.ml": 3}
N_FEATURES = 6
RNG = np.random.default_rng(7)


def data(n, classes=None, targets=1, nan=0.0):
    """Rows with a clear signal; `nan` of the values replaced by NaN."""
    x = RNG.normal(0, 1, (n, N_FEATURES)).astype(np.float32)
    # A feature with repeated exact values, so thresholds are met exactly.
    x[:, 5] = RNG.integers(0, 4, n).astype(np.float32)
    score = x[:, 0] + 0.5 * x[:, 1] * x[:, 2] - 0.3 * x[:, 5]
    if classes:
        y = np.digitize(score, np.quantile(score, np.linspace(0, 1, classes + 1)[1:-1]))
    elif targets == 1:
        y = 10 * score + RNG.normal(0, 0.1, n)
    else:
        y = np.stack([10 * score, x[:, 3] - x[:, 4]], axis=1)
    if nan:
        x[RNG.random(x.shape) < nan] = np.nan
    return x, y


def test_rows(train):
    """Rows to predict: fresh rows with NaN, every training threshold value hit exactly, and
    the extremes of float32."""
    x, _ = data(24, nan=0.15)
    x[0] = train[0]
    x[1, :] = np.nan
    x[2] = [3.0e38, -3.0e38, 0.0, -0.0, 1e-30, 3.0]
    return x


def tensor_json(a):
    a = np.asarray(a)
    kinds = {"float32": "FP32", "float64": "FP64", "int64": "INT64", "object": "BYTES", "<U": "BYTES"}
    dtype = kinds.get(str(a.dtype), "BYTES" if a.dtype.kind in "UO" else None)
    # JSON has no NaN or infinities: NaN is null, infinities are "inf" / "-inf".
    def encode(v):
        if isinstance(v, float) and not np.isfinite(v):
            return None if np.isnan(v) else ("inf" if v > 0 else "-inf")
        return v

    values = [encode(v) for v in a.ravel().tolist()]
    return {"datatype": dtype, "shape": list(a.shape), "data": values}


def write(name, model, x, description):
    folder = ROOT / name
    folder.mkdir(parents=True, exist_ok=True)
    onnx.checker.check_model(model)
    (folder / "model.onnx").write_bytes(model.SerializeToString())
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    names = [o.name for o in session.get_outputs()]
    outputs = {}
    for n, value in zip(names, session.run(names, {input_name: x})):
        if isinstance(value, list):  # ZipMap: a list of dicts, in onnxruntime's key order
            outputs[n] = {"zipmap": [[[str(k), float(v)] for k, v in row.items()] for row in value]}
        else:
            outputs[n] = tensor_json(value)
    case = {
        "description": description,
        "made_with": {
            "onnx": onnx.__version__,
            "onnxruntime": ort.__version__,
            "skl2onnx": skl2onnx.__version__,
            "onnxmltools": onnxmltools.__version__,
            "scikit-learn": sklearn.__version__,
            "xgboost": xgboost.__version__,
            "lightgbm": lightgbm.__version__,
        },
        "inputs": {input_name: tensor_json(x)},
        "outputs": outputs,
    }
    (folder / "case.json").write_text(json.dumps(case) + "\n")
    print(f"{name}: {(folder / 'model.onnx').stat().st_size} bytes, outputs {names}")


def skl(estimator, x, **options):
    return to_onnx(estimator, x[:1], target_opset=OPSETS, options={id(estimator): options} if options else None)


def sklearn_cases():
    x, y = data(300, classes=2)
    m = GradientBoostingClassifier(n_estimators=15, max_depth=3, random_state=0).fit(x, y)
    write("skl-gbc-binary", skl(m, x, zipmap=False), test_rows(x), "GradientBoostingClassifier, 2 classes")

    x, y = data(300, classes=3)
    m = GradientBoostingClassifier(n_estimators=8, max_depth=3, random_state=0).fit(x, y)
    write("skl-gbc-multi", skl(m, x, zipmap=False), test_rows(x), "GradientBoostingClassifier, 3 classes")

    x, y = data(300)
    m = GradientBoostingRegressor(n_estimators=15, max_depth=3, random_state=0).fit(x, y)
    write("skl-gbr", skl(m, x), test_rows(x), "GradientBoostingRegressor")

    x, y = data(300, classes=3, nan=0.1)
    m = RandomForestClassifier(n_estimators=6, max_depth=4, random_state=0).fit(x, y)
    write("skl-rf-multi-zipmap", skl(m, x), test_rows(x), "RandomForestClassifier, 3 classes, NaN in training, ZipMap")

    x, y = data(300, classes=2)
    labels = np.array(["no", "yes"])[y]
    m = RandomForestClassifier(n_estimators=5, max_depth=4, random_state=0).fit(x, labels)
    write("skl-rf-strings-zipmap", skl(m, x), test_rows(x), "RandomForestClassifier, string labels, ZipMap")

    x, y = data(300, targets=2)
    m = RandomForestRegressor(n_estimators=5, max_depth=4, random_state=0).fit(x, y)
    write("skl-rf-reg-2targets", skl(m, x), test_rows(x), "RandomForestRegressor, 2 targets")

    x, y = data(300, classes=2)
    m = ExtraTreesClassifier(n_estimators=6, max_depth=4, random_state=0).fit(x, y)
    write("skl-et-binary", skl(m, x, zipmap=False), test_rows(x), "ExtraTreesClassifier, 2 classes")

    x, y = data(300)
    m = ExtraTreesRegressor(n_estimators=6, max_depth=4, random_state=0).fit(x, y)
    write("skl-et-reg", skl(m, x), test_rows(x), "ExtraTreesRegressor")

    x, y = data(400, classes=2, nan=0.1)
    m = HistGradientBoostingClassifier(max_iter=15, max_depth=3, random_state=0).fit(x, y)
    write("skl-hgb-binary", skl(m, x, zipmap=False), test_rows(x), "HistGradientBoostingClassifier, NaN in training")

    x, y = data(400, classes=3, nan=0.1)
    m = HistGradientBoostingClassifier(max_iter=6, max_depth=3, random_state=0).fit(x, y)
    write("skl-hgb-multi-zipmap", skl(m, x), test_rows(x), "HistGradientBoostingClassifier, 3 classes, ZipMap")

    x, y = data(400, nan=0.1)
    m = HistGradientBoostingRegressor(max_iter=15, max_depth=3, random_state=0).fit(x, y)
    write("skl-hgb-reg", skl(m, x), test_rows(x), "HistGradientBoostingRegressor, NaN in training")

    x, y = data(300, classes=2)
    m = make_pipeline(StandardScaler(), GradientBoostingClassifier(n_estimators=10, max_depth=2, random_state=0))
    m.fit(x, y)
    write("skl-scaler-gbc", skl(m, x, zipmap=False), test_rows(x), "StandardScaler then GradientBoostingClassifier")

    # A node before the ensemble that Pier does not run natively: cut out and run on tract.
    x, y = data(300)
    m = make_pipeline(Normalizer(), GradientBoostingRegressor(n_estimators=10, max_depth=3, random_state=0))
    m.fit(x, y)
    rows = test_rows(x)[3:]  # no NaN rows' norms: the Normalizer would spread NaN over the row
    rows = rows[~np.isnan(rows).any(axis=1)]
    write("skl-normalizer-gbr", skl(m, x), rows, "Normalizer (run on tract) then GradientBoostingRegressor")


def xgboost_cases():
    initial = [("input", FloatTensorType([None, N_FEATURES]))]
    x, y = data(400, classes=2, nan=0.1)
    m = xgboost.XGBClassifier(n_estimators=12, max_depth=3, random_state=0).fit(x, y)
    write("xgb-binary", onnxmltools.convert_xgboost(m, initial_types=initial, target_opset=15), test_rows(x), "XGBClassifier binary:logistic, NaN in training")

    x, y = data(400, classes=3, nan=0.1)
    m = xgboost.XGBClassifier(n_estimators=5, max_depth=3, random_state=0).fit(x, y)
    write("xgb-multi", onnxmltools.convert_xgboost(m, initial_types=initial, target_opset=15), test_rows(x), "XGBClassifier multi:softprob, 3 classes")

    x, y = data(400, nan=0.1)
    m = xgboost.XGBRegressor(n_estimators=12, max_depth=3, random_state=0).fit(x, y)
    write("xgb-reg", onnxmltools.convert_xgboost(m, initial_types=initial, target_opset=15), test_rows(x), "XGBRegressor, NaN in training")


def lightgbm_cases():
    initial = [("input", FloatTensorType([None, N_FEATURES]))]
    params = dict(n_estimators=12, num_leaves=7, min_child_samples=5, random_state=0, verbose=-1)
    x, y = data(400, classes=2, nan=0.1)
    m = lightgbm.LGBMClassifier(**params).fit(x, y)
    write("lgbm-binary", onnxmltools.convert_lightgbm(m, initial_types=initial, zipmap=False, target_opset=15), test_rows(x), "LGBMClassifier binary, NaN in training")

    x, y = data(400, classes=3, nan=0.1)
    m = lightgbm.LGBMClassifier(**{**params, "n_estimators": 5}).fit(x, y)
    write("lgbm-multi", onnxmltools.convert_lightgbm(m, initial_types=initial, zipmap=False, target_opset=15), test_rows(x), "LGBMClassifier multiclass, 3 classes")

    x, y = data(400, nan=0.1)
    m = lightgbm.LGBMRegressor(**params).fit(x, y)
    write("lgbm-reg", onnxmltools.convert_lightgbm(m, initial_types=initial, target_opset=15), test_rows(x), "LGBMRegressor, NaN in training")


def handmade_tree(modes, values, tracks, tree_id, n_leaves_targets, weight_fn):
    """A complete depth-2 tree: 3 splits (nodes 0, 1, 2) on features 0, 1, 5, 4 leaves."""
    nodes = dict(
        nodes_treeids=[tree_id] * 7,
        nodes_nodeids=list(range(7)),
        nodes_featureids=[0, 1, 5, 0, 0, 0, 0],
        nodes_modes=list(modes) + ["LEAF"] * 4,
        nodes_values=list(values) + [0.0] * 4,
        nodes_truenodeids=[1, 3, 5, 0, 0, 0, 0],
        nodes_falsenodeids=[2, 4, 6, 0, 0, 0, 0],
        nodes_missing_value_tracks_true=list(tracks) + [0] * 4,
        nodes_hitrates=[1.0] * 7,
    )
    ids, nodeids, treeids, weights = [], [], [], []
    for leaf in range(3, 7):
        for target in range(n_leaves_targets):
            ids.append(target)
            nodeids.append(leaf)
            treeids.append(tree_id)
            weights.append(weight_fn(tree_id, leaf, target))
    return nodes, (ids, nodeids, treeids, weights)


def handmade(name, op, n_out, trees, description, **attrs):
    merged = {}
    w = ([], [], [], [])
    for t, (modes, values, tracks) in enumerate(trees):
        nodes, weights = handmade_tree(
            modes, values, tracks, t, n_out,
            lambda tree, leaf, target: float(((tree + 1) * (leaf - 2) * (3 - target)) % 7 - 3 + 0.25 * target),
        )
        for k, v in nodes.items():
            merged.setdefault(k, []).extend(v)
        for acc, part in zip(w, weights):
            acc.extend(part)
    prefix = "class" if op == "TreeEnsembleClassifier" else "target"
    merged.update({f"{prefix}_ids": w[0], f"{prefix}_nodeids": w[1], f"{prefix}_treeids": w[2], f"{prefix}_weights": w[3]})
    merged.update(attrs)
    if op == "TreeEnsembleClassifier":
        outputs = ["label", "probabilities"]
        labels = attrs.get("classlabels_strings")
        n_labels = len(labels or attrs["classlabels_int64s"])
        out_info = [
            helper.make_tensor_value_info("label", TensorProto.STRING if labels else TensorProto.INT64, [None]),
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, n_labels]),
        ]
    else:
        merged["n_targets"] = n_out
        outputs = ["variable"]
        out_info = [helper.make_tensor_value_info("variable", TensorProto.FLOAT, [None, n_out])]
    node = helper.make_node(op, ["X"], outputs, domain="ai.onnx.ml", **merged)
    graph = helper.make_graph([node], name, [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, N_FEATURES])], out_info)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)])
    model.ir_version = 8
    x, _ = data(30, nan=0.15)
    # Hit every threshold exactly, and the values either side of it.
    thresholds = sorted({v for _, values, _ in trees for v in values})
    for i, t in enumerate(thresholds):
        row = 3 + 3 * i
        if row + 2 < len(x):
            x[row, [0, 1, 5]] = t
            x[row + 1, [0, 1, 5]] = np.nextafter(np.float32(t), np.float32(np.inf))
            x[row + 2, [0, 1, 5]] = np.nextafter(np.float32(t), np.float32(-np.inf))
    write(name, model, x, description)


def handmade_cases():
    mixed = [
        (["BRANCH_LEQ", "BRANCH_LT", "BRANCH_EQ"], [0.0, 0.5, 2.0], [1, 0, 1]),
        (["BRANCH_GTE", "BRANCH_GT", "BRANCH_NEQ"], [-0.25, 0.0, 1.0], [0, 1, 0]),
        (["BRANCH_EQ", "BRANCH_NEQ", "BRANCH_LEQ"], [0.0, 0.5, 3.0], [0, 0, 1]),
        (["BRANCH_GT", "BRANCH_GTE", "BRANCH_LT"], [0.3, 0.5, 1.0], [1, 1, 0]),
    ]
    for agg in ["SUM", "AVERAGE", "MIN", "MAX"]:
        handmade(f"modes-reg-{agg.lower()}", "TreeEnsembleRegressor", 1, mixed, f"every node mode, missing tracks, {agg}, one target, base value",
                 aggregate_function=agg, base_values=[0.5])
        handmade(f"modes-reg2-{agg.lower()}", "TreeEnsembleRegressor", 2, mixed, f"every node mode, {agg}, two targets, base values",
                 aggregate_function=agg, base_values=[0.5, -1.0])
    handmade("modes-reg2-softmax", "TreeEnsembleRegressor", 2, mixed, "two targets, SOFTMAX post transform",
             post_transform="SOFTMAX")
    for post in ["NONE", "LOGISTIC", "SOFTMAX", "SOFTMAX_ZERO", "PROBIT"]:
        handmade(f"modes-clf3-{post.lower().replace('_', '-')}", "TreeEnsembleClassifier", 3, mixed, f"every node mode, 3 classes, {post}",
                 post_transform=post, base_values=[0.1, 0.0, -0.1], classlabels_int64s=[4, 7, 9])
    handmade("modes-clf3-strings", "TreeEnsembleClassifier", 3, mixed, "every node mode, 3 string classes, SOFTMAX",
             post_transform="SOFTMAX", classlabels_strings=["a", "b", "c"])
    handmade("modes-clf2-two-columns", "TreeEnsembleClassifier", 2, mixed, "two classes with a weight column each, LOGISTIC",
             post_transform="LOGISTIC", classlabels_int64s=[3, 5])
    handmade("modes-clf2-one-column", "TreeEnsembleClassifier", 1, mixed, "two classes, one weight column, LOGISTIC, base value",
             post_transform="LOGISTIC", base_values=[0.2], classlabels_int64s=[3, 5])


def opset5_case(name, post_transform, aggregate_function, description):
    """ai.onnx.ml opset 5 `TreeEnsemble`: two trees over 2 targets, one with a shared leaf index
    and a BRANCH_MEMBER node, every other mode once."""
    # Nodes (index: mode, feature, split, true -> (id, leaf?), false -> (id, leaf?), tracks).
    nodes = [
        (0, 0, 0.0, (1, 0), (2, 0), 1),  # 0: LEQ x0 <= 0
        (6, 5, 0.0, (0, 1), (1, 1), 0),  # 1: MEMBER x5 in {1, 3}
        (3, 1, 0.5, (3, 0), (2, 1), 1),  # 2: GT x1 > 0.5
        (5, 2, 0.0, (3, 1), (4, 1), 0),  # 3: NEQ x2 != 0
        (2, 3, -0.25, (5, 1), (6, 1), 0),  # 4: GTE x3 >= -0.25 (root of tree 2)
        (1, 4, 1.0, (7, 1), (4, 0), 1),  # 5: LT x4 < 1 (root of tree 3)
        (4, 5, 2.0, (8, 1), (9, 1), 1),  # unused
    ]
    n = len(nodes)
    attrs = dict(
        nodes_modes=helper.make_tensor("nodes_modes", TensorProto.UINT8, [n], [m[0] for m in nodes]),
        nodes_featureids=[m[1] for m in nodes],
        nodes_splits=helper.make_tensor("nodes_splits", TensorProto.FLOAT, [n], [m[2] for m in nodes]),
        nodes_truenodeids=[m[3][0] for m in nodes],
        nodes_trueleafs=[m[3][1] for m in nodes],
        nodes_falsenodeids=[m[4][0] for m in nodes],
        nodes_falseleafs=[m[4][1] for m in nodes],
        nodes_missing_value_tracks_true=[m[5] for m in nodes],
        membership_values=helper.make_tensor("membership_values", TensorProto.FLOAT, [3], [1.0, 3.0, float("nan")]),
        tree_roots=[0, 4, 5],
        leaf_targetids=[0, 1, 0, 1, 0, 1, 0, 1, 0, 1],
        leaf_weights=helper.make_tensor("leaf_weights", TensorProto.FLOAT, [10], [0.5, -1.0, 2.0, 0.25, -0.75, 1.5, 3.0, -2.0, 0.1, 0.2]),
        n_targets=2,
        post_transform=post_transform,
        aggregate_function=aggregate_function,
    )
    node = helper.make_node("TreeEnsemble", ["X"], ["Y"], domain="ai.onnx.ml", **attrs)
    graph = helper.make_graph(
        [node], name, [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, N_FEATURES])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, 2])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21), helper.make_opsetid("ai.onnx.ml", 5)])
    model.ir_version = 10
    x, _ = data(30, nan=0.15)
    x[3:8, 5] = [1.0, 3.0, 2.0, np.nextafter(np.float32(1.0), np.float32(2.0)), 0.0]
    x[8:12, 0] = [0.0, -0.0, np.nextafter(np.float32(0.0), np.float32(1.0)), -1e-45]
    x[12:15, 1] = [0.5, np.nextafter(np.float32(0.5), np.float32(1.0)), 0.4999]
    x[15:18, 2] = [0.0, -0.0, 1e-30]
    write(name, model, x, description)


if __name__ == "__main__":
    if ROOT.exists():
        shutil.rmtree(ROOT)
    sklearn_cases()
    xgboost_cases()
    lightgbm_cases()
    handmade_cases()
    opset5_case("opset5-sum", 0, 1, "ai.onnx.ml opset 5 TreeEnsemble: every mode incl. BRANCH_MEMBER, 2 targets, SUM")
    opset5_case("opset5-average-logistic", 1, 0, "ai.onnx.ml opset 5 TreeEnsemble, AVERAGE, post_transform 1")
    opset5_case("opset5-sum-softmax", 2, 1, "ai.onnx.ml opset 5 TreeEnsemble, SUM, post_transform 2")
