//! Native runtimes end to end: model files published to a store, loaded through the same
//! loader the server uses, predicted, and encoded in SageMaker's response shapes.
//!
//! - Tree fixtures (`fixtures/trees/`, made by `scripts/trees/make_fixtures.py`) match the
//!   reference library's `predict` to 1e-6 relative and the library predictor exactly.
//! - Built-in algorithms are trained on `fixtures/builtin/` splits (`builtin::train`),
//!   published as the job runner publishes them, loaded back and compared with
//!   `load_predictor`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use pier_algorithms::builtin::{Algorithm, Dataset, Predictions, load_predictor, train};
use pier_algorithms::trees::load_model;
use pier_model_store::{Artifact, ArtifactFile, ManifestDraft, ModelStore, VersionSelector};
use pier_runtimes::codec::{Format, decode_features, encode_outputs};
use pier_runtimes::{LoadOptions, Model, RuntimeError, Tensor, TensorData, load, native};
use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
}

fn case(name: &str) -> Value {
    let path = root().join("trees").join(format!("{name}.case.json"));
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Publishes a model file as `import` does: signature and properties from the file.
fn publish_file(store: &ModelStore, name: &str, runtime: &str, path: &Path) -> Artifact {
    let info = native::inspect(runtime, path).unwrap();
    let file_name = path.file_name().unwrap().to_string_lossy().into_owned();
    store
        .publish(
            name,
            vec![ArtifactFile::from_path(file_name, path)],
            ManifestDraft {
                runtime: runtime.into(),
                signature: info.signature.to_manifest(),
                properties: info.properties,
                ..Default::default()
            },
        )
        .unwrap();
    store.open_version(name, VersionSelector::Latest).unwrap()
}

fn load_tree_case(store: &ModelStore, name: &str) -> (Value, Arc<dyn Model>) {
    let c = case(name);
    let runtime = c["library"].as_str().unwrap().to_owned();
    let path = root().join("trees").join(c["model_file"].as_str().unwrap());
    let artifact = publish_file(store, &name.replace('_', "-"), &runtime, &path);
    (c, load(&artifact, &LoadOptions::default()).unwrap())
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().map_or(f32::NAN, |f| f as f32))
        .collect()
}

fn f32s(t: &Tensor) -> &[f32] {
    t.as_f32().unwrap()
}

#[test]
fn every_tree_fixture_matches_the_reference_library() {
    let dir = tempfile::tempdir().unwrap();
    let store = ModelStore::open(dir.path()).unwrap();
    let mut names: Vec<String> = std::fs::read_dir(root().join("trees"))
        .unwrap()
        .filter_map(|e| {
            let n = e.unwrap().file_name().to_string_lossy().into_owned();
            n.strip_suffix(".case.json").map(str::to_owned)
        })
        .collect();
    names.sort();
    assert!(names.len() >= 30, "{names:?}");
    for name in &names {
        let (c, model) = load_tree_case(&store, name);
        let (rows, n_features) = (
            c["n_rows"].as_u64().unwrap() as usize,
            c["n_features"].as_u64().unwrap() as usize,
        );
        let inputs = floats(&c["inputs"]);
        let sig = model.signature();
        assert_eq!(sig.inputs[0].shape, vec![-1, n_features as i64], "{name}");
        let x = Tensor::from_f32_rows(rows, n_features, inputs.clone()).unwrap();
        let out = model.predict(vec![x]).unwrap();
        let width = c["num_outputs"].as_u64().unwrap() as usize;
        let want_shape = if width == 1 {
            vec![rows]
        } else {
            vec![rows, width]
        };
        assert_eq!(out[0].shape(), want_shape.as_slice(), "{name}");
        let reference = c["predict"].as_array().unwrap();
        for (i, (g, w)) in f32s(&out[0]).iter().zip(reference).enumerate() {
            let w = w.as_f64().unwrap();
            let err = (f64::from(*g) - w).abs() / w.abs().max(1.0);
            assert!(err <= 1e-6, "{name} value {i}: {g} vs {w}");
        }
        let path = root().join("trees").join(c["model_file"].as_str().unwrap());
        let library = load_model(&std::fs::read(path).unwrap()).unwrap();
        assert_eq!(
            f32s(&out[0]),
            library.predict(&inputs, rows, n_features).unwrap(),
            "{name}: the runtime must return the library predictor's values"
        );
    }
}

#[test]
fn imports_record_feature_and_class_counts() {
    let dir = tempfile::tempdir().unwrap();
    let store = ModelStore::open(dir.path()).unwrap();
    let path = root().join("trees/xgb_sagemaker/xgboost-model");
    let artifact = publish_file(&store, "sm", "xgboost", &path);
    let p = &artifact.manifest().properties;
    assert_eq!(p["num_features"], 5);
    assert_eq!(p["num_outputs"], 1);
    assert_eq!(p["objective"], "binary:logistic");
    let path = root().join("trees/lgb_multiclass.txt");
    let info = native::inspect("lightgbm", &path).unwrap();
    assert_eq!(info.properties["num_outputs"], 3);
    assert_eq!(info.properties["num_classes"], 3);
    // The wrong runtime for the file is refused at inspect and at load.
    let err = native::inspect("xgboost", &path).unwrap_err();
    assert!(err.to_string().contains("use Image \"lightgbm\""), "{err}");
}

/// Encodes the outputs of `model` for `inputs` in `format`.
fn encode(model: &dyn Model, outputs: &[Tensor], format: Format) -> String {
    let named: Vec<(&str, &Tensor)> = model
        .signature()
        .outputs
        .iter()
        .map(|o| o.name.as_str())
        .zip(outputs)
        .collect();
    String::from_utf8(encode_outputs(format, &named, &model.json_layout()).unwrap()).unwrap()
}

#[test]
fn tree_responses_have_sagemaker_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let store = ModelStore::open(dir.path()).unwrap();
    let (_, binary) = load_tree_case(&store, "xgb_binary_logistic");
    let x = Tensor::from_f32_rows(2, 5, vec![0.0; 10]).unwrap();
    let out = binary.predict(vec![x]).unwrap();
    let p = f32s(&out[0])[0];
    assert_eq!(
        encode(binary.as_ref(), &out, Format::Json),
        format!(r#"{{"predictions":[{{"score":{p}}},{{"score":{p}}}]}}"#)
    );
    assert_eq!(
        encode(binary.as_ref(), &out, Format::Csv),
        format!("{p}\n{p}\n")
    );
    assert_eq!(
        encode(binary.as_ref(), &out, Format::JsonLines),
        format!("{{\"score\":{p}}}\n{{\"score\":{p}}}\n")
    );

    let (_, softprob) = load_tree_case(&store, "xgb_multi_softprob");
    let out = softprob
        .predict(vec![Tensor::from_f32_rows(1, 5, vec![0.5; 5]).unwrap()])
        .unwrap();
    let v = f32s(&out[0]);
    assert_eq!(
        encode(softprob.as_ref(), &out, Format::Json),
        format!(
            r#"{{"predictions":[{{"score":[{},{},{}]}}]}}"#,
            v[0], v[1], v[2]
        )
    );
    assert_eq!(
        encode(softprob.as_ref(), &out, Format::Csv),
        format!("{},{},{}\n", v[0], v[1], v[2])
    );

    let (_, softmax) = load_tree_case(&store, "xgb_multi_softmax");
    let out = softmax
        .predict(vec![Tensor::from_f32_rows(1, 5, vec![0.5; 5]).unwrap()])
        .unwrap();
    let label = f32s(&out[0])[0];
    assert_eq!(label.fract(), 0.0);
    assert_eq!(
        encode(softmax.as_ref(), &out, Format::Json),
        format!(r#"{{"predictions":[{{"score":{}}}]}}"#, label as i64)
    );
}

#[test]
fn missing_values_from_csv_and_json_are_nan() {
    let dir = tempfile::tempdir().unwrap();
    let store = ModelStore::open(dir.path()).unwrap();
    for name in ["xgb_sagemaker", "lgb_binary"] {
        let (_, model) = load_tree_case(&store, name);
        let nan = Tensor::from_f32_rows(
            2,
            5,
            vec![
                0.5,
                f32::NAN,
                -1.0,
                f32::NAN,
                2.0, //
                f32::NAN,
                f32::NAN,
                f32::NAN,
                f32::NAN,
                f32::NAN,
            ],
        )
        .unwrap();
        let want = model.predict(vec![nan]).unwrap();
        let features = model.signature().inputs[0].features();
        let csv = decode_features(Format::Csv, b"0.5,,-1,,2\n,,,,\n", features).unwrap();
        let json = decode_features(
            Format::Json,
            br#"{"instances": [[0.5, null, -1, null, 2], [null, null, null, null, null]]}"#,
            features,
        )
        .unwrap();
        for input in [csv, json] {
            assert_eq!(model.predict(vec![input]).unwrap(), want, "{name}");
        }
        let err = decode_features(Format::Csv, b"1,2,3\n", features).unwrap_err();
        assert!(err.to_string().contains("the model takes 5"), "{err}");
    }
}

fn builtin_fixture(name: &str) -> PathBuf {
    root().join("builtin").join(name)
}

fn hp(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Trains, publishes, loads through the loader; predicts the test split both through the
/// runtime and through `load_predictor` directly; returns the model, the runtime's outputs
/// and the predictor's.
fn train_serve(
    store: &ModelStore,
    algorithm: Algorithm,
    data: &str,
    params: &[(&str, &str)],
) -> (Arc<dyn Model>, Vec<Tensor>, Predictions) {
    let read = |split: &str| {
        let bytes = std::fs::read(builtin_fixture(&format!("{data}_{split}.csv"))).unwrap();
        Dataset::from_csv(&bytes, algorithm.supervised()).unwrap()
    };
    let (train_set, test_set) = (read("train"), read("test"));
    let trained = train(algorithm, &hp(params), &train_set, Some(&test_set), &|_| {}).unwrap();
    assert!(!trained.metrics.is_empty());
    let runtime = algorithm.image_name();
    let info = native::inspect_bytes(runtime, &trained.artifact, trained.file_name).unwrap();
    let name = format!("{algorithm}-{data}").replace('_', "-");
    let m = store
        .publish(
            &name,
            vec![ArtifactFile::from_bytes(
                trained.file_name,
                trained.artifact,
            )],
            ManifestDraft {
                runtime: runtime.into(),
                signature: info.signature.to_manifest(),
                properties: info.properties,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(m.runtime, algorithm.image_name());
    let artifact = store
        .open_version(&m.name, VersionSelector::Exact(m.version))
        .unwrap();
    let model = load(&artifact, &LoadOptions::default()).unwrap();
    let test = std::fs::read(builtin_fixture(&format!("{data}_test.csv"))).unwrap();
    let test = Dataset::from_csv(&test, algorithm.supervised()).unwrap();
    let x = Tensor::from_f32_rows(test.n_rows(), test.n_cols(), test.features().to_vec()).unwrap();
    let outputs = model.predict(vec![x]).unwrap();
    let bytes = std::fs::read(artifact.primary_path().unwrap()).unwrap();
    let direct = load_predictor(algorithm, &bytes)
        .unwrap()
        .predict(test.features(), test.n_rows())
        .unwrap();
    (model, outputs, direct)
}

fn first_record(model: &dyn Model, outputs: &[Tensor]) -> (String, Value) {
    let json: Value = serde_json::from_str(&encode(model, outputs, Format::Json)).unwrap();
    let (key, rows) = json.as_object().unwrap().iter().next().unwrap();
    (key.clone(), rows[0].clone())
}

#[test]
fn linear_learner_and_fm_serve_scores_and_labels() {
    let dir = tempfile::tempdir().unwrap();
    let store = ModelStore::open(dir.path()).unwrap();
    let binary = [("predictor_type", "binary_classifier"), ("epochs", "5")];
    for (algorithm, data, params) in [
        (Algorithm::LinearLearner, "breast_cancer", &binary[..]),
        (
            Algorithm::LinearLearner,
            "wine",
            &[
                ("predictor_type", "multiclass_classifier"),
                ("num_classes", "3"),
                ("epochs", "5"),
            ][..],
        ),
        (
            Algorithm::LinearLearner,
            "diabetes",
            &[("predictor_type", "regressor"), ("epochs", "5")][..],
        ),
        (
            Algorithm::FactorizationMachines,
            "breast_cancer",
            &[
                ("predictor_type", "binary_classifier"),
                ("num_factors", "4"),
            ][..],
        ),
        (
            Algorithm::FactorizationMachines,
            "diabetes",
            &[("predictor_type", "regressor"), ("num_factors", "4")][..],
        ),
    ] {
        let (model, outputs, direct) = train_serve(&store, algorithm, data, params);
        let Predictions::Scores {
            width,
            scores,
            predicted_label,
        } = direct
        else {
            panic!("{algorithm}: scores expected");
        };
        assert_eq!(f32s(&outputs[0]), scores.as_slice(), "{algorithm} {data}");
        let (key, record) = first_record(model.as_ref(), &outputs);
        assert_eq!(key, "predictions");
        match predicted_label {
            Some(labels) => {
                assert_eq!(f32s(&outputs[1]), labels.as_slice());
                assert_eq!(record.as_object().unwrap().len(), 2, "{record}");
                // SageMaker's key order: score, then predicted_label.
                let text = encode(model.as_ref(), &outputs, Format::Json);
                assert!(
                    text.starts_with(r#"{"predictions":[{"score":"#)
                        && text.contains(r#","predicted_label":"#),
                    "{text}"
                );
                assert_eq!(record["predicted_label"], labels[0] as i64, "{record}");
            }
            None => {
                assert_eq!(outputs.len(), 1);
                assert_eq!(record.as_object().unwrap().len(), 1, "{record}");
            }
        }
        if width > 1 {
            assert_eq!(record["score"].as_array().unwrap().len(), width);
        } else {
            assert!(record["score"].is_number(), "{record}");
        }
    }
}

#[test]
fn kmeans_and_pca_serve_clusters_and_projections() {
    let dir = tempfile::tempdir().unwrap();
    let store = ModelStore::open(dir.path()).unwrap();
    let (model, outputs, direct) = train_serve(&store, Algorithm::KMeans, "wine", &[("k", "3")]);
    let Predictions::Clusters {
        closest_cluster,
        distance_to_cluster,
    } = direct
    else {
        panic!("clusters expected");
    };
    let got: Vec<u32> = match outputs[0].data() {
        TensorData::Int64(v) => v.iter().map(|&c| c as u32).collect(),
        other => panic!("closest_cluster is {other:?}"),
    };
    assert_eq!(got, closest_cluster);
    assert_eq!(f32s(&outputs[1]), distance_to_cluster.as_slice());
    let (key, record) = first_record(model.as_ref(), &outputs);
    assert_eq!(key, "predictions");
    assert_eq!(record["closest_cluster"], closest_cluster[0]);
    assert!(record["distance_to_cluster"].is_number(), "{record}");

    let (model, outputs, direct) =
        train_serve(&store, Algorithm::Pca, "wine", &[("num_components", "2")]);
    let Predictions::Projections { dim, projections } = direct else {
        panic!("projections expected");
    };
    assert_eq!(dim, 2);
    assert_eq!(outputs[0].shape()[1], 2);
    assert_eq!(f32s(&outputs[0]), projections.as_slice());
    let (key, record) = first_record(model.as_ref(), &outputs);
    assert_eq!(key, "projections");
    assert_eq!(record["projection"].as_array().unwrap().len(), 2);
    // Dense algorithms refuse a missing value as bad input, not a model failure.
    let n = model.signature().inputs[0].features().unwrap();
    let mut row = vec![1.0; n];
    row[1] = f32::NAN;
    let err = model
        .predict(vec![Tensor::from_f32_rows(1, n, row).unwrap()])
        .unwrap_err();
    assert!(matches!(err, RuntimeError::InvalidInput(_)), "{err}");
}

#[test]
fn builtin_xgboost_is_served_by_the_tree_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let store = ModelStore::open(dir.path()).unwrap();
    let (model, outputs, direct) = train_serve(
        &store,
        Algorithm::XGBoost,
        "breast_cancer_missing",
        &[("num_round", "10"), ("objective", "binary:logistic")],
    );
    let Predictions::Scores { scores, .. } = direct else {
        panic!("scores expected");
    };
    for (g, w) in f32s(&outputs[0]).iter().zip(&scores) {
        assert!((g - w).abs() <= 1e-6 * w.abs().max(1.0), "{g} vs {w}");
    }
    let (_, record) = first_record(model.as_ref(), &outputs);
    assert!(record["score"].is_number(), "{record}");
}
