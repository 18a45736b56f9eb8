//! The common API of the built-in algorithms: bad hyperparameters and bad CSV are typed
//! errors naming the hyperparameter or the line and column; artifacts round-trip exactly and
//! refuse other formats and versions; training is deterministic for a seed.

use std::collections::BTreeMap;

use pier_algorithms::builtin::{
    Algorithm, Dataset, Predictions, TrainError, load_predictor, train,
};

fn hp(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
    kv.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// 200 rows, 4 features, label = 1 when x0 + x1 > 0, plus a regression-friendly spread.
fn data() -> Dataset {
    let mut f = Vec::new();
    let mut l = Vec::new();
    let mut s = 12345u64;
    let mut next = || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((s >> 33) as f64 / (1u64 << 31) as f64 * 2.0 - 1.0) as f32
    };
    for _ in 0..200 {
        let row = [next(), next(), next(), next()];
        l.push(if row[0] + row[1] > 0.0 { 1.0 } else { 0.0 });
        f.extend(row);
    }
    Dataset::new(f, 4, Some(l)).unwrap()
}

fn good_hp(a: Algorithm) -> BTreeMap<String, String> {
    match a {
        Algorithm::LinearLearner => hp(&[
            ("predictor_type", "binary_classifier"),
            ("mini_batch_size", "20"),
        ]),
        Algorithm::KMeans => hp(&[("k", "3")]),
        Algorithm::Pca => hp(&[("num_components", "2")]),
        Algorithm::FactorizationMachines => hp(&[
            ("predictor_type", "binary_classifier"),
            ("num_factors", "2"),
            ("epochs", "20"),
            ("mini_batch_size", "20"),
            ("linear_lr", "0.05"),
        ]),
        Algorithm::XGBoost => hp(&[
            ("objective", "binary:logistic"),
            ("num_round", "5"),
            ("max_depth", "3"),
        ]),
    }
}

fn unlabelled(d: &Dataset) -> Dataset {
    Dataset::new(d.features().to_vec(), d.n_cols(), None).unwrap()
}

#[test]
fn every_algorithm_round_trips_its_artifact_and_is_deterministic() {
    let d = data();
    for a in Algorithm::ALL {
        let train_set = if a.supervised() {
            d.clone()
        } else {
            unlabelled(&d)
        };
        let m = train(a, &good_hp(a), &train_set, None, &|_| {}).unwrap();
        assert_eq!(m.file_name, a.artifact_file_name());
        assert!(
            m.metrics.keys().any(|k| k.starts_with("train:")),
            "{a}: {:?}",
            m.metrics
        );
        let again = train(a, &good_hp(a), &train_set, None, &|_| {}).unwrap();
        assert_eq!(
            m.artifact, again.artifact,
            "{a}: training is not deterministic"
        );
        let p1 = load_predictor(a, &m.artifact).unwrap();
        assert_eq!(p1.algorithm(), a);
        assert_eq!(p1.n_features(), 4);
        let out = p1.predict(d.features(), d.n_rows()).unwrap();
        let p2 = load_predictor(a, &again.artifact).unwrap();
        assert_eq!(out, p2.predict(d.features(), d.n_rows()).unwrap());
        match (a, &out) {
            (
                Algorithm::KMeans,
                Predictions::Clusters {
                    closest_cluster,
                    distance_to_cluster,
                },
            ) => {
                assert_eq!(closest_cluster.len(), 200);
                assert!(
                    closest_cluster.iter().all(|&c| c < 3)
                        && distance_to_cluster.iter().all(|&x| x >= 0.0)
                );
            }
            (
                Algorithm::Pca,
                Predictions::Projections {
                    dim: 2,
                    projections,
                },
            ) => assert_eq!(projections.len(), 400),
            (
                _,
                Predictions::Scores {
                    width: 1,
                    scores,
                    predicted_label: Some(l),
                },
            ) => {
                assert!(scores.iter().all(|s| (0.0..=1.0).contains(s)));
                let acc = l
                    .iter()
                    .zip(d.labels().unwrap())
                    .filter(|(a, b)| a == b)
                    .count();
                assert!(acc > 150, "{a}: {acc}/200 correct");
            }
            _ => panic!("{a}: unexpected prediction shape {out:?}"),
        }
        // A wrong-width batch is a typed error, not a panic.
        assert!(matches!(
            p1.predict(&[1.0, 2.0, 3.0], 1),
            Err(TrainError::Input(_))
        ));
    }
}

#[test]
fn the_seed_drives_sampling() {
    let d = data();
    let with_seed = |seed: &str| {
        let mut h = good_hp(Algorithm::XGBoost);
        h.insert("subsample".into(), "0.5".into());
        h.insert("colsample_bytree".into(), "0.5".into());
        h.insert("seed".into(), seed.into());
        train(Algorithm::XGBoost, &h, &d, None, &|_| {})
            .unwrap()
            .artifact
    };
    assert_eq!(with_seed("7"), with_seed("7"));
    assert_ne!(with_seed("7"), with_seed("8"));
}

#[test]
fn artifacts_of_other_formats_or_versions_are_refused() {
    let d = data();
    let ll = train(
        Algorithm::LinearLearner,
        &good_hp(Algorithm::LinearLearner),
        &d,
        None,
        &|_| {},
    )
    .unwrap();
    let e = load_predictor(Algorithm::KMeans, &ll.artifact)
        .err()
        .unwrap();
    assert!(
        matches!(&e, TrainError::Artifact(m) if m.contains("pier-linear-learner") && m.contains("pier-kmeans")),
        "{e}"
    );
    let newer = String::from_utf8(ll.artifact.clone())
        .unwrap()
        .replace("\"format_version\":1", "\"format_version\":2");
    let e = load_predictor(Algorithm::LinearLearner, newer.as_bytes())
        .err()
        .unwrap();
    assert!(
        matches!(&e, TrainError::Artifact(m) if m.contains("format_version 2")),
        "{e}"
    );
    assert!(matches!(
        load_predictor(Algorithm::Pca, b"{not json"),
        Err(TrainError::Artifact(_))
    ));
    let e = load_predictor(Algorithm::XGBoost, b"{\"learner\":{}}")
        .err()
        .unwrap();
    assert!(matches!(e, TrainError::Artifact(_)), "{e}");
    // A truncated weight vector is caught at load, not at predict.
    let short =
        String::from_utf8(ll.artifact)
            .unwrap()
            .replacen("\"weights\":[", "\"weights\":[0.5,", 1);
    assert!(matches!(
        load_predictor(Algorithm::LinearLearner, short.as_bytes()),
        Err(TrainError::Artifact(_))
    ));
}

/// An algorithm, its hyperparameters and the name the error must carry.
type Case = (Algorithm, Vec<(&'static str, &'static str)>, &'static str);

#[test]
fn bad_hyperparameters_name_the_hyperparameter() {
    let d = data();
    let cases: Vec<Case> = vec![
        (
            Algorithm::LinearLearner,
            vec![("predictor_type", "classifier")],
            "predictor_type",
        ),
        (
            Algorithm::LinearLearner,
            vec![("predictor_type", "regressor"), ("epochs", "-1")],
            "epochs",
        ),
        (
            Algorithm::LinearLearner,
            vec![("predictor_type", "regressor"), ("learning_rate", "0")],
            "learning_rate",
        ),
        (
            Algorithm::LinearLearner,
            vec![("predictor_type", "regressor"), ("optimizer", "rmsprop")],
            "optimizer",
        ),
        (Algorithm::KMeans, vec![("k", "three")], "k"),
        (
            Algorithm::KMeans,
            vec![("k", "2"), ("init_method", "farthest")],
            "init_method",
        ),
        (
            Algorithm::Pca,
            vec![("num_components", "2"), ("algorithm_mode", "fast")],
            "algorithm_mode",
        ),
        (
            Algorithm::Pca,
            vec![("num_components", "9")],
            "num_components",
        ),
        (
            Algorithm::FactorizationMachines,
            vec![
                ("predictor_type", "regressor"),
                ("num_factors", "2"),
                ("bias_lr", "x"),
            ],
            "bias_lr",
        ),
        (
            Algorithm::XGBoost,
            vec![("num_round", "5"), ("eta", "1.5")],
            "eta",
        ),
        (
            Algorithm::XGBoost,
            vec![("num_round", "5"), ("objective", "multi:softprob")],
            "num_class",
        ),
        (
            Algorithm::XGBoost,
            vec![("num_round", "5"), ("max_depth", "0")],
            "max_depth",
        ),
    ];
    for (a, kv, name) in cases {
        let set = if a.supervised() {
            d.clone()
        } else {
            unlabelled(&d)
        };
        let e = train(a, &hp(&kv), &set, None, &|_| {})
            .err()
            .unwrap_or_else(|| panic!("{a} {kv:?} trained"));
        match &e {
            TrainError::BadHyperparameter { name: n, .. } => assert_eq!(n, name, "{e}"),
            TrainError::MissingHyperparameter { name: n } => assert_eq!(*n, name, "{e}"),
            other => panic!("{a} {kv:?}: {other}"),
        }
        assert!(e.to_string().contains(&format!("`{name}`")), "{e}");
    }
    let e = train(
        Algorithm::KMeans,
        &hp(&[("k", "2"), ("kk", "3")]),
        &unlabelled(&d),
        None,
        &|_| {},
    )
    .err()
    .unwrap();
    assert!(
        matches!(&e, TrainError::UnknownHyperparameter { name, .. } if name == "kk"),
        "{e}"
    );
    let e = train(
        Algorithm::XGBoost,
        &hp(&[("objective", "binary:logistic")]),
        &d,
        None,
        &|_| {},
    )
    .err()
    .unwrap();
    assert_eq!(e, TrainError::MissingHyperparameter { name: "num_round" });
    assert!(matches!(
        "k-means".parse::<Algorithm>(),
        Err(TrainError::UnknownAlgorithm(_))
    ));
}

#[test]
fn bad_csv_names_line_and_column() {
    let e = Dataset::from_csv(b"1,0.5,0.25\n0,0.1,abc\n", true).unwrap_err();
    assert!(
        matches!(
            e,
            TrainError::Csv {
                line: 2,
                column: 3,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("line 2, column 3"), "{e}");
    let e = Dataset::from_csv(b"1,2\n,3\n", true).unwrap_err();
    assert!(
        matches!(
            e,
            TrainError::Csv {
                line: 2,
                column: 1,
                ..
            }
        ),
        "{e}"
    );
    let e = Dataset::from_csv(b"1,2,3\n1,2,3,4\n", false).unwrap_err();
    assert!(
        matches!(
            e,
            TrainError::Csv {
                line: 2,
                column: 4,
                ..
            }
        ),
        "{e}"
    );
    assert!(matches!(
        Dataset::from_csv(b"", true),
        Err(TrainError::Csv { .. })
    ));
    assert!(matches!(
        Dataset::from_csv(b"1\n2\n", true),
        Err(TrainError::Csv { .. })
    ));
    // Labels out of range for the objective are a data error naming the channel.
    let d = Dataset::from_csv(b"2,0.1\n0,0.2\n", true).unwrap();
    let e = train(
        Algorithm::LinearLearner,
        &hp(&[("predictor_type", "binary_classifier")]),
        &d,
        None,
        &|_| {},
    )
    .err()
    .unwrap();
    assert!(
        matches!(
            &e,
            TrainError::Data {
                channel: "train",
                ..
            }
        ),
        "{e}"
    );
    // GBDT accepts missing values; k-means refuses them with a data error.
    let d = Dataset::from_csv(b"1,,0.2\n0,0.3,\n1,0.5,0.5\n0,0.1,0.1\n", true).unwrap();
    let m = train(
        Algorithm::XGBoost,
        &hp(&[
            ("objective", "binary:logistic"),
            ("num_round", "2"),
            ("min_child_weight", "0"),
        ]),
        &d,
        None,
        &|_| {},
    )
    .unwrap();
    let p = load_predictor(Algorithm::XGBoost, &m.artifact).unwrap();
    assert!(p.predict(&[f32::NAN, f32::NAN], 1).is_ok());
    let e = train(
        Algorithm::KMeans,
        &hp(&[("k", "2")]),
        &unlabelled(&d),
        None,
        &|_| {},
    )
    .err()
    .unwrap();
    assert!(matches!(e, TrainError::Data { .. }), "{e}");
}

#[test]
fn progress_is_reported_and_early_stopping_keeps_the_best_epoch() {
    let d = data();
    let reports = std::cell::RefCell::new(Vec::new());
    let h = hp(&[
        ("predictor_type", "binary_classifier"),
        ("epochs", "200"),
        ("mini_batch_size", "200"),
        ("early_stopping_patience", "2"),
        ("early_stopping_tolerance", "0.5"),
    ]);
    train(Algorithm::LinearLearner, &h, &d, Some(&d), &|p| {
        reports.borrow_mut().push(p)
    })
    .unwrap();
    let r = reports.into_inner();
    assert!(
        !r.is_empty() && r.len() < 200,
        "early stopping did not stop: {} epochs",
        r.len()
    );
    assert!(r.iter().all(|p| p.metrics.contains_key("train:progress")
        && p.metrics.contains_key("validation:objective_loss")));
}

#[test]
fn linear_learner_regressor_recovers_coefficients_and_l1_sparsifies() {
    let d = data();
    let f = d.features();
    let y: Vec<f32> = f.chunks(4).map(|r| 3.0 * r[0] - 2.0 * r[1] + 5.0).collect();
    let reg = Dataset::new(f.to_vec(), 4, Some(y)).unwrap();
    let h = hp(&[
        ("predictor_type", "regressor"),
        ("mini_batch_size", "10"),
        ("epochs", "60"),
        ("learning_rate", "0.05"),
    ]);
    let m = train(Algorithm::LinearLearner, &h, &reg, Some(&reg), &|_| {}).unwrap();
    assert!(m.metrics["validation:rmse"] < 0.05, "{:?}", m.metrics);
    let p = load_predictor(Algorithm::LinearLearner, &m.artifact).unwrap();
    let Predictions::Scores {
        scores,
        predicted_label,
        ..
    } = p.predict(&[1.0, 1.0, 0.0, 0.0], 1).unwrap()
    else {
        panic!("not scores")
    };
    assert!(
        (scores[0] - 6.0).abs() < 0.1 && predicted_label.is_none(),
        "{scores:?}"
    );

    // A strong L1 penalty zeroes the two irrelevant features.
    let h = hp(&[
        ("predictor_type", "regressor"),
        ("mini_batch_size", "10"),
        ("epochs", "60"),
        ("l1", "0.5"),
        ("normalize_data", "false"),
        ("normalize_label", "false"),
    ]);
    let m = train(Algorithm::LinearLearner, &h, &reg, None, &|_| {}).unwrap();
    let model: serde_json::Value = serde_json::from_slice(&m.artifact).unwrap();
    let w: Vec<f64> = model["model"]["weights"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert!(
        w[2].abs() < 1e-3 && w[3].abs() < 1e-3 && w[0] > 1.0,
        "{w:?}"
    );
}

#[test]
fn gbdt_early_stopping_keeps_the_best_rounds() {
    // Labels are noise: the validation loss stops improving almost at once.
    let d = data();
    let noisy: Vec<f32> = (0..200).map(|i| ((i * 7919) % 13 % 2) as f32).collect();
    let train_set = Dataset::new(d.features().to_vec(), 4, Some(noisy)).unwrap();
    let h = hp(&[
        ("objective", "binary:logistic"),
        ("num_round", "200"),
        ("early_stopping_rounds", "3"),
        ("eta", "0.5"),
    ]);
    let m = train(Algorithm::XGBoost, &h, &train_set, Some(&d), &|_| {}).unwrap();
    let json: serde_json::Value = serde_json::from_slice(&m.artifact).unwrap();
    let trees = json["learner"]["gradient_booster"]["model"]["trees"]
        .as_array()
        .unwrap()
        .len();
    assert!(trees < 200, "{trees} trees");
    assert!(m.metrics.contains_key("validation:auc"));
}

#[test]
fn kmeans_reports_test_metrics_on_the_validation_channel() {
    let d = unlabelled(&data());
    let m = train(
        Algorithm::KMeans,
        &hp(&[
            ("k", "4"),
            ("init_method", "kmeans++"),
            ("epochs", "2"),
            ("mini_batch_size", "50"),
        ]),
        &d,
        Some(&d),
        &|_| {},
    )
    .unwrap();
    assert!(
        (m.metrics["test:msd"] - m.metrics["train:msd"]).abs() < 1e-9,
        "{:?}",
        m.metrics
    );
    assert!((m.metrics["test:ssd"] - 200.0 * m.metrics["test:msd"]).abs() < 1e-6);
}

#[test]
fn scale_pos_weight_raises_positive_scores_and_is_saved() {
    let d = data();
    let mean_score = |w: &str| {
        let mut h = good_hp(Algorithm::XGBoost);
        h.insert("scale_pos_weight".into(), w.into());
        let m = train(Algorithm::XGBoost, &h, &d, None, &|_| {}).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&m.artifact).unwrap();
        assert_eq!(
            json["learner"]["objective"]["reg_loss_param"]["scale_pos_weight"],
            w
        );
        let p = load_predictor(Algorithm::XGBoost, &m.artifact).unwrap();
        let Predictions::Scores { scores, .. } = p.predict(d.features(), 200).unwrap() else {
            panic!()
        };
        scores.iter().sum::<f32>() / 200.0
    };
    let (five, one) = (mean_score("5"), mean_score("1"));
    assert!(five > one + 0.02, "{five} vs {one}");
    let e = train(
        Algorithm::LinearLearner,
        &hp(&[("predictor_type", "regressor"), ("loss", "logistic")]),
        &d,
        None,
        &|_| {},
    )
    .err()
    .unwrap();
    assert!(
        matches!(&e, TrainError::BadHyperparameter { name, .. } if name == "loss"),
        "{e}"
    );
}

/// `n` rows of `d` features from a fixed LCG; label 1 when the first two features sum > 0.
fn wide(n: usize, d: usize) -> Dataset {
    let mut s = 99u64;
    let mut f = Vec::with_capacity(n * d);
    let mut l = Vec::with_capacity(n);
    for _ in 0..n {
        let row: Vec<f32> = (0..d)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 33) as f64 / (1u64 << 31) as f64 * 2.0 - 1.0) as f32
            })
            .collect();
        l.push(if row[0] + row[1] > 0.0 { 1.0 } else { 0.0 });
        f.extend(row);
    }
    Dataset::new(f, d, Some(l)).unwrap()
}

#[test]
fn artifacts_do_not_depend_on_the_number_of_threads() {
    // Large enough for several PCA and k-means chunks and GBDT feature blocks.
    let d = wide(6000, 24);
    for a in Algorithm::ALL {
        let set = if a.supervised() {
            d.clone()
        } else {
            unlabelled(&d)
        };
        let mut h = good_hp(a);
        if a == Algorithm::XGBoost {
            h.insert("subsample".into(), "0.8".into());
        }
        if a == Algorithm::Pca {
            h.insert("mini_batch_size".into(), "500".into());
        }
        let with_threads = |n: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build()
                .unwrap();
            pool.install(|| train(a, &h, &set, Some(&set), &|_| {}).unwrap())
        };
        let (one, three) = (with_threads(1), with_threads(3));
        assert_eq!(one.artifact, three.artifact, "{a}");
        assert_eq!(one.metrics, three.metrics, "{a}");
    }
}

#[test]
fn dense_models_refuse_missing_values_at_predict_time() {
    let d = data();
    for a in [
        Algorithm::LinearLearner,
        Algorithm::KMeans,
        Algorithm::Pca,
        Algorithm::FactorizationMachines,
    ] {
        let set = if a.supervised() {
            d.clone()
        } else {
            unlabelled(&d)
        };
        let m = train(a, &good_hp(a), &set, None, &|_| {}).unwrap();
        let p = load_predictor(a, &m.artifact).unwrap();
        let e = p
            .predict(&[0.1, 0.2, 0.3, 0.4, 0.5, f32::NAN, 0.1, 0.1], 2)
            .err()
            .unwrap();
        assert!(
            matches!(&e, TrainError::Input(m) if m.contains("row 2, feature 2")),
            "{a}: {e}"
        );
    }
}
