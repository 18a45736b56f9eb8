#!/usr/bin/env python3
"""Make the parity fixtures for pier-algorithms' tree readers (fixtures/trees/).

Trains small XGBoost and LightGBM models on generated data that has missing values
(NaN) and a categorical feature, and writes for each case:

  fixtures/trees/<case>.<model ext>   the model file as the library saves it
  fixtures/trees/<case>.case.json     inputs (null = NaN), the library's own `predict`
                                      output and its raw margins, and what the reader
                                      should report (objective, widths)

Rust tests (algorithms/tests/parity.rs) read these; they need no Python.

Usage:
  python3 -m venv /work/venv-trees
  /work/venv-trees/bin/pip install xgboost lightgbm numpy scikit-learn
  /work/venv-trees/bin/python scripts/trees/make_fixtures.py
"""

import json
import math
import os
import shutil
import sys
import zlib

import lightgbm as lgb
import numpy as np
import xgboost as xgb

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "fixtures", "trees")

N_TRAIN = 400
N_TEST = 40
N_NUM = 5  # numeric features, then one categorical feature (codes 0..7)
N_CAT_LEVELS = 8


def make_data(seed, n, with_cat=False):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, N_NUM)).astype(np.float32)
    # Round a column to a coarse grid so some inputs sit exactly on split thresholds.
    x[:, 1] = np.round(x[:, 1] * 4) / 4
    mask = rng.random(size=x.shape) < 0.12
    x[mask] = np.nan
    if with_cat:
        cat = rng.integers(0, N_CAT_LEVELS, size=(n, 1)).astype(np.float32)
        cat[rng.random(size=n) < 0.08] = np.nan
        x = np.hstack([x, cat])
    x0 = np.nan_to_num(x[:, 0], nan=0.3)
    x2 = np.nan_to_num(x[:, 2], nan=-0.2)
    signal = 1.2 * x0 - 0.8 * x2 + 0.5 * np.nan_to_num(x[:, 1]) * x0
    if with_cat:
        c = np.nan_to_num(x[:, N_NUM], nan=3).astype(int)
        signal = signal + np.array([1.5, -1.0, 0.3, 2.0, -2.0, 0.0, 0.7, -0.6])[c]
    return x, signal.astype(np.float64), rng


def labels(kind, signal, rng):
    n = len(signal)
    if kind == "binary":
        p = 1 / (1 + np.exp(-signal))
        return (rng.random(n) < p).astype(np.float32)
    if kind == "prob":
        return (1 / (1 + np.exp(-signal))).astype(np.float32)
    if kind == "reg":
        return (signal + rng.normal(scale=0.3, size=n)).astype(np.float32)
    if kind == "positive":
        return (np.exp(0.4 * signal) * rng.gamma(2.0, 0.5, size=n)).astype(np.float32)
    if kind == "count":
        return rng.poisson(np.exp(0.5 * signal).clip(0, 30)).astype(np.float32)
    if kind == "multi":
        edges = np.quantile(signal, [1 / 3, 2 / 3])
        return np.digitize(signal + rng.normal(scale=0.3, size=n), edges).astype(np.float32)
    if kind == "rank":
        return np.digitize(signal, np.quantile(signal, [0.5, 0.8])).astype(np.float32)
    raise ValueError(kind)


def jsonable(arr):
    out = []
    for v in np.asarray(arr, dtype=np.float64).ravel():
        out.append(None if math.isnan(v) else float(v))
    return out


def write_case(name, library, model_file, x, predict, margin, meta):
    case = {
        "name": name,
        "library": library,
        "library_version": xgb.__version__ if library == "xgboost" else lgb.__version__,
        "model_file": model_file,
        "n_rows": int(x.shape[0]),
        "n_features": int(x.shape[1]),
        "inputs": jsonable(x),
        "predict": jsonable(predict),
        "margin": jsonable(margin),
    }
    case.update(meta)
    with open(os.path.join(OUT, name + ".case.json"), "w") as f:
        json.dump(case, f, separators=(",", ":"))
        f.write("\n")


XGB_CASES = [
    # name, objective, label kind, extra params, file name, with categorical
    ("xgb_binary_logistic", "binary:logistic", "binary", {}, "model.json", False),
    ("xgb_binary_logistic_ubj", "binary:logistic", "binary", {}, "model.ubj", False),
    ("xgb_sagemaker", "binary:logistic", "binary", {}, "xgboost-model", False),
    ("xgb_reg_logistic", "reg:logistic", "prob", {}, "model.json", False),
    ("xgb_reg_squarederror", "reg:squarederror", "reg", {}, "model.json", False),
    ("xgb_reg_absoluteerror", "reg:absoluteerror", "reg", {}, "model.json", False),
    ("xgb_count_poisson", "count:poisson", "count", {}, "model.json", False),
    ("xgb_reg_gamma", "reg:gamma", "positive", {}, "model.json", False),
    ("xgb_reg_tweedie", "reg:tweedie", "count", {"tweedie_variance_power": 1.3}, "model.json", False),
    ("xgb_multi_softprob", "multi:softprob", "multi", {"num_class": 3}, "model.json", False),
    ("xgb_multi_softmax", "multi:softmax", "multi", {"num_class": 3}, "model.ubj", False),
    ("xgb_binary_logitraw", "binary:logitraw", "binary", {}, "model.json", False),
    ("xgb_rank_pairwise", "rank:pairwise", "rank", {}, "model.json", False),
    ("xgb_dart", "binary:logistic", "binary",
     {"booster": "dart", "rate_drop": 0.3, "skip_drop": 0.0, "seed": 7}, "model.json", False),
    ("xgb_parallel_tree", "reg:squarederror", "reg",
     {"num_parallel_tree": 3, "subsample": 0.8, "colsample_bynode": 0.8, "seed": 3},
     "model.json", False),
    ("xgb_multi_parallel_tree", "multi:softprob", "multi",
     {"num_class": 3, "num_parallel_tree": 2, "subsample": 0.8, "seed": 5}, "model.ubj", False),
    ("xgb_categorical", "binary:logistic", "binary", {"max_cat_to_onehot": 1}, "model.json", True),
    ("xgb_categorical_onehot", "reg:squarederror", "reg", {"max_cat_to_onehot": 16},
     "model.ubj", True),
]


def seed_of(name):
    """A seed per case that does not change when cases are added or reordered."""
    return zlib.crc32(name.encode())


def xgb_case(name, objective, kind, extra, file_name, with_cat):
    x, signal, rng = make_data(seed_of(name), N_TRAIN + N_TEST, with_cat)
    y = labels(kind, signal, rng)
    ft = ["q"] * N_NUM + (["c"] if with_cat else [])
    x_train, y_train, x_test = x[:N_TRAIN], y[:N_TRAIN], x[N_TRAIN:]
    dtrain = xgb.DMatrix(x_train, label=y_train, feature_types=ft, enable_categorical=with_cat)
    if kind == "rank":
        dtrain.set_group([20] * (N_TRAIN // 20))
    params = {
        "objective": objective,
        "max_depth": 3 if not with_cat else 4,
        "eta": 0.3,
        "tree_method": "hist",
        "nthread": 1,
    }
    params.update(extra)
    booster = xgb.train(params, dtrain, num_boost_round=8)
    if file_name == "xgboost-model":
        # SageMaker's container writes an extension-less file; XGBoost picks the format from
        # the extension, so save as .ubj and rename (the reader must sniff the content).
        tmp = os.path.join(OUT, name + ".tmp.ubj")
        booster.save_model(tmp)
        os.makedirs(os.path.join(OUT, name), exist_ok=True)
        model_name = name + "/xgboost-model"
        shutil.move(tmp, os.path.join(OUT, model_name))
    else:
        model_name = name + ".model." + file_name.split(".")[-1]
        booster.save_model(os.path.join(OUT, model_name))
    dtest = xgb.DMatrix(x_test, feature_types=ft, enable_categorical=with_cat)
    pred = booster.predict(dtest)
    margin = booster.predict(dtest, output_margin=True)
    num_class = extra.get("num_class", 1)
    out_width = 1 if objective == "multi:softmax" else num_class
    write_case(name, "xgboost", model_name, x_test, pred, margin, {
        "objective": objective,
        "num_outputs": out_width,
        "num_groups": num_class,
    })


LGB_CASES = [
    # name, objective params, label kind, extra params, with categorical
    ("lgb_binary", {"objective": "binary"}, "binary", {}, False),
    ("lgb_binary_sigmoid2", {"objective": "binary", "sigmoid": 2.0}, "binary", {}, False),
    ("lgb_multiclass", {"objective": "multiclass", "num_class": 3}, "multi", {}, False),
    ("lgb_regression", {"objective": "regression"}, "reg", {}, False),
    ("lgb_regression_l1", {"objective": "regression_l1"}, "reg", {}, False),
    ("lgb_poisson", {"objective": "poisson"}, "count", {}, False),
    ("lgb_categorical", {"objective": "binary"}, "binary",
     {"cat_smooth": 1.0, "min_data_per_group": 5, "max_cat_to_onehot": 2}, True),
    ("lgb_categorical_multiclass", {"objective": "multiclass", "num_class": 3}, "multi",
     {"cat_smooth": 1.0, "min_data_per_group": 5}, True),
    ("lgb_zero_as_missing", {"objective": "regression"}, "reg", {"zero_as_missing": True}, False),
    ("lgb_no_missing", {"objective": "regression"}, "reg", {"use_missing": False}, False),
    ("lgb_dart", {"objective": "binary"}, "binary", {"boosting": "dart", "drop_rate": 0.3}, False),
    ("lgb_multiclassova", {"objective": "multiclassova", "num_class": 3}, "multi", {}, False),
    ("lgb_cross_entropy", {"objective": "cross_entropy"}, "prob", {}, False),
    ("lgb_regression_sqrt", {"objective": "regression"}, "reg", {"reg_sqrt": True}, False),
    ("lgb_rf", {"objective": "binary"}, "binary",
     {"boosting": "rf", "bagging_fraction": 0.7, "bagging_freq": 1, "feature_fraction": 0.8},
     False),
]


def lgb_case(name, obj, kind, extra, with_cat):
    x, signal, rng = make_data(seed_of(name), N_TRAIN + N_TEST, with_cat)
    y = labels(kind, signal, rng)
    if name == "lgb_zero_as_missing":
        # Make exact zeros common so the Zero missing type is exercised.
        x[rng.random(size=x.shape) < 0.1] = 0.0
    x_train, y_train, x_test = x[:N_TRAIN], y[:N_TRAIN], x[N_TRAIN:]
    params = {
        "num_leaves": 8,
        "max_depth": 3,
        "learning_rate": 0.3,
        "min_data_in_leaf": 5,
        "verbose": -1,
        "num_threads": 1,
        "seed": 1,
        "deterministic": True,
    }
    params.update(obj)
    params.update(extra)
    cat = [N_NUM] if with_cat else "auto"
    dtrain = lgb.Dataset(x_train, label=y_train, categorical_feature=cat, free_raw_data=False)
    booster = lgb.train(params, dtrain, num_boost_round=10)
    model_name = name + ".txt"
    booster.save_model(os.path.join(OUT, model_name))
    pred = booster.predict(x_test)
    margin = booster.predict(x_test, raw_score=True)
    num_class = obj.get("num_class", 1)
    write_case(name, "lightgbm", model_name, x_test, pred, margin, {
        "objective": obj["objective"],
        "num_outputs": num_class,
        "num_groups": num_class,
    })


def lgb_linear():
    """A linear-tree model: the reader must refuse it (no parity case)."""
    x, signal, rng = make_data(300, N_TRAIN, False)
    y = labels("reg", signal, rng)
    params = {"objective": "regression", "linear_tree": True, "num_leaves": 4,
              "verbose": -1, "num_threads": 1}
    booster = lgb.train(params, lgb.Dataset(x, label=y), num_boost_round=2)
    booster.save_model(os.path.join(OUT, "lgb_linear_tree.txt"))


def main():
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    os.makedirs(OUT)
    for case in XGB_CASES:
        xgb_case(*case)
    for case in LGB_CASES:
        lgb_case(*case)
    lgb_linear()
    total = 0
    for dirpath, _, files in os.walk(OUT):
        total += sum(os.path.getsize(os.path.join(dirpath, f)) for f in files)
    print(f"wrote {OUT} ({total} bytes)", file=sys.stderr)


if __name__ == "__main__":
    main()
