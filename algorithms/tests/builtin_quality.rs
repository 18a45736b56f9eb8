//! Quality of the built-in algorithms against scikit-learn and XGBoost on sklearn's bundled
//! data sets. The CSV splits and the reference numbers are fixtures written by
//! `scripts/builtin/compare.py --fixtures`; the XGBoost interop fixture (a Pier-trained GBDT
//! artifact with the predictions the real `xgboost` library made from it, and a model saved
//! by `xgboost` itself with its predictions) by `compare.py --interop`. No Python at test time.

use std::collections::BTreeMap;
use std::path::PathBuf;

use pier_algorithms::builtin::{Algorithm, Dataset, Predictions, load_predictor, train};
use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/builtin")
        .join(name)
}

fn reference() -> Value {
    serde_json::from_slice(&std::fs::read(fixture("reference.json")).unwrap()).unwrap()
}

fn split(name: &str, labelled: bool) -> (Dataset, Dataset) {
    let read = |part: &str| {
        let d = Dataset::from_csv(
            &std::fs::read(fixture(&format!("{name}_{part}.csv"))).unwrap(),
            true,
        )
        .unwrap();
        if labelled {
            d
        } else {
            Dataset::new(d.features().to_vec(), d.n_cols(), None).unwrap()
        }
    };
    (read("train"), read("test"))
}

fn hp(kv: &[(&str, String)]) -> BTreeMap<String, String> {
    kv.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
}

fn xgb_hp(reference: &Value, kind: &str) -> BTreeMap<String, String> {
    reference["xgb_hyperparameters"][kind]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v.as_str().map_or_else(|| v.to_string(), str::to_string),
            )
        })
        .collect()
}

#[test]
fn linear_learner_accuracy_within_001_of_logistic_regression() {
    let r = reference();
    for (name, classes) in [("breast_cancer", 2), ("wine", 3), ("digits", 10)] {
        let (tr, te) = split(name, true);
        // wd = 1 / (C n) is the penalty of LogisticRegression(C=1) on the mean loss.
        let mut h = hp(&[
            ("mini_batch_size", "100".into()),
            ("epochs", "300".into()),
            ("optimizer", "sgd".into()),
            ("learning_rate", "0.1".into()),
            ("wd", (1.0 / tr.n_rows() as f64).to_string()),
        ]);
        if classes == 2 {
            h.insert("predictor_type".into(), "binary_classifier".into());
        } else {
            h.insert("predictor_type".into(), "multiclass_classifier".into());
            h.insert("num_classes".into(), classes.to_string());
        }
        // No validation channel: the test split must not choose the binary threshold.
        let m = train(Algorithm::LinearLearner, &h, &tr, None, &|_| {}).unwrap();
        let p = load_predictor(Algorithm::LinearLearner, &m.artifact).unwrap();
        let Predictions::Scores {
            predicted_label: Some(labels),
            ..
        } = p.predict(te.features(), te.n_rows()).unwrap()
        else {
            panic!("no predicted labels")
        };
        let hits = labels
            .iter()
            .zip(te.labels().unwrap())
            .filter(|(a, b)| a == b)
            .count();
        let ours = hits as f64 / te.n_rows() as f64;
        let theirs = r["datasets"][name]["logreg_accuracy"].as_f64().unwrap();
        println!("{name}: linear learner accuracy {ours:.4}, LogisticRegression {theirs:.4}");
        assert!(
            ours >= theirs - 0.01,
            "{name}: linear learner {ours} vs LogisticRegression {theirs}"
        );
    }
}

#[test]
fn kmeans_inertia_within_one_percent_of_scikit_learn() {
    let r = reference();
    for name in ["breast_cancer", "wine", "digits"] {
        let (tr, _) = split(name, false);
        let k = r["datasets"][name]["kmeans"]["k"].as_u64().unwrap();
        let m = train(
            Algorithm::KMeans,
            &hp(&[("k", k.to_string()), ("init_method", "kmeans++".into())]),
            &tr,
            None,
            &|_| {},
        )
        .unwrap();
        let ours = m.metrics["train:ssd"];
        let theirs = r["datasets"][name]["kmeans"]["inertia"].as_f64().unwrap();
        println!("{name}: k-means SSD {ours:.6e}, scikit-learn inertia {theirs:.6e}");
        assert!(
            ours <= theirs * 1.01,
            "{name}: k-means SSD {ours} vs scikit-learn inertia {theirs}"
        );
    }
}

#[test]
fn pca_explained_variance_within_1e4_of_scikit_learn() {
    let r = reference();
    for name in ["breast_cancer", "wine", "digits"] {
        let (tr, te) = split(name, false);
        let refs: Vec<f64> = r["datasets"][name]["pca"]["explained_variance"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        for mode in ["regular", "randomized"] {
            let h = hp(&[
                ("num_components", refs.len().to_string()),
                ("algorithm_mode", mode.into()),
            ]);
            let m = train(Algorithm::Pca, &h, &tr, None, &|_| {}).unwrap();
            let model: Value = serde_json::from_slice(&m.artifact).unwrap();
            let ours = model["model"]["explained_variance"].as_array().unwrap();
            for (i, (o, t)) in ours.iter().zip(&refs).enumerate() {
                let rel = (o.as_f64().unwrap() - t).abs() / t;
                assert!(
                    rel <= 1e-4,
                    "{name} {mode} component {i}: {o} vs {t} (relative {rel})"
                );
            }
            // Projections are centred: their mean over the training rows is ~0.
            let p = load_predictor(Algorithm::Pca, &m.artifact).unwrap();
            let Predictions::Projections { dim, projections } =
                p.predict(te.features(), te.n_rows()).unwrap()
            else {
                panic!("not projections")
            };
            assert_eq!(
                (dim, projections.len()),
                (refs.len(), te.n_rows() * refs.len())
            );
        }
    }
}

#[test]
fn gbdt_matches_xgboost_hist_quality() {
    let r = reference();
    let (tr, te) = split("breast_cancer", true);
    let m = train(
        Algorithm::XGBoost,
        &xgb_hp(&r, "binary"),
        &tr,
        Some(&te),
        &|_| {},
    )
    .unwrap();
    let (ours, theirs) = (
        m.metrics["validation:auc"],
        r["datasets"]["breast_cancer"]["xgb_auc"].as_f64().unwrap(),
    );
    assert!(ours >= theirs - 0.005, "AUC {ours} vs xgboost {theirs}");

    let (tr, te) = split("diabetes", true);
    let m = train(
        Algorithm::XGBoost,
        &xgb_hp(&r, "regression"),
        &tr,
        Some(&te),
        &|_| {},
    )
    .unwrap();
    let (ours, theirs) = (
        m.metrics["validation:rmse"],
        r["datasets"]["diabetes"]["xgb_rmse"].as_f64().unwrap(),
    );
    assert!(ours <= theirs * 1.03, "RMSE {ours} vs xgboost {theirs}");

    let (tr, te) = split("wine", true);
    let m = train(
        Algorithm::XGBoost,
        &xgb_hp(&r, "multiclass"),
        &tr,
        Some(&te),
        &|_| {},
    )
    .unwrap();
    let (ours, theirs) = (
        1.0 - m.metrics["validation:merror"],
        r["datasets"]["wine"]["xgb_accuracy"].as_f64().unwrap(),
    );
    assert!(ours >= theirs - 0.03, "accuracy {ours} vs xgboost {theirs}");
}

#[test]
fn xgboost_json_predictions_agree_with_the_xgboost_library() {
    let interop: Value =
        serde_json::from_slice(&std::fs::read(fixture("xgboost_interop.json")).unwrap()).unwrap();
    let cases = interop["cases"].as_object().unwrap();
    assert!(
        cases.len() >= 4
            && cases
                .values()
                .filter(|c| c.get("xgboost_model").is_some())
                .count()
                >= 2
    );
    for (name, case) in cases {
        let (_, te) = split(name, true);
        for (model, preds) in [
            ("pier_model", "xgboost_predictions_of_pier_model"),
            ("xgboost_model", "xgboost_predictions_of_xgboost_model"),
        ] {
            // Models written by xgboost itself are kept for some cases only.
            if case.get(model).is_none() {
                continue;
            }
            let bytes = serde_json::to_vec(&case[model]).unwrap();
            let p = load_predictor(Algorithm::XGBoost, &bytes).unwrap();
            let Predictions::Scores { scores, .. } = p.predict(te.features(), te.n_rows()).unwrap()
            else {
                panic!("not scores")
            };
            let expected: Vec<f64> = case[preds]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect();
            assert_eq!(scores.len(), expected.len(), "{name} {model}");
            for (i, (a, b)) in scores.iter().zip(&expected).enumerate() {
                assert!(
                    (f64::from(*a) - b).abs() <= 1e-5 * b.abs().max(1.0),
                    "{name} {model} value {i}: pier {a} vs xgboost {b}"
                );
            }
        }
    }
}
