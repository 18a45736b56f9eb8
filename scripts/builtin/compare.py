#!/usr/bin/env python3
"""Reference numbers, XGBoost interop check and training-time benchmark for Pier's
built-in algorithms (algorithms/src/builtin/).

    python3 -m venv /work/venv-builtin
    /work/venv-builtin/bin/pip install scikit-learn xgboost-cpu numpy
    /work/venv-builtin/bin/python scripts/builtin/compare.py [--fixtures] [--interop] [--bench]

--fixtures  exports sklearn's bundled breast_cancer, digits, wine and diabetes data sets as
            SageMaker CSV splits (label first, no header; train_test_split test_size=0.2,
            random_state=0) into fixtures/builtin/ and writes fixtures/builtin/reference.json
            (LogisticRegression accuracy, KMeans inertia, PCA explained variance, XGBoost hist
            AUC/RMSE with the hyperparameters recorded beside them). Rust tests read these.
--interop   trains Pier's GBDT (cargo example builtin_train) on breast_cancer and wine, loads the
            XGBoost JSON artifact in the real xgboost library, compares predictions with Pier's,
            and commits the artifact plus xgboost's predictions as fixtures
            (fixtures/builtin/xgboost_interop*.json) that builtin_quality.rs checks; also saves a
            model trained by xgboost itself with its predictions, which Pier must read.
--bench     times training on make_classification(250_000, 50, n_informative=20,
            random_state=0): scikit-learn KMeans/PCA/LogisticRegression and XGBoost hist with
            nthread=1, against Pier (cargo example builtin_bench), and prints time ratios.
With no flag, does all three.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import sklearn
import xgboost as xgb
from sklearn import datasets
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, mean_squared_error, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FIX = os.path.join(ROOT, "fixtures", "builtin")
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))

# Hyperparameters shared with algorithms/tests/builtin_quality.rs (keep in sync).
XGB_BINARY = {"objective": "binary:logistic", "num_round": 50, "eta": 0.1, "max_depth": 4,
              "min_child_weight": 1, "lambda": 1, "alpha": 0, "gamma": 0, "subsample": 1,
              "colsample_bytree": 1, "max_bin": 256}
XGB_REG = dict(XGB_BINARY, objective="reg:squarederror")
XGB_MULTI = dict(XGB_BINARY, objective="multi:softprob", num_class=3)
KMEANS_K = {"digits": 10, "wine": 3, "breast_cancer": 2}
PCA_COMPONENTS = {"digits": 10, "wine": 5, "breast_cancer": 5}


def xgb_train(params, X, y):
    p = {k: v for k, v in params.items() if k != "num_round"}
    p.update(tree_method="hist", nthread=1, seed=0)
    return xgb.train(p, xgb.DMatrix(X, label=y), params["num_round"])


def f32(v):
    """The shortest decimal that reads back as the same float32."""
    return np.format_float_positional(np.float32(v), unique=True, trim="-")


def write_csv(path, X, y=None):
    """SageMaker text/csv: label first, no header; a missing value is an empty field."""
    with open(path, "w") as f:
        for i in range(X.shape[0]):
            row = ([f32(y[i])] if y is not None else []) + ["" if np.isnan(v) else f32(v) for v in X[i]]
            f.write(",".join(row) + "\n")


def load_split(name):
    loader = {"breast_cancer": datasets.load_breast_cancer, "digits": datasets.load_digits,
              "wine": datasets.load_wine, "diabetes": datasets.load_diabetes}[name]
    X, y = loader(return_X_y=True)
    X = X.astype(np.float32)  # Pier reads f32, as SageMaker's algorithms do
    strat = None if name == "diabetes" else y
    return train_test_split(X, y.astype(np.float64), test_size=0.2, random_state=0, stratify=strat)


def fixtures():
    ref = {"generated_by": "scripts/builtin/compare.py --fixtures",
           "sklearn_version": sklearn.__version__, "xgboost_version": xgb.__version__,
           "split": "train_test_split(test_size=0.2, random_state=0, stratify=y for classifiers)",
           "xgb_hyperparameters": {"binary": XGB_BINARY, "regression": XGB_REG, "multiclass": XGB_MULTI},
           "datasets": {}}
    for name in ["breast_cancer", "digits", "wine", "diabetes"]:
        Xtr, Xte, ytr, yte = load_split(name)
        write_csv(os.path.join(FIX, f"{name}_train.csv"), Xtr, ytr)
        write_csv(os.path.join(FIX, f"{name}_test.csv"), Xte, yte)
        r = {"n_train": int(Xtr.shape[0]), "n_test": int(Xte.shape[0]), "n_features": int(Xtr.shape[1])}
        X64 = Xtr.astype(np.float64)
        if name != "diabetes":
            lr = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000)).fit(Xtr, ytr)
            r["logreg_accuracy"] = float(accuracy_score(yte, lr.predict(Xte)))
            k = KMEANS_K[name]
            km = KMeans(n_clusters=k, random_state=0).fit(X64)
            r["kmeans"] = {"k": k, "inertia": float(km.inertia_), "sklearn": "KMeans(n_clusters=k, random_state=0) on train features"}
            nc = PCA_COMPONENTS[name]
            pca = PCA(n_components=nc, svd_solver="full").fit(X64)
            r["pca"] = {"num_components": nc, "explained_variance": [float(v) for v in pca.explained_variance_],
                        "explained_variance_ratio": [float(v) for v in pca.explained_variance_ratio_]}
        if name == "breast_cancer":
            b = xgb_train(XGB_BINARY, Xtr, ytr)
            r["xgb_auc"] = float(roc_auc_score(yte, b.predict(xgb.DMatrix(Xte))))
        if name == "wine":
            b = xgb_train(XGB_MULTI, Xtr, ytr)
            p = b.predict(xgb.DMatrix(Xte))
            r["xgb_accuracy"] = float(accuracy_score(yte, p.argmax(axis=1)))
        if name == "diabetes":
            b = xgb_train(XGB_REG, Xtr, ytr)
            r["xgb_rmse"] = float(np.sqrt(mean_squared_error(yte, b.predict(xgb.DMatrix(Xte)))))
        ref["datasets"][name] = r
        print(name, json.dumps(r)[:300])
        if name == "breast_cancer":
            # The same split with 10% of the feature values missing, for GBDT's default
            # directions (checked against xgboost by --interop).
            rng = np.random.RandomState(0)
            for part, X_, y_ in [("train", Xtr, ytr), ("test", Xte, yte)]:
                Xm = X_.copy()
                Xm[rng.rand(*Xm.shape) < 0.1] = np.nan
                write_csv(os.path.join(FIX, f"breast_cancer_missing_{part}.csv"), Xm, y_)
    with open(os.path.join(FIX, "reference.json"), "w") as f:
        json.dump(ref, f, indent=1)


def cargo_example(name, args):
    cmd = ["cargo", "run", "--release", "-q", "-p", "pier-algorithms", "--example", name, "--"] + args
    return subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True).stdout


def hp_args(params):
    return [f"{k}={v}" for k, v in params.items()]


def interop():
    out = {"generated_by": "scripts/builtin/compare.py --interop", "xgboost_version": xgb.__version__, "cases": {}}
    for name, params in [("breast_cancer", XGB_BINARY), ("breast_cancer_missing", XGB_BINARY),
                         ("wine", XGB_MULTI), ("diabetes", XGB_REG)]:
        tr = os.path.join(FIX, f"{name}_train.csv")
        te = os.path.join(FIX, f"{name}_test.csv")
        with tempfile.TemporaryDirectory() as d:
            metrics = json.loads(cargo_example("builtin_train", ["xgboost", tr, te, d] + hp_args(params)))
            model_json = open(os.path.join(d, "xgboost-model.json")).read()
            pier_pred = np.loadtxt(os.path.join(d, "predictions.csv"), delimiter=",", ndmin=1)
            booster = xgb.Booster()
            booster.load_model(os.path.join(d, "xgboost-model.json"))
        Xte = np.genfromtxt(te, delimiter=",", ndmin=2)[:, 1:].astype(np.float32)
        xgb_pred = booster.predict(xgb.DMatrix(Xte))
        diff = float(np.max(np.abs(xgb_pred.reshape(pier_pred.shape) - pier_pred)))
        print(f"{name}: Pier's XGBoost JSON loaded by xgboost {xgb.__version__}; max |xgboost - pier| = {diff:.3g}; pier metrics {metrics}")
        if diff > 1e-5 * max(1.0, float(np.max(np.abs(xgb_pred)))):
            sys.exit(f"{name}: predictions differ by {diff}")
        case = {"test_csv": f"{name}_test.csv", "hyperparameters": params, "max_abs_diff": diff,
                "pier_model": json.loads(model_json), "xgboost_predictions_of_pier_model": xgb_pred.reshape(-1).tolist()}
        out["cases"][name] = case
        if name not in ("breast_cancer_missing", "wine"):
            continue
        # xgboost's own model of the same data (its 3.x format: bracketed base_score vectors,
        # learned default directions), which Pier's reader must serve.
        train_rows = np.genfromtxt(tr, delimiter=",", ndmin=2)
        own = xgb_train(params, train_rows[:, 1:].astype(np.float32), train_rows[:, 0])
        with tempfile.TemporaryDirectory() as d:
            own.save_model(os.path.join(d, "m.json"))
            own_json = open(os.path.join(d, "m.json")).read()
        case["xgboost_model"] = json.loads(own_json)
        case["xgboost_predictions_of_xgboost_model"] = own.predict(xgb.DMatrix(Xte)).reshape(-1).tolist()
    with open(os.path.join(FIX, "xgboost_interop.json"), "w") as f:
        json.dump(out, f)


def bench():
    X, y = datasets.make_classification(n_samples=250_000, n_features=50, n_informative=20, random_state=0)
    X = X.astype(np.float32)
    results, cpu, quality = {}, {}, {}

    def timed(name, fit):
        t, c = time.perf_counter(), time.process_time()
        model = fit()
        results[name], cpu[name] = time.perf_counter() - t, time.process_time() - c
        return model

    b = timed("xgboost", lambda: xgb_train(dict(XGB_BINARY, num_round=100, max_depth=6, eta=0.3), X, y))
    quality["xgboost"] = {"train:auc": float(roc_auc_score(y, b.predict(xgb.DMatrix(X))))}
    km = timed("kmeans", lambda: KMeans(n_clusters=8, random_state=0).fit(X))
    quality["kmeans"] = {"inertia": float(km.inertia_)}
    pca = timed("pca", lambda: PCA(n_components=10).fit(X))
    quality["pca"] = {"explained_variance_ratio": float(pca.explained_variance_ratio_.sum())}
    lr = timed("linear-learner", lambda: LogisticRegression(max_iter=200).fit(X, y))
    quality["linear-learner"] = {"train accuracy": float(lr.score(X, y))}
    print("reference wall seconds:", json.dumps({k: round(v, 3) for k, v in results.items()}))
    print("reference cpu seconds: ", json.dumps({k: round(v, 3) for k, v in cpu.items()}))
    print("reference quality:     ", json.dumps(quality))
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "bench.csv")
        np.savetxt(path, np.column_stack([y, X]), delimiter=",", fmt="%.9g")
        for threads in ["1", str(os.cpu_count())]:
            env = dict(os.environ, RAYON_NUM_THREADS=threads)
            cmd = ["cargo", "run", "--release", "-q", "-p", "pier-algorithms", "--example", "builtin_bench", "--", path]
            lines = subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True, env=env).stdout.splitlines()
            for line in lines:
                r = json.loads(line)
                a = r["algorithm"]
                ref_name = {"xgboost": "xgboost hist nthread=1", "kmeans": "sklearn KMeans(8)", "pca": "sklearn PCA(10)",
                            "linear-learner": "sklearn LogisticRegression"}[a]
                print(f"{a:15s} pier {r['seconds']:7.3f}s wall {r['cpu_seconds'] or 0:7.2f}s cpu ({r['threads']} threads) | "
                      f"{ref_name} {results[a]:7.3f}s wall {cpu[a]:7.2f}s cpu | wall ratio pier/ref "
                      f"{r['seconds'] / results[a]:5.2f} | pier metrics {json.dumps(r['metrics'])}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fixtures", action="store_true")
    ap.add_argument("--interop", action="store_true")
    ap.add_argument("--bench", action="store_true")
    a = ap.parse_args()
    every = not (a.fixtures or a.interop or a.bench)
    os.makedirs(FIX, exist_ok=True)
    if a.fixtures or every:
        fixtures()
    if a.interop or every:
        interop()
    if a.bench or every:
        bench()


if __name__ == "__main__":
    main()
