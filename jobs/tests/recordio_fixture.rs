//! RecordIO-protobuf files written by the SageMaker Python SDK itself
//! (`tests/fixtures/recordio/make_fixtures.py`: `write_numpy_to_dense_tensor`,
//! `write_spmatrix_to_sparse_tensor`) read back, from a local folder and from a real S3 server.

mod common;

use common::Store;
use pier_jobs::channels::{ChannelSpec, ContentKind, read_channel};

fn expected_dense() -> Vec<f32> {
    (0..6)
        .flat_map(|i| (0..4).map(move |j| i as f32 + j as f32 / 8.0))
        .collect()
}

fn expected_sparse() -> Vec<f32> {
    let mut out = vec![0.0f32; 5 * 8];
    for i in 0..5 {
        out[i * 8 + (3 * i) % 8] = i as f32 + 1.0;
        out[i * 8 + 7] = -1.0;
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_written_records_read_back() {
    let cases: [(&str, Vec<f32>, usize, Vec<f32>); 3] = [
        (
            "dense_f32.pbr",
            expected_dense(),
            4,
            (0..6).map(|i| (i % 2) as f32).collect(),
        ),
        (
            "dense_f64.pbr",
            expected_dense(),
            4,
            (0..6).map(|i| (i % 3) as f32).collect(),
        ),
        (
            "sparse_f32.pbr",
            expected_sparse(),
            8,
            (0..5).map(|i| i as f32).collect(),
        ),
    ];
    for store in Store::both() {
        for (file, features, width, labels) in &cases {
            let bytes = std::fs::read(common::fixture(&format!("recordio/{file}"))).unwrap();
            let key = format!("fixtures/{file}");
            store.put(&key, &bytes).await;
            let spec: ChannelSpec = serde_json::from_value(serde_json::json!({
                "ChannelName": "train",
                "ContentType": "application/x-recordio-protobuf",
                "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": store.uri(&key)}},
            }))
            .unwrap();
            let d = read_channel(
                &spec.validate(0).unwrap(),
                &store.opts(true, &[ContentKind::RecordIo]),
            )
            .await
            .unwrap_or_else(|e| panic!("{} {file}: {e}", store.kind()));
            assert_eq!(d.n_cols(), *width, "{} {file}", store.kind());
            assert_eq!(d.features(), &features[..], "{} {file}", store.kind());
            assert_eq!(d.labels().unwrap(), &labels[..], "{} {file}", store.kind());
        }
    }
}
