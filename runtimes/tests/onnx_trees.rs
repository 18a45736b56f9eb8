//! ONNX tree ensembles on the default backend: every model under `fixtures/onnx-trees/`
//! (skl2onnx GradientBoosting, RandomForest, ExtraTrees, HistGradientBoosting; onnxmltools
//! XGBoost and LightGBM; hand-written graphs with every node mode, aggregate and post
//! transform) is compiled to the native kernel and must give onnxruntime's outputs, recorded
//! by `scripts/onnx_trees/make_fixtures.py`: scores within 1e-6, labels and ZipMap keys
//! exactly, on inputs with missing values, whole and one row at a time.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use pier_model_store::{ArtifactFile, ManifestDraft, ModelStore, VersionSelector};
use pier_runtimes::onnx::inspect_signature;
use pier_runtimes::{DataType, LoadOptions, Model, Tensor, TensorData, load};
use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/onnx-trees")
}

fn cases() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

fn load_case(store: &ModelStore, name: &str) -> (Arc<dyn Model>, Value) {
    let dir = root().join(name);
    let signature = inspect_signature(&dir.join("model.onnx")).unwrap();
    let draft = ManifestDraft {
        runtime: "onnx".into(),
        signature: signature.to_manifest(),
        ..Default::default()
    };
    store
        .publish(
            name,
            vec![ArtifactFile::from_path(
                "model.onnx",
                dir.join("model.onnx"),
            )],
            draft,
        )
        .unwrap();
    let artifact = store.open_version(name, VersionSelector::Latest).unwrap();
    let model = load(&artifact, &LoadOptions::default()).unwrap_or_else(|e| panic!("{name}: {e}"));
    let case =
        serde_json::from_str(&std::fs::read_to_string(dir.join("case.json")).unwrap()).unwrap();
    (model, case)
}

fn input(case: &Value) -> (String, Tensor) {
    let (name, t) = case["inputs"].as_object().unwrap().iter().next().unwrap();
    let shape: Vec<usize> = t["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_u64().unwrap() as usize)
        .collect();
    let data = t["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().map_or(f32::NAN, |x| x as f32))
        .collect();
    (
        name.clone(),
        Tensor::new(shape, TensorData::Fp32(data)).unwrap(),
    )
}

/// Compares `got` (rows `first..first + got.rows()` of the case) with onnxruntime's output.
fn check(ctx: &str, got: &Tensor, want: &Value, first: usize) {
    if let Some(rows) = want.get("zipmap") {
        let TensorData::Bytes(objects) = got.data() else {
            panic!("{ctx}: ZipMap output should be BYTES, is {}", got.dtype());
        };
        assert_eq!(got.shape(), [objects.len()], "{ctx}: shape");
        for (r, object) in objects.iter().enumerate() {
            let want_row = rows[first + r].as_array().unwrap();
            let text = std::str::from_utf8(object).unwrap();
            let parsed: serde_json::Map<String, Value> = serde_json::from_str(text).unwrap();
            let keys: Vec<&String> = parsed.keys().collect();
            let want_keys: Vec<&str> = want_row.iter().map(|kv| kv[0].as_str().unwrap()).collect();
            assert_eq!(
                keys, want_keys,
                "{ctx} row {r}: keys in onnxruntime's order"
            );
            for (kv, (_, g)) in want_row.iter().zip(parsed.iter()) {
                let (w, g) = (kv[1].as_f64().unwrap(), g.as_f64().unwrap());
                assert!(
                    (w - g).abs() <= 1e-6,
                    "{ctx} row {r} key {}: {g} vs onnxruntime {w}",
                    kv[0]
                );
            }
        }
        return;
    }
    let shape: Vec<usize> = want["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_u64().unwrap() as usize)
        .collect();
    let width: usize = shape[1..].iter().product();
    let rows = got.rows();
    let mut want_shape = shape.clone();
    want_shape[0] = rows;
    assert_eq!(got.shape(), want_shape, "{ctx}: shape");
    let data = &want["data"].as_array().unwrap()[first * width..(first + rows) * width];
    match want["datatype"].as_str().unwrap() {
        "INT64" => {
            assert_eq!(got.dtype(), DataType::Int64, "{ctx}");
            let w: Vec<i64> = data.iter().map(|v| v.as_i64().unwrap()).collect();
            assert_eq!(got.data(), &TensorData::Int64(w), "{ctx}: labels");
        }
        "BYTES" => {
            let w: Vec<Vec<u8>> = data
                .iter()
                .map(|v| v.as_str().unwrap().as_bytes().to_vec())
                .collect();
            assert_eq!(got.data(), &TensorData::Bytes(w), "{ctx}: labels");
        }
        "FP32" => {
            let g = got
                .as_f32()
                .unwrap_or_else(|| panic!("{ctx}: FP32 expected"));
            for (i, (g, w)) in g.iter().zip(data).enumerate() {
                let g = f64::from(*g);
                // The generator writes NaN as null and infinities as "inf" / "-inf".
                let w = match w {
                    Value::Null => {
                        assert!(g.is_nan(), "{ctx}[{i}]: {g} vs onnxruntime NaN");
                        continue;
                    }
                    Value::String(s) => {
                        let w = if s == "inf" {
                            f64::INFINITY
                        } else {
                            f64::NEG_INFINITY
                        };
                        assert_eq!(g, w, "{ctx}[{i}]");
                        continue;
                    }
                    w => w.as_f64().unwrap(),
                };
                assert!(
                    (g - w).abs() <= 1e-6 * w.abs().max(1.0),
                    "{ctx}[{i}]: {g} vs onnxruntime {w}"
                );
            }
        }
        other => panic!("{ctx}: datatype {other}"),
    }
}

#[test]
fn every_tree_fixture_runs_natively_and_matches_onnxruntime() {
    let names = cases();
    assert!(names.len() >= 30, "fixtures missing: {names:?}");
    let tmp = tempfile::tempdir().unwrap();
    let store = ModelStore::open(tmp.path()).unwrap();
    for name in &names {
        let (model, case) = load_case(&store, name);
        assert_eq!(
            model.backend(),
            "native",
            "{name} should run on the native kernel"
        );
        assert!(model.accepts_missing(), "{name}");
        let (_, x) = input(&case);
        let outputs = model.predict(vec![x.clone()]).unwrap();
        for (spec, got) in model.signature().outputs.iter().zip(&outputs) {
            check(
                &format!("{name}: {}", spec.name),
                got,
                &case["outputs"][&spec.name],
                0,
            );
        }
        // One row at a time takes the kernel's small-block path.
        let rows = x.rows();
        for (r, row) in x
            .split_rows(&vec![1; rows])
            .unwrap()
            .into_iter()
            .enumerate()
        {
            let outputs = model.predict(vec![row]).unwrap();
            for (spec, got) in model.signature().outputs.iter().zip(&outputs) {
                check(
                    &format!("{name} row {r}: {}", spec.name),
                    got,
                    &case["outputs"][&spec.name],
                    r,
                );
            }
        }
    }
}

#[test]
fn served_outputs_keep_the_declared_names_and_types() {
    let tmp = tempfile::tempdir().unwrap();
    let store = ModelStore::open(tmp.path()).unwrap();
    let (model, case) = load_case(&store, "skl-rf-multi-zipmap");
    let sig = model.signature();
    let names: Vec<&str> = sig.outputs.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(names, ["output_label", "output_probability"]);
    assert_eq!(sig.outputs[1].dtype, DataType::Bytes);
    let (_, x) = input(&case);
    let out = model.predict(vec![x]).unwrap();
    assert_eq!(out[0].dtype(), DataType::Int64);
    assert_eq!(out[1].dtype(), DataType::Bytes);
    let TensorData::Bytes(rows) = out[1].data() else {
        panic!()
    };
    // The ort backend's format: f32 widened to f64, keys as strings.
    let first = std::str::from_utf8(&rows[0]).unwrap();
    assert!(
        first.starts_with("{\"0\":") && first.ends_with('}'),
        "{first}"
    );
}

#[test]
fn wrong_width_is_invalid_input() {
    let tmp = tempfile::tempdir().unwrap();
    let store = ModelStore::open(tmp.path()).unwrap();
    let (model, _) = load_case(&store, "xgb-binary");
    let x = Tensor::from_f32_rows(1, 2, vec![0.0, 1.0]).unwrap();
    let err = model.predict(vec![x]).unwrap_err();
    assert!(
        matches!(err, pier_runtimes::RuntimeError::InvalidInput(_)),
        "{err}"
    );
}

#[test]
fn an_ensemble_the_kernel_would_not_reproduce_stays_on_tract() {
    use pier_runtimes::onnx::{OnnxGraph, hybrid::HybridModel};
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/onnx/cancer-forest/model.onnx");
    let graph = OnnxGraph::read(&path, "forest").unwrap();
    let signature = graph.declared_signature().unwrap();
    let native = HybridModel::plan(&graph, &signature, "forest")
        .unwrap()
        .unwrap();
    assert_eq!(native.backend(), "native");
    // One leaf of the first tree now adds to class 1 while its siblings add to class 0:
    // onnxruntime's `has_score` would then depend on the row, which the kernel does not model.
    let mut mixed = graph.clone();
    let node = &mut mixed.proto.graph.as_mut().unwrap().node[0];
    let ids = node
        .attribute
        .iter_mut()
        .find(|a| a.name == "class_ids")
        .unwrap();
    ids.ints[0] = 1;
    assert!(
        HybridModel::plan(&mixed, &signature, "forest")
            .unwrap()
            .is_none()
    );
    // Two ensembles in one graph: also left to tract.
    let mut two = graph.clone();
    let g = two.proto.graph.as_mut().unwrap();
    let mut copy = g.node[0].clone();
    copy.output = vec!["label2".into(), "probabilities2".into()];
    g.node.push(copy);
    assert!(
        HybridModel::plan(&two, &signature, "forest")
            .unwrap()
            .is_none()
    );
}

/// What the default build serves equals what the ort backend serves for the same model:
/// output names, datatypes, shapes, labels, and ZipMap rows key for key.
#[cfg(feature = "ort")]
#[test]
fn the_default_build_serves_what_the_ort_backend_serves() {
    use pier_runtimes::Backend;
    Backend::Ort
        .check_available()
        .unwrap_or_else(|e| panic!("the ort comparison did NOT run: {e}"));
    let tmp = tempfile::tempdir().unwrap();
    let store = ModelStore::open(tmp.path()).unwrap();
    for name in cases() {
        let (native, case) = load_case(&store, &name);
        let artifact = store.open_version(&name, VersionSelector::Latest).unwrap();
        let ort = load(&artifact, &LoadOptions::with_backend(Backend::Ort)).unwrap();
        assert_eq!(native.signature(), ort.signature(), "{name}");
        let (_, x) = input(&case);
        let a = native.predict(vec![x.clone()]).unwrap();
        let b = ort.predict(vec![x]).unwrap();
        for ((spec, a), b) in native.signature().outputs.iter().zip(&a).zip(&b) {
            let ctx = format!("{name}: {}", spec.name);
            assert_eq!(a.dtype(), b.dtype(), "{ctx}");
            assert_eq!(a.shape(), b.shape(), "{ctx}");
            match (a.data(), b.data()) {
                (TensorData::Bytes(x), TensorData::Bytes(y)) => {
                    for (x, y) in x.iter().zip(y) {
                        match (
                            serde_json::from_slice::<serde_json::Map<String, Value>>(x),
                            serde_json::from_slice::<serde_json::Map<String, Value>>(y),
                        ) {
                            (Ok(x), Ok(y)) => {
                                assert_eq!(
                                    x.keys().collect::<Vec<_>>(),
                                    y.keys().collect::<Vec<_>>(),
                                    "{ctx}"
                                );
                                for (v, w) in x.values().zip(y.values()) {
                                    let (v, w) = (v.as_f64().unwrap(), w.as_f64().unwrap());
                                    assert!((v - w).abs() <= 1e-6, "{ctx}: {v} vs ort {w}");
                                }
                            }
                            _ => assert_eq!(x, y, "{ctx}"),
                        }
                    }
                }
                (TensorData::Int64(x), TensorData::Int64(y)) => assert_eq!(x, y, "{ctx}"),
                (x, y) => {
                    for i in 0..x.len() {
                        let (v, w) = (x.get_f64(i).unwrap(), y.get_f64(i).unwrap());
                        assert!(
                            (v - w).abs() <= 1e-6 * w.abs().max(1.0)
                                || (v.is_nan() && w.is_nan())
                                || v == w,
                            "{ctx}[{i}]: {v} vs ort {w}"
                        );
                    }
                }
            }
        }
    }
}
