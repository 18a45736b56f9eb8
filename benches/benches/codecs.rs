//! Content-type codecs on the request path, at 1 and 64 rows of 30 features: SageMaker
//! bodies (`text/csv`, `application/json`) decoded to a feature tensor and a classifier's
//! outputs (`label` INT64 + `probabilities` FP32 `[rows, 3]`) encoded back; Open Inference
//! Protocol v2 tensors decoded from a JSON request body (parse + `from_json`) and from the
//! binary tensor format (`from_raw`, as REST's binary extension and gRPC's
//! `raw_input_contents` use), and encoded to JSON / raw.
//!
//! `cargo bench -p pier-benches --bench codecs`

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use pier_benches::{ROWS, csv_body, feature_rows, feature_tensor, json_body};
use pier_runtimes::codec::{Format, decode_features, encode_outputs};
use pier_runtimes::{DataType, JsonLayout, Tensor, TensorData};
use pier_server::v2::tensors;

const FEATURES: usize = 30;

fn outputs(rows: usize) -> (Tensor, Tensor) {
    let labels = Tensor::new(
        vec![rows],
        TensorData::Int64((0..rows as i64).map(|i| i % 3).collect()),
    )
    .expect("shape matches");
    let probabilities = Tensor::from_f32_rows(
        rows,
        3,
        (0..rows * 3).map(|i| (i % 7) as f32 / 7.0).collect(),
    )
    .expect("shape matches");
    (labels, probabilities)
}

fn sagemaker(c: &mut Criterion) {
    let mut group = c.benchmark_group("codec_decode");
    for rows in ROWS {
        group.throughput(Throughput::Elements(rows as u64));
        for (name, format, body) in [
            ("csv", Format::Csv, csv_body(rows, FEATURES)),
            ("json", Format::Json, json_body(rows, FEATURES)),
        ] {
            group.bench_with_input(BenchmarkId::new(name, rows), &body, |b, body| {
                b.iter(|| decode_features(format, body, Some(FEATURES)).unwrap())
            });
        }
    }
    group.finish();

    let mut group = c.benchmark_group("codec_encode");
    let layout = JsonLayout::default();
    for rows in ROWS {
        group.throughput(Throughput::Elements(rows as u64));
        let (labels, probabilities) = outputs(rows);
        let named = [("label", &labels), ("probabilities", &probabilities)];
        for (name, format) in [("csv", Format::Csv), ("json", Format::Json)] {
            group.bench_with_input(BenchmarkId::new(name, rows), &named, |b, named| {
                b.iter(|| encode_outputs(format, named, &layout).unwrap())
            });
        }
    }
    group.finish();
}

fn v2(c: &mut Criterion) {
    let mut group = c.benchmark_group("v2_decode");
    for rows in ROWS {
        group.throughput(Throughput::Elements(rows as u64));
        let shape = [rows as i64, FEATURES as i64];
        let body = serde_json::to_vec(&serde_json::json!({
            "inputs": [{"name": "X", "shape": shape, "datatype": "FP32", "data": feature_rows(rows, FEATURES)}]
        }))
        .expect("serialisable");
        group.bench_with_input(BenchmarkId::new("json", rows), &body, |b, body| {
            b.iter(|| {
                let request: serde_json::Value = serde_json::from_slice(body).unwrap();
                let input = &request["inputs"][0];
                tensors::from_json("X", DataType::Fp32, &shape, &input["data"]).unwrap()
            })
        });
        let raw = tensors::to_raw(&feature_tensor(rows, FEATURES));
        group.bench_with_input(BenchmarkId::new("binary", rows), &raw, |b, raw| {
            b.iter(|| tensors::from_raw("X", DataType::Fp32, &shape, raw).unwrap())
        });
    }
    group.finish();

    let mut group = c.benchmark_group("v2_encode");
    for rows in ROWS {
        group.throughput(Throughput::Elements(rows as u64));
        let (labels, probabilities) = outputs(rows);
        let pair = [labels, probabilities];
        group.bench_with_input(BenchmarkId::new("json", rows), &pair, |b, pair| {
            b.iter(|| {
                let outputs: Vec<serde_json::Value> = pair
                    .iter()
                    .map(|t| serde_json::json!({"shape": tensors::wire_shape(t), "data": tensors::to_json(t)}))
                    .collect();
                serde_json::to_vec(&outputs).unwrap()
            })
        });
        group.bench_with_input(BenchmarkId::new("binary", rows), &pair, |b, pair| {
            b.iter(|| pair.iter().map(tensors::to_raw).collect::<Vec<_>>())
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = pier_benches::criterion();
    targets = sagemaker, v2
}
criterion_main!(benches);
