//! Bad inputs give typed errors, never panics: truncated and corrupted model files (JSON,
//! UBJSON, LightGBM text), unknown objectives, LightGBM linear trees, and inputs whose shape
//! does not match the model.

use std::path::{Path, PathBuf};

use pier_algorithms::trees::{ModelFormat, TreeError, load_lightgbm, load_model, load_xgboost};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/trees")
        .join(name)
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).unwrap()
}

fn text(name: &str) -> String {
    std::fs::read_to_string(fixture(name)).unwrap()
}

#[test]
fn truncated_xgboost_files_are_errors_at_every_length() {
    for name in [
        "xgb_binary_logistic.model.json",
        "xgb_binary_logistic_ubj.model.ubj",
        "xgb_sagemaker/xgboost-model",
        "xgb_categorical.model.json",
    ] {
        let bytes = read(name);
        assert!(load_xgboost(&bytes).is_ok(), "{name} loads whole");
        for len in (0..bytes.len()).step_by(17) {
            match load_xgboost(&bytes[..len]) {
                Err(TreeError::Truncated { .. } | TreeError::Invalid { .. }) => {}
                other => {
                    panic!("{name} cut at {len}: expected a truncated/invalid error, got {other:?}")
                }
            }
        }
    }
    // The bare end of a document is reported as truncation.
    let json = read("xgb_binary_logistic.model.json");
    assert!(matches!(
        load_xgboost(&json[..json.len() / 2]),
        Err(TreeError::Truncated { .. })
    ));
    let ubj = read("xgb_binary_logistic_ubj.model.ubj");
    assert!(matches!(
        load_xgboost(&ubj[..ubj.len() / 2]),
        Err(TreeError::Truncated { .. })
    ));
}

#[test]
fn corrupted_xgboost_files_are_errors_not_panics() {
    for name in [
        "xgb_multi_softprob.model.json",
        "xgb_multi_softmax.model.ubj",
        "xgb_categorical_onehot.model.ubj",
    ] {
        let bytes = read(name);
        // Flip bytes across the file; each result must be a clean Ok or a typed error.
        for at in (1..bytes.len()).step_by(13) {
            let mut bad = bytes.clone();
            bad[at] ^= 0x5a;
            let _ = load_xgboost(&bad);
        }
    }
    let json = String::from_utf8(read("xgb_reg_squarederror.model.json")).unwrap();
    let bad_child = json.replacen("\"left_children\":[1,", "\"left_children\":[9999,", 1);
    assert_ne!(bad_child, json);
    match load_xgboost(bad_child.as_bytes()) {
        Err(TreeError::Invalid { location, reason }) => {
            assert!(
                location.contains("trees[0]"),
                "location names the tree: {location}"
            );
            assert!(reason.contains("9999"), "{reason}");
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
    let missing = json.replacen("\"split_conditions\"", "\"split_conditionz\"", 1);
    assert!(
        matches!(load_xgboost(missing.as_bytes()), Err(TreeError::Invalid { reason, .. }) if reason.contains("split_conditions"))
    );
}

#[test]
fn absurd_feature_counts_are_refused_at_load() {
    let json = String::from_utf8(read("xgb_reg_squarederror.model.json")).unwrap();
    let wide = json.replace("\"num_feature\":\"5\"", "\"num_feature\":\"300000000\"");
    assert_ne!(wide, json);
    assert!(matches!(
        load_xgboost(wide.as_bytes()),
        Err(TreeError::Unsupported(_))
    ));
    let narrow = json.replace("\"num_feature\":\"5\"", "\"num_feature\":\"2\"");
    assert!(
        matches!(load_xgboost(narrow.as_bytes()), Err(TreeError::Invalid { reason, .. }) if reason.contains("feature"))
    );
}

#[test]
fn unknown_xgboost_objective_is_named() {
    let json = String::from_utf8(read("xgb_binary_logistic.model.json")).unwrap();
    let renamed = json.replace("\"binary:logistic\"", "\"binary:made_up\"");
    assert_eq!(
        load_xgboost(renamed.as_bytes()).unwrap_err(),
        TreeError::UnknownObjective("binary:made_up".into())
    );
}

#[test]
fn gblinear_and_legacy_binary_are_unsupported() {
    let json = String::from_utf8(read("xgb_reg_squarederror.model.json")).unwrap();
    let linear = json.replace("\"name\":\"gbtree\"", "\"name\":\"gblinear\"");
    assert!(
        matches!(load_xgboost(linear.as_bytes()), Err(TreeError::Unsupported(what)) if what.contains("gblinear"))
    );
    assert!(matches!(
        load_xgboost(b"binf\x00\x00\x00\x3f\x05\x00"),
        Err(TreeError::Unsupported(_))
    ));
}

#[test]
fn lightgbm_linear_trees_are_refused() {
    let err = load_lightgbm(&text("lgb_linear_tree.txt")).unwrap_err();
    assert!(
        matches!(&err, TreeError::Unsupported(what) if what.contains("linear")),
        "{err:?}"
    );
}

#[test]
fn absurd_class_counts_are_refused_at_load() {
    let model = text("lgb_multiclass.txt").replacen(
        "num_tree_per_iteration=3",
        "num_tree_per_iteration=1000000000000",
        1,
    );
    assert!(matches!(
        load_lightgbm(&model),
        Err(TreeError::Unsupported(_))
    ));
    let json = String::from_utf8(read("xgb_multi_softprob.model.json")).unwrap();
    let many = json.replace("\"num_class\":\"3\"", "\"num_class\":\"1000000000000\"");
    assert_ne!(many, json);
    assert!(matches!(
        load_xgboost(many.as_bytes()),
        Err(TreeError::Unsupported(_))
    ));
}

#[test]
fn unknown_lightgbm_objective_is_named() {
    let model =
        text("lgb_binary.txt").replacen("objective=binary sigmoid:1", "objective=frobnicate", 1);
    assert_eq!(
        load_lightgbm(&model).unwrap_err(),
        TreeError::UnknownObjective("frobnicate".into())
    );
}

#[test]
fn truncated_and_corrupted_lightgbm_files_are_errors() {
    let model = text("lgb_categorical_multiclass.txt");
    assert!(load_lightgbm(&model).is_ok());
    let end = model.find("end of trees").unwrap();
    for len in (0..end).step_by(11) {
        let cut = &model[..model.floor_char_boundary(len)];
        match load_lightgbm(cut) {
            Err(TreeError::Truncated { .. } | TreeError::Invalid { .. }) => {}
            other => panic!("cut at {len}: expected a truncated/invalid error, got {other:?}"),
        }
    }
    let bad = model.replacen("left_child=", "left_child=77 ", 1);
    assert!(matches!(
        load_lightgbm(&bad),
        Err(TreeError::Invalid { .. })
    ));
    let bad_cat =
        text("lgb_categorical.txt").replacen("cat_boundaries=0 1", "cat_boundaries=0 9", 1);
    assert!(matches!(
        load_lightgbm(&bad_cat),
        Err(TreeError::Invalid { .. })
    ));
    assert!(matches!(
        load_lightgbm("not a model"),
        Err(TreeError::Invalid { .. })
    ));
    assert!(matches!(
        load_lightgbm(""),
        Err(TreeError::Truncated { .. })
    ));
}

#[test]
fn wrong_feature_count_and_lengths_are_typed_errors() {
    let model = load_xgboost(&read("xgb_binary_logistic.model.json")).unwrap();
    let nf = model.num_features();
    let rows = vec![0.0f32; 2 * (nf + 1)];
    assert_eq!(
        model.predict(&rows, 2, nf + 1).unwrap_err(),
        TreeError::WrongFeatureCount {
            expected: nf,
            got: nf + 1
        }
    );
    assert_eq!(
        model.predict_margin(&rows, 2, nf - 1).unwrap_err(),
        TreeError::WrongFeatureCount {
            expected: nf,
            got: nf - 1
        }
    );
    assert_eq!(
        model.predict(&rows[..2 * nf - 1], 2, nf).unwrap_err(),
        TreeError::WrongInputLength {
            n_rows: 2,
            n_features: nf,
            got: 2 * nf - 1
        }
    );
    let mut out = vec![0.0; 3];
    assert_eq!(
        model
            .predict_into(&rows[..2 * nf], 2, nf, &mut out)
            .unwrap_err(),
        TreeError::WrongOutputLength {
            expected: 2,
            got: 3
        }
    );
    assert_eq!(model.predict(&[], 0, nf).unwrap(), Vec::<f32>::new());
    let lgb = load_lightgbm(&text("lgb_multiclass.txt")).unwrap();
    assert!(matches!(
        lgb.predict(&rows, 1, 2 * (nf + 1)),
        Err(TreeError::WrongFeatureCount { .. })
    ));
}

#[test]
fn load_model_tells_formats_apart_by_content() {
    assert_eq!(
        load_model(&read("lgb_binary.txt")).unwrap().format(),
        ModelFormat::LightGBM
    );
    assert_eq!(
        load_model(&read("xgb_sagemaker/xgboost-model"))
            .unwrap()
            .format(),
        ModelFormat::XGBoost
    );
    assert_eq!(
        load_model(&read("xgb_binary_logistic.model.json"))
            .unwrap()
            .format(),
        ModelFormat::XGBoost
    );
    assert!(matches!(
        load_model(b"tree\n\xff\xfe"),
        Err(TreeError::Invalid { .. })
    ));
    assert!(matches!(load_model(b""), Err(TreeError::Truncated { .. })));
}
