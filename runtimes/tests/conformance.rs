//! The conformance suite: every ONNX fixture through every available backend, compared with
//! onnxruntime's reference outputs (made by `scripts/make_fixtures.py`).
//!
//! Each fixture is published to a fresh store and loaded through the same loader the server
//! uses, so this covers store → loader → backend → outputs.

mod common;

use common::{fixtures, publish};

use std::sync::Arc;

use pier_model_store::{ArtifactFile, ManifestDraft, ModelStore, VersionSelector};
use pier_runtimes::{
    Backend, DataType, LoadOptions, Model, RuntimeError, Tensor, TensorData, load,
};
use serde_json::Value;

const TOLERANCE: f64 = 1e-5;

fn tensor(v: &Value) -> Tensor {
    let dtype = DataType::parse(v["datatype"].as_str().unwrap()).unwrap();
    let shape: Vec<usize> = v["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_u64().unwrap() as usize)
        .collect();
    let data = v["data"].as_array().unwrap();
    let f = |x: &Value| x.as_f64().unwrap();
    let data = match dtype {
        DataType::Fp32 => TensorData::Fp32(data.iter().map(|x| f(x) as f32).collect()),
        DataType::Fp64 => TensorData::Fp64(data.iter().map(f).collect()),
        DataType::Int64 => TensorData::Int64(data.iter().map(|x| x.as_i64().unwrap()).collect()),
        DataType::Int32 => {
            TensorData::Int32(data.iter().map(|x| x.as_i64().unwrap() as i32).collect())
        }
        other => panic!("fixture datatype {other} not handled"),
    };
    Tensor::new(shape, data).unwrap()
}

fn case(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixtures().join(name).join("case.json")).unwrap())
        .unwrap()
}

fn inputs_for(model: &dyn Model, case: &Value) -> Vec<Tensor> {
    model
        .signature()
        .inputs
        .iter()
        .map(|spec| tensor(&case["inputs"][&spec.name]))
        .collect()
}

fn assert_matches_reference(
    name: &str,
    backend: Backend,
    model: &dyn Model,
    case: &Value,
    outputs: &[Tensor],
) {
    assert_eq!(outputs.len(), model.signature().outputs.len());
    for (spec, got) in model.signature().outputs.iter().zip(outputs) {
        let want = tensor(&case["outputs"][&spec.name]);
        let ctx = format!("{name} on {}: output {:?}", backend.as_str(), spec.name);
        assert_eq!(got.shape(), want.shape(), "{ctx}: shape");
        assert_eq!(got.dtype(), want.dtype(), "{ctx}: datatype");
        for i in 0..want.len() {
            let (g, w) = (
                got.data().get_f64(i).unwrap(),
                want.data().get_f64(i).unwrap(),
            );
            assert!(
                (g - w).abs() <= TOLERANCE * w.abs().max(1.0),
                "{ctx}[{i}]: {g} vs onnxruntime {w}"
            );
        }
    }
}

/// Fixtures a backend is known not to run, with the operator its load error must name.
fn unsupported_on(backend: Backend) -> &'static [(&'static str, &'static str)] {
    match backend {
        Backend::Tract => &[("iris-svm", "SVMClassifier")],
        // ort runs every fixture.
        _ => &[],
    }
}

fn supported_on(backend: Backend, name: &str) -> bool {
    !unsupported_on(backend).iter().any(|(n, _)| *n == name)
}

/// Fixtures with onnxruntime reference outputs.
fn reference_cases() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(fixtures())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| case(n).get("outputs").is_some())
        .collect();
    names.sort();
    names
}

#[test]
fn every_fixture_matches_onnxruntime_on_every_backend() {
    let cases = reference_cases();
    assert!(cases.len() >= 3, "fixtures missing: {cases:?}");
    let backends = Backend::available();
    if cfg!(feature = "ort") {
        assert!(
            backends.contains(&Backend::Ort),
            "built with ort but the library did not load ({}); the suite did NOT run on ort",
            Backend::Ort.check_available().unwrap_err()
        );
    }
    for backend in backends {
        let tmp = tempfile::tempdir().unwrap();
        let store = ModelStore::open(tmp.path()).unwrap();
        for name in cases.iter().filter(|n| supported_on(backend, n)) {
            let artifact = publish(&store, name);
            let model = load(&artifact, &LoadOptions::with_backend(backend))
                .unwrap_or_else(|e| panic!("{name} on {}: {e}", backend.as_str()));
            let case = case(name);
            let outputs = model.predict(inputs_for(model.as_ref(), &case)).unwrap();
            assert_matches_reference(name, backend, model.as_ref(), &case, &outputs);
        }
    }
}

#[test]
fn batch_size_is_dynamic() {
    let tmp = tempfile::tempdir().unwrap();
    let store = ModelStore::open(tmp.path()).unwrap();
    for name in reference_cases()
        .into_iter()
        .filter(|n| supported_on(Backend::Tract, n))
    {
        let model = load(&publish(&store, &name), &LoadOptions::default()).unwrap();
        let full = inputs_for(model.as_ref(), &case(&name)).remove(0);
        for rows in [1, 2, full.rows()] {
            let part = full
                .split_rows(&[rows, full.rows() - rows])
                .unwrap()
                .remove(0);
            let out = model.predict(vec![part]).unwrap();
            assert_eq!(out[0].rows(), rows, "{name} with {rows} rows");
        }
    }
}

#[test]
fn many_threads_predict_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let store = ModelStore::open(tmp.path()).unwrap();
    let model: Arc<dyn Model> = load(&publish(&store, "mlp"), &LoadOptions::default()).unwrap();
    let case = case("mlp");
    let expected = model.predict(inputs_for(model.as_ref(), &case)).unwrap();
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let (model, case, expected) = (model.clone(), case.clone(), expected.clone());
            std::thread::spawn(move || {
                for _ in 0..50 {
                    assert_eq!(
                        model.predict(inputs_for(model.as_ref(), &case)).unwrap(),
                        expected
                    );
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

/// A thread reuses its tract run state from one predict to the next: answers across
/// changing batch sizes, and after a failed run, equal what a freshly loaded model answers.
#[test]
fn a_reused_run_state_answers_as_a_fresh_one() {
    let tmp = tempfile::tempdir().unwrap();
    let store = ModelStore::open(tmp.path()).unwrap();
    for name in ["mlp", "iris-mlp", "cancer-gbc100"] {
        let artifact = publish(&store, name);
        let model = load(&artifact, &LoadOptions::default()).unwrap();
        let full = inputs_for(model.as_ref(), &case(name)).remove(0);
        let rows_of = |rows: usize| {
            full.split_rows(&[rows, full.rows() - rows])
                .unwrap()
                .remove(0)
        };
        let fresh = |rows: usize| {
            load(&artifact, &LoadOptions::default())
                .unwrap()
                .predict(vec![rows_of(rows)])
                .unwrap()
        };
        let wrong = Tensor::new(vec![1, 1], TensorData::Fp32(vec![0.5])).unwrap();
        for rows in [full.rows(), 1, 2, full.rows(), 1] {
            assert_eq!(
                model.predict(vec![rows_of(rows)]).unwrap(),
                fresh(rows),
                "{name} with {rows} rows"
            );
            assert!(model.predict(vec![wrong.clone()]).is_err(), "{name}");
        }
    }
}

#[test]
fn unsupported_operators_fail_at_load_naming_them() {
    let tmp = tempfile::tempdir().unwrap();
    let store = ModelStore::open(tmp.path()).unwrap();
    for backend in Backend::available() {
        for &(name, op) in unsupported_on(backend) {
            let err =
                load(&publish(&store, name), &LoadOptions::with_backend(backend)).unwrap_err();
            assert!(
                matches!(err, RuntimeError::UnsupportedOperator { .. }),
                "{name}: {err}"
            );
            assert!(err.to_string().contains(op), "{name}: {err}");
        }
    }
}

#[test]
fn a_file_that_is_not_onnx_fails_at_load() {
    let tmp = tempfile::tempdir().unwrap();
    let store = ModelStore::open(tmp.path()).unwrap();
    let draft = ManifestDraft {
        runtime: "onnx".into(),
        ..Default::default()
    };
    store
        .publish(
            "junk",
            vec![ArtifactFile::from_bytes(
                "model.onnx",
                b"not a model".to_vec(),
            )],
            draft,
        )
        .unwrap();
    let err = load(
        &store.open_version("junk", VersionSelector::Latest).unwrap(),
        &LoadOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(err, RuntimeError::Load { .. }), "{err}");
    assert!(err.to_string().contains("junk/1"), "{err}");
}

#[test]
fn unknown_runtime_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let store = ModelStore::open(tmp.path()).unwrap();
    let draft = ManifestDraft {
        runtime: "caffe".into(),
        ..Default::default()
    };
    store
        .publish(
            "old",
            vec![ArtifactFile::from_bytes("m", b"x".to_vec())],
            draft,
        )
        .unwrap();
    let err = load(
        &store.open_version("old", VersionSelector::Latest).unwrap(),
        &LoadOptions::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("caffe"), "{err}");
}

#[test]
fn declared_signature_is_read_from_the_file() {
    let sig = pier_runtimes::onnx::inspect_signature(&fixtures().join("cancer-forest/model.onnx"))
        .unwrap();
    assert_eq!(sig.inputs[0].shape, vec![-1, 8]);
    assert_eq!(
        sig.outputs
            .iter()
            .map(|o| o.name.as_str())
            .collect::<Vec<_>>(),
        ["label", "probabilities"]
    );
}

#[test]
fn zipmap_after_a_tract_model_runs_natively_on_the_default_backend() {
    let tmp = tempfile::tempdir().unwrap();
    let store = ModelStore::open(tmp.path()).unwrap();
    let zipmap = load(&publish(&store, "iris-zipmap"), &LoadOptions::default()).unwrap();
    let plain = load(&publish(&store, "iris-logreg"), &LoadOptions::default()).unwrap();
    let x = tensor(&case("iris-logreg")["inputs"]["X"]);
    let out = zipmap.predict(vec![x.clone()]).unwrap();
    let reference = plain.predict(vec![x]).unwrap();
    let probs = reference[1].as_f32().unwrap();
    assert_eq!(out[0].data(), reference[0].data(), "labels");
    let TensorData::Bytes(rows) = out[1].data() else {
        panic!("ZipMap output should be BYTES, is {}", out[1].dtype())
    };
    assert_eq!(out[1].shape(), [probs.len() / 3]);
    for (i, row) in rows.iter().enumerate() {
        let obj: serde_json::Map<String, Value> = serde_json::from_slice(row).unwrap();
        assert_eq!(obj.keys().collect::<Vec<_>>(), ["0", "1", "2"], "{obj:?}");
        for (k, (_, v)) in obj.iter().enumerate() {
            assert_eq!(
                v.as_f64().unwrap(),
                f64::from(probs[i * 3 + k]),
                "row {i} class {k}"
            );
        }
    }
}
