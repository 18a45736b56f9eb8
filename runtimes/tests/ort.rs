//! ONNX Runtime backend tests (feature `ort`). They need the library: set `ORT_DYLIB_PATH`
//! to `libonnxruntime.so` (e.g. from `pip install onnxruntime`). Without it the first test
//! fails, saying the ort tests did not run — never a silent pass. The shared fixtures run
//! through ort in the conformance suite; this file covers what is ort's own: ZipMap's
//! sequence-of-maps output, session pooling under concurrency, and device selection.
#![cfg(feature = "ort")]

mod common;

use common::publish;
use std::sync::Arc;

use pier_model_store::ModelStore;
use pier_runtimes::{Backend, DataType, Device, LoadOptions, Model, RuntimeError, Tensor, load};

fn require_ort() {
    if let Err(e) = Backend::Ort.check_available() {
        panic!("the ort tests did NOT run: {e}");
    }
}

fn iris_rows() -> Tensor {
    Tensor::from_f32_rows(
        3,
        4,
        vec![5.1, 3.5, 1.4, 0.2, 6.7, 3.0, 5.2, 2.3, 5.9, 3.0, 4.2, 1.5],
    )
    .unwrap()
}

#[test]
fn the_onnx_runtime_library_is_loaded() {
    require_ort();
    assert!(Backend::available().contains(&Backend::Ort));
}

#[test]
fn zipmap_rows_are_json_objects_of_class_probabilities() {
    require_ort();
    let tmp = tempfile::tempdir().unwrap();
    let store = ModelStore::open(tmp.path()).unwrap();
    let model = load(
        &publish(&store, "iris-zipmap"),
        &LoadOptions::with_backend(Backend::Ort),
    )
    .unwrap();
    assert_eq!(model.backend(), "ort");
    let out = model.predict(vec![iris_rows()]).unwrap();
    let labels = out[0].data().clone();
    assert_eq!(out[1].dtype(), DataType::Bytes);
    assert_eq!(out[1].shape(), [3]);
    let pier_runtimes::TensorData::Bytes(rows) = out[1].data() else {
        panic!("BYTES expected")
    };
    // The same classifier without ZipMap (iris-logreg) gives the reference probabilities.
    let plain = load(
        &publish(&store, "iris-logreg"),
        &LoadOptions::with_backend(Backend::Ort),
    )
    .unwrap();
    let reference = plain.predict(vec![iris_rows()]).unwrap();
    let probs = reference[1].as_f32().unwrap();
    for (i, row) in rows.iter().enumerate() {
        let obj: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(row).unwrap();
        assert_eq!(obj.keys().collect::<Vec<_>>(), ["0", "1", "2"], "{obj:?}");
        for (k, v) in obj.iter().enumerate() {
            let p = v.1.as_f64().unwrap();
            assert!(
                (p - f64::from(probs[i * 3 + k])).abs() < 1e-6,
                "row {i} class {k}: {p}"
            );
        }
        assert_eq!(labels.get_f64(i), reference[0].data().get_f64(i));
    }
}

#[test]
fn a_session_pool_serves_many_threads() {
    require_ort();
    let tmp = tempfile::tempdir().unwrap();
    let store = ModelStore::open(tmp.path()).unwrap();
    let mut options = LoadOptions::with_backend(Backend::Ort);
    options.sessions = 2;
    let model: Arc<dyn Model> = load(&publish(&store, "diabetes-gbr"), &options).unwrap();
    let input = Tensor::from_f32_rows(2, 10, (0..20).map(|i| i as f32 / 100.0).collect()).unwrap();
    let expected = model.predict(vec![input.clone()]).unwrap();
    let handles: Vec<_> = (0..6)
        .map(|_| {
            let (model, input, expected) = (model.clone(), input.clone(), expected.clone());
            std::thread::spawn(move || {
                for _ in 0..50 {
                    assert_eq!(model.predict(vec![input.clone()]).unwrap(), expected);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

#[test]
fn cuda_without_cuda_is_a_clear_load_error_and_auto_falls_back() {
    require_ort();
    let tmp = tempfile::tempdir().unwrap();
    let store = ModelStore::open(tmp.path()).unwrap();
    let artifact = publish(&store, "iris-logreg");
    let cuda = LoadOptions::with_backend(Backend::Ort).on_device(Device::Cuda);
    match load(&artifact, &cuda) {
        Err(err @ RuntimeError::Load { .. }) => {
            let msg = err.to_string();
            assert!(
                msg.contains("PIER_DEVICE=cuda") && msg.contains("CUDA"),
                "{msg}"
            );
        }
        // A machine with onnxruntime-gpu and a GPU: CUDA must then really be used.
        Ok(model) => assert_eq!(model.predict(vec![iris_rows()]).unwrap()[0].rows(), 3),
        Err(other) => panic!("unexpected error kind: {other}"),
    }
    let auto = LoadOptions::with_backend(Backend::Ort).on_device(Device::Auto);
    let model = load(&artifact, &auto).unwrap();
    assert_eq!(model.predict(vec![iris_rows()]).unwrap()[0].rows(), 3);
}

#[test]
fn tract_refuses_cuda() {
    let tmp = tempfile::tempdir().unwrap();
    let store = ModelStore::open(tmp.path()).unwrap();
    let err = load(
        &publish(&store, "iris-logreg"),
        &LoadOptions::default().on_device(Device::Cuda),
    )
    .unwrap_err();
    assert!(err.to_string().contains("PIER_BACKEND=ort"), "{err}");
}
