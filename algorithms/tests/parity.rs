//! Parity with the reference libraries: every case in `fixtures/trees/` (made by
//! `scripts/trees/make_fixtures.py`) holds a model, inputs with NaNs, and the library's own
//! `predict` output and raw margins. Pier must match them.
//!
//! Tolerance: `|pier - reference| <= 1e-6 * max(1, |reference|)`. Pier reproduces each
//! library's arithmetic (comparison, accumulation order and precision, transform), so most
//! values match exactly; the slack covers `exp` implementations that differ in the last
//! bit and LightGBM's `f64` outputs, which Pier returns rounded to `f32`.

use std::path::{Path, PathBuf};

use pier_algorithms::trees::{TreeEnsemble, load_lightgbm, load_xgboost};
use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/trees")
}

fn load_case(name: &str) -> (Value, TreeEnsemble) {
    let dir = fixtures();
    let case: Value =
        serde_json::from_slice(&std::fs::read(dir.join(format!("{name}.case.json"))).unwrap())
            .unwrap();
    let model_path = dir.join(case["model_file"].as_str().unwrap());
    let model = match case["library"].as_str().unwrap() {
        "xgboost" => load_xgboost(&std::fs::read(&model_path).unwrap()),
        "lightgbm" => load_lightgbm(&std::fs::read_to_string(&model_path).unwrap()),
        other => panic!("unknown library {other}"),
    }
    .unwrap_or_else(|e| panic!("{name}: load failed: {e}"));
    (case, model)
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().map_or(f32::NAN, |f| f as f32))
        .collect()
}

fn reference(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn assert_close(name: &str, what: &str, got: &[f32], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{name} {what}: length");
    let mut worst = (0.0f64, 0usize);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (f64::from(g) - w).abs() / w.abs().max(1.0);
        if err > worst.0 || err.is_nan() {
            worst = (err, i);
        }
    }
    let (err, i) = worst;
    eprintln!("{name} {what}: worst relative error {err:e}");
    assert!(
        err <= 1e-6,
        "{name} {what}: value {i}: pier {} vs reference {} (relative error {err:e})",
        got[i],
        want[i]
    );
}

fn check(name: &str) {
    let (case, model) = load_case(name);
    let n_rows = case["n_rows"].as_u64().unwrap() as usize;
    let n_features = case["n_features"].as_u64().unwrap() as usize;
    let inputs = floats(&case["inputs"]);
    assert!(
        inputs.iter().any(|x| x.is_nan()),
        "{name}: fixture should exercise missing values"
    );
    assert_eq!(model.num_features(), n_features, "{name}: num_features");
    assert_eq!(
        model.num_outputs(),
        case["num_outputs"].as_u64().unwrap() as usize,
        "{name}: num_outputs"
    );
    assert_eq!(
        model.num_groups(),
        case["num_groups"].as_u64().unwrap() as usize,
        "{name}: num_groups"
    );
    // The fixtures are trained on unnamed numpy columns: LightGBM names them Column_i,
    // XGBoost records none.
    match case["library"].as_str().unwrap() {
        "lightgbm" => assert_eq!(model.feature_names().unwrap()[1], "Column_1", "{name}"),
        _ => assert_eq!(model.feature_names(), None, "{name}"),
    }
    assert_eq!(
        model.objective().name,
        case["objective"].as_str().unwrap(),
        "{name}: objective"
    );
    let margin = model.predict_margin(&inputs, n_rows, n_features).unwrap();
    assert_close(name, "margin", &margin, &reference(&case["margin"]));
    let predict = model.predict(&inputs, n_rows, n_features).unwrap();
    assert_close(name, "predict", &predict, &reference(&case["predict"]));
    // Row-by-row prediction equals the batch (block boundaries must not matter).
    let width = model.num_outputs();
    for r in [0, n_rows / 2, n_rows - 1] {
        let one = model
            .predict(&inputs[r * n_features..(r + 1) * n_features], 1, n_features)
            .unwrap();
        assert_eq!(
            one,
            predict[r * width..(r + 1) * width],
            "{name}: row {r} alone"
        );
    }
}

macro_rules! parity {
    ($($name:ident),* $(,)?) => {
        $(#[test] fn $name() { check(stringify!($name)); })*
        const CASES: &[&str] = &[$(stringify!($name)),*];
    };
}

parity!(
    xgb_binary_logistic,
    xgb_binary_logistic_ubj,
    xgb_sagemaker,
    xgb_reg_logistic,
    xgb_reg_squarederror,
    xgb_reg_absoluteerror,
    xgb_count_poisson,
    xgb_reg_gamma,
    xgb_reg_tweedie,
    xgb_multi_softprob,
    xgb_multi_softmax,
    xgb_binary_logitraw,
    xgb_rank_pairwise,
    xgb_dart,
    xgb_parallel_tree,
    xgb_multi_parallel_tree,
    xgb_categorical,
    xgb_categorical_onehot,
    lgb_binary,
    lgb_binary_sigmoid2,
    lgb_multiclass,
    lgb_regression,
    lgb_regression_l1,
    lgb_poisson,
    lgb_categorical,
    lgb_categorical_multiclass,
    lgb_zero_as_missing,
    lgb_no_missing,
    lgb_rf,
    lgb_dart,
    lgb_multiclassova,
    lgb_cross_entropy,
    lgb_regression_sqrt,
);

#[test]
fn every_fixture_has_a_test() {
    let mut missing = Vec::new();
    for entry in std::fs::read_dir(fixtures()).unwrap() {
        let file = entry.unwrap().file_name().into_string().unwrap();
        if let Some(name) = file.strip_suffix(".case.json")
            && !CASES.contains(&name)
        {
            missing.push(name.to_string());
        }
    }
    assert!(
        missing.is_empty(),
        "fixtures without a parity test: {missing:?}"
    );
}

#[test]
fn xgboost_feature_names_are_exposed_when_complete() {
    let json = std::fs::read_to_string(fixtures().join("xgb_reg_squarederror.model.json")).unwrap();
    let named = json.replacen(
        "\"feature_names\":[]",
        "\"feature_names\":[\"a\",\"b\",\"c\",\"d\",\"e\"]",
        1,
    );
    let model = load_xgboost(named.as_bytes()).unwrap();
    assert_eq!(model.feature_names().unwrap(), ["a", "b", "c", "d", "e"]);
    let partial = json.replacen("\"feature_names\":[]", "\"feature_names\":[\"a\"]", 1);
    assert_eq!(
        load_xgboost(partial.as_bytes()).unwrap().feature_names(),
        None
    );
}
