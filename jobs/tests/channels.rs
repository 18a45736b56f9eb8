//! Channels read end to end, each case over a local folder and over a real S3 server
//! (`s3s-fs`, started by the test): every content type and data type, gzip, and every kind
//! of bad input with the exact message a job's FailureReason carries.

mod common;

use common::{BUCKET, Store, gzip};
use pier_jobs::channels::recordio::{self, Float32Tensor, Float64Tensor, Record, Value, ValueKind};
use pier_jobs::channels::{
    Channel, ChannelError, ChannelSpec, ContentKind, ReadOptions, read_channel,
};
use prost::Message;

const CSV: &[ContentKind] = &[ContentKind::Csv, ContentKind::RecordIo];
const RECORDIO: &[ContentKind] = &[ContentKind::RecordIo];

fn channel(uri: &str, data_type: &str, extra: serde_json::Value) -> Channel {
    let mut spec = serde_json::json!({
        "ChannelName": "train",
        "DataSource": {"S3DataSource": {
            "S3DataType": data_type, "S3Uri": uri, "S3DataDistributionType": "FullyReplicated"
        }},
    });
    for (k, v) in extra.as_object().unwrap() {
        spec[k] = v.clone();
    }
    serde_json::from_value::<ChannelSpec>(spec)
        .unwrap()
        .validate(0)
        .unwrap()
}

async fn read(
    _store: &Store,
    uri: &str,
    extra: serde_json::Value,
    opts: &ReadOptions,
) -> Result<pier_algorithms::builtin::Dataset, ChannelError> {
    read_channel(&channel(uri, "S3Prefix", extra), opts).await
}

fn dense_record(features: &[f32], label: Option<f64>) -> Vec<u8> {
    let mut r = Record::default();
    r.features.insert(
        "values".into(),
        Value {
            value: Some(ValueKind::Float32Tensor(Float32Tensor {
                values: features.to_vec(),
                keys: vec![],
                shape: vec![],
            })),
        },
    );
    if let Some(l) = label {
        r.label.insert(
            "values".into(),
            Value {
                value: Some(ValueKind::Float64Tensor(Float64Tensor {
                    values: vec![l],
                    keys: vec![],
                    shape: vec![],
                })),
            },
        );
    }
    r.encode_to_vec()
}

fn recordio_file(rows: &[(&[f32], Option<f64>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (f, l) in rows {
        recordio::write_frame(&mut out, &dense_record(f, *l));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_prefix_reads_every_object_in_key_order() {
    for store in Store::both() {
        store.put("data/b.csv", b"0,3,30\n").await;
        store.put("data/a.csv", b"1,1,10\n1,2,20\n").await;
        store.put("data/sub/c.csv", b"0,4,40").await;
        store.put("data/empty", b"").await;
        store.put("other/x.csv", b"9,9,9\n").await;
        let d = read(
            &store,
            &store.uri("data/"),
            serde_json::json!({}),
            &store.opts(true, CSV),
        )
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", store.kind()));
        assert_eq!((d.n_rows(), d.n_cols()), (4, 2), "{}", store.kind());
        assert_eq!(d.labels().unwrap(), &[1.0, 1.0, 0.0, 0.0]);
        assert_eq!(d.features(), &[1.0, 10.0, 2.0, 20.0, 3.0, 30.0, 4.0, 40.0]);
        // A single object named in full.
        let d = read(
            &store,
            &store.uri("data/b.csv"),
            serde_json::json!({}),
            &store.opts(true, CSV),
        )
        .await
        .unwrap();
        assert_eq!(d.n_rows(), 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_prefix_is_a_string_prefix_of_keys() {
    let store = Store::s3();
    store.put("data/a.csv", b"1,1\n").await;
    store.put("data/ab.csv", b"2,2\n").await;
    store.put("data/b.csv", b"3,3\n").await;
    store.put("data2/c.csv", b"4,4\n").await;
    let opts = store.opts(false, CSV);
    let d = read(
        &store,
        "s3://pier-data/data/a",
        serde_json::json!({}),
        &opts,
    )
    .await
    .unwrap();
    assert_eq!(d.features(), &[1.0, 1.0, 2.0, 2.0]);
    let d = read(&store, "s3://pier-data/data", serde_json::json!({}), &opts)
        .await
        .unwrap();
    assert_eq!(d.n_rows(), 4);
    let d = read(&store, "s3://pier-data", serde_json::json!({}), &opts)
        .await
        .unwrap();
    assert_eq!(d.n_rows(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_label_size_and_header_parameters() {
    for store in Store::both() {
        store.put("h/1.csv", b"f1,f2\n1,2\n3,4\n").await;
        store.put("h/2.csv", b"f1,f2\n5,6\n").await;
        // A supervised algorithm's default is a label column; label_size=0 says there is none.
        let d = read(
            &store,
            &store.uri("h/"),
            serde_json::json!({"ContentType": "text/csv;label_size=0;header=present"}),
            &store.opts(true, CSV),
        )
        .await
        .unwrap();
        assert_eq!(
            (d.n_rows(), d.n_cols(), d.labels()),
            (3, 2, None),
            "{}",
            store.kind()
        );
        assert_eq!(d.features(), &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        // label_size=1 for an algorithm whose default has none.
        let d = read(
            &store,
            &store.uri("h/"),
            serde_json::json!({"ContentType": "text/csv; label_size=1; header=present"}),
            &store.opts(false, CSV),
        )
        .await
        .unwrap();
        assert_eq!(d.labels().unwrap(), &[1.0, 3.0, 5.0]);
        assert_eq!(d.n_cols(), 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_objects_decompress_one_by_one() {
    for store in Store::both() {
        store.put("gz/a.csv.gz", &gzip(b"1,1,10\n1,2,20\n")).await;
        // Two gzip members in one object, as `cat a.gz b.gz` makes.
        let mut two = gzip(b"0,3,30\n");
        two.extend(gzip(b"0,4,40\n"));
        store.put("gz/b.csv.gz", &two).await;
        let d = read(
            &store,
            &store.uri("gz/"),
            serde_json::json!({"CompressionType": "Gzip", "ContentType": "text/csv"}),
            &store.opts(true, CSV),
        )
        .await
        .unwrap();
        assert_eq!(d.n_rows(), 4, "{}", store.kind());
        assert_eq!(d.features(), &[1.0, 10.0, 2.0, 20.0, 3.0, 30.0, 4.0, 40.0]);
        // Gzip RecordIO too.
        store
            .put(
                "gzr/a.pbr.gz",
                &gzip(&recordio_file(&[(&[1.0, 2.0], Some(1.0))])),
            )
            .await;
        let d = read(
            &store,
            &store.uri("gzr/"),
            serde_json::json!({"CompressionType": "Gzip", "ContentType": "application/x-recordio-protobuf"}),
            &store.opts(true, RECORDIO),
        )
        .await
        .unwrap();
        assert_eq!(
            (d.features(), d.labels().unwrap()),
            (&[1.0, 2.0][..], &[1.0][..])
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifest_file_lists_objects_in_its_order() {
    for store in Store::both() {
        store.put("m/part-2.csv", b"0,2\n").await;
        store.put("m/part-1.csv", b"1,1\n").await;
        store.put("m/ignored.csv", b"5,5\n").await;
        let manifest = serde_json::json!([
            {"prefix": format!("{}m/", store.root_uri())},
            "part-2.csv",
            "part-1.csv"
        ]);
        store
            .put("manifests/train.manifest", manifest.to_string().as_bytes())
            .await;
        let c = channel(
            &store.uri("manifests/train.manifest"),
            "ManifestFile",
            serde_json::json!({}),
        );
        let d = read_channel(&c, &store.opts(true, CSV)).await.unwrap();
        assert_eq!(d.labels().unwrap(), &[0.0, 1.0], "{}", store.kind());
        assert_eq!(d.features(), &[2.0, 1.0]);

        // A manifest naming an object that does not exist.
        let missing =
            serde_json::json!([{"prefix": format!("{}m/", store.root_uri())}, "nope.csv"]);
        store
            .put("manifests/bad.manifest", missing.to_string().as_bytes())
            .await;
        let c = channel(
            &store.uri("manifests/bad.manifest"),
            "ManifestFile",
            serde_json::json!({}),
        );
        let e = read_channel(&c, &store.opts(true, CSV)).await.unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "channel 'train': {}m/nope.csv does not exist",
                store.root_uri()
            ),
            "{}",
            store.kind()
        );

        // Not a manifest.
        store
            .put("manifests/junk.manifest", b"{\"prefix\": 1}")
            .await;
        let c = channel(
            &store.uri("manifests/junk.manifest"),
            "ManifestFile",
            serde_json::json!({}),
        );
        let e = read_channel(&c, &store.opts(true, CSV)).await.unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "channel 'train': bad manifest {}: not a JSON array",
                store.uri("manifests/junk.manifest")
            )
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recordio_dense_and_sparse() {
    for store in Store::both() {
        store
            .put(
                "r/a.pbr",
                &recordio_file(&[(&[1.0, 2.0, 3.0], Some(1.0)), (&[4.0, 5.0, 6.0], Some(0.0))]),
            )
            .await;
        store
            .put("r/b.pbr", &recordio_file(&[(&[7.0, 8.0, 9.0], Some(1.0))]))
            .await;
        let ct = serde_json::json!({"ContentType": "application/x-recordio-protobuf", "RecordWrapperType": "RecordIO"});
        let d = read(
            &store,
            &store.uri("r/"),
            ct.clone(),
            &store.opts(true, RECORDIO),
        )
        .await
        .unwrap();
        assert_eq!((d.n_rows(), d.n_cols()), (3, 3), "{}", store.kind());
        assert_eq!(d.labels().unwrap(), &[1.0, 0.0, 1.0]);
        assert_eq!(d.row(2), &[7.0, 8.0, 9.0]);
        // An unsupervised algorithm ignores the labels.
        let d = read(
            &store,
            &store.uri("r/"),
            ct.clone(),
            &store.opts(false, RECORDIO),
        )
        .await
        .unwrap();
        assert!(d.labels().is_none());

        // Sparse keys (factorization machines), densified by the shape.
        let mut out = Vec::new();
        for (keys, values, label) in [
            (vec![0u64, 4], vec![1.0f32, 2.0], 1.0f64),
            (vec![2], vec![3.0], 0.0),
        ] {
            let mut r = Record::default();
            r.features.insert(
                "values".into(),
                Value {
                    value: Some(ValueKind::Float32Tensor(Float32Tensor {
                        values,
                        keys,
                        shape: vec![5],
                    })),
                },
            );
            r.label.insert(
                "values".into(),
                Value {
                    value: Some(ValueKind::Float64Tensor(Float64Tensor {
                        values: vec![label],
                        keys: vec![],
                        shape: vec![],
                    })),
                },
            );
            recordio::write_frame(&mut out, &r.encode_to_vec());
        }
        store.put("sparse/part", &out).await;
        let d = read(
            &store,
            &store.uri("sparse/"),
            ct,
            &store.opts(true, RECORDIO),
        )
        .await
        .unwrap();
        assert_eq!(
            d.features(),
            &[1.0, 0.0, 0.0, 0.0, 2.0, 0.0, 0.0, 3.0, 0.0, 0.0]
        );
        assert_eq!(d.labels().unwrap(), &[1.0, 0.0]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_names_channel_object_and_position() {
    for store in Store::both() {
        let k = store.kind();
        let opts = store.opts(true, CSV);
        let csv = serde_json::json!({"ContentType": "text/csv"});

        store.put("fields/a.csv", b"1,2,3\n4,5,6\n7,8\n").await;
        let e = read(&store, &store.uri("fields/"), csv.clone(), &opts)
            .await
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "channel 'train', {}, line 3, column 3: 2 columns where earlier lines have 3",
                store.uri("fields/a.csv")
            ),
            "{k}"
        );

        store.put("nan/a.csv", b"1,2\n0,abc\n").await;
        let e = read(&store, &store.uri("nan/"), csv.clone(), &opts)
            .await
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "channel 'train', {}, line 2, column 2: \"abc\" is not a number",
                store.uri("nan/a.csv")
            ),
            "{k}"
        );

        // The second object's lines are numbered from 1.
        store.put("two/a.csv", b"1,2\n1,2\n").await;
        store.put("two/b.csv", b"1,2\n1,2,3\n").await;
        let e = read(&store, &store.uri("two/"), csv.clone(), &opts)
            .await
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "channel 'train', {}, line 2, column 3: 3 columns where earlier lines have 2",
                store.uri("two/b.csv")
            ),
        );

        let mut truncated = recordio_file(&[(&[1.0, 2.0], Some(1.0)), (&[3.0, 4.0], Some(0.0))]);
        let whole = truncated.len();
        truncated.truncate(whole - 5);
        store.put("trunc/a.pbr", &truncated).await;
        let rio = serde_json::json!({"ContentType": "application/x-recordio-protobuf"});
        let e = read(
            &store,
            &store.uri("trunc/"),
            rio.clone(),
            &store.opts(true, RECORDIO),
        )
        .await
        .unwrap_err();
        let second = (whole / 2) - 8;
        assert_eq!(
            e.to_string(),
            format!(
                "channel 'train', {}, record 2: truncated record: {} of {second} bytes",
                store.uri("trunc/a.pbr"),
                second - 5
            ),
            "{k}"
        );

        store.put("magic/a.pbr", b"1,2,3\n4,5,6\n").await;
        let e = read(
            &store,
            &store.uri("magic/"),
            rio.clone(),
            &store.opts(true, RECORDIO),
        )
        .await
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "channel 'train', {}, record 1: bad magic 0x2c322c31 (expected 0xced7230a); not RecordIO, or the previous record's length is wrong",
                store.uri("magic/a.pbr")
            ),
            "{k}"
        );

        store
            .put("nolabel/a.pbr", &recordio_file(&[(&[1.0], None)]))
            .await;
        let e = read(
            &store,
            &store.uri("nolabel/"),
            rio.clone(),
            &store.opts(true, RECORDIO),
        )
        .await
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "channel 'train', {}, record 1: label: the record has no label 'values'",
                store.uri("nolabel/a.pbr")
            ),
        );

        // RecordIO data declared as text/csv.
        store
            .put(
                "mislabelled/a.pbr",
                &recordio_file(&[(&[1.5, 2.5], Some(1.0))]),
            )
            .await;
        let e = read(&store, &store.uri("mislabelled/"), csv.clone(), &opts)
            .await
            .unwrap_err();
        let want = format!(
            "channel 'train', {}, line 2",
            store.uri("mislabelled/a.pbr")
        );
        assert!(e.to_string().starts_with(&want), "{k}: {e}");

        store.put("blank/a.csv", b"\n\n  \n").await;
        let e = read(&store, &store.uri("blank/"), csv.clone(), &opts)
            .await
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("channel 'train': no records in {}", store.uri("blank/")),
            "{k}"
        );

        let e = read(&store, &store.uri("nothing-here/"), csv.clone(), &opts)
            .await
            .unwrap_err();
        let want = match store {
            Store::S3(_) => format!(
                "channel 'train': no objects under {}",
                store.uri("nothing-here/")
            ),
            Store::Local(_) => format!(
                "channel 'train': {} does not exist",
                store.uri("nothing-here/")
            ),
        };
        assert_eq!(e.to_string(), want, "{k}");

        // An empty local folder is "no objects" too.
        if let Store::Local(dir) = &store {
            std::fs::create_dir(dir.path().join("empty-dir")).unwrap();
            let e = read(&store, &store.uri("empty-dir"), csv.clone(), &opts)
                .await
                .unwrap_err();
            assert_eq!(
                e.to_string(),
                format!(
                    "channel 'train': no objects under {}",
                    store.uri("empty-dir")
                )
            );
        }

        let e = read(
            &store,
            &store.uri("fields/"),
            csv.clone(),
            &store.opts(true, RECORDIO),
        )
        .await
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "channel 'train': content type 'text/csv' is not supported by this algorithm; it reads application/x-recordio-protobuf"
        );

        store.put("badgz/a.csv.gz", b"1,2,3\n").await;
        let e = read(
            &store,
            &store.uri("badgz/"),
            serde_json::json!({"CompressionType": "Gzip"}),
            &opts,
        )
        .await
        .unwrap_err();
        let want = format!(
            "channel 'train', {}, gzip: not valid gzip data: ",
            store.uri("badgz/a.csv.gz")
        );
        assert!(e.to_string().starts_with(&want), "{k}: {e}");

        let mut cut = gzip(b"1,2,3\n4,5,6\n");
        cut.truncate(cut.len() - 6);
        store.put("cutgz/a.csv.gz", &cut).await;
        let e = read(
            &store,
            &store.uri("cutgz/"),
            serde_json::json!({"CompressionType": "Gzip"}),
            &opts,
        )
        .await
        .unwrap_err();
        assert!(
            matches!(e, ChannelError::Data { ref position, .. } if position == "gzip"),
            "{k}: {e}"
        );

        let mut limited = store.opts(true, CSV);
        limited.max_bytes = Some(5);
        let e = read(&store, &store.uri("fields/"), csv.clone(), &limited)
            .await
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "channel 'train': more than 5 bytes (after decompression)"
        );

        let mut cancelled = store.opts(true, CSV);
        cancelled.cancel = Some(std::sync::Arc::new(std::sync::atomic::AtomicBool::new(
            true,
        )));
        let e = read(&store, &store.uri("fields/"), csv.clone(), &cancelled)
            .await
            .unwrap_err();
        assert_eq!(e.to_string(), "channel 'train': reading was cancelled");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_bucket_wrong_credentials_and_no_server() {
    let store = Store::s3();
    let opts = store.opts(true, CSV);
    let e = read(
        &store,
        "s3://no-such-bucket/data/",
        serde_json::json!({}),
        &opts,
    )
    .await
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "channel 'train': the bucket 'no-such-bucket' does not exist (s3://no-such-bucket/data/)"
    );
    // Wrong credentials are refused, not hidden.
    let mut wrong = opts.clone();
    wrong.s3 = wrong.s3.with_credentials("someone", "else");
    store.put("data/a.csv", b"1,2\n").await;
    let e = read(&store, &store.uri("data/"), serde_json::json!({}), &wrong)
        .await
        .unwrap_err();
    assert!(
        e.to_string().starts_with(&format!(
            "channel 'train': cannot read s3://{BUCKET}/data/: "
        )),
        "{e}"
    );
    eprintln!("wrong credentials: {e}");
    // No server at all: a bounded number of retries, then an error naming the location.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut dead = opts.clone();
    dead.s3 = dead.s3.with_endpoint(format!("http://127.0.0.1:{closed}"));
    let started = std::time::Instant::now();
    let e = read(&store, &store.uri("data/"), serde_json::json!({}), &dead)
        .await
        .unwrap_err();
    assert!(
        e.to_string().starts_with(&format!(
            "channel 'train': cannot read s3://{BUCKET}/data/: "
        )),
        "{e}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    eprintln!("no server ({:?}): {e}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_uris_and_local_files() {
    let store = Store::local();
    store.put("d/a.csv", b"1,2\n").await;
    let Store::Local(dir) = &store else {
        unreachable!()
    };
    let uri = format!("file://{}/d/a.csv", dir.path().display());
    let d = read(&store, &uri, serde_json::json!({}), &store.opts(true, CSV))
        .await
        .unwrap();
    assert_eq!(
        (d.labels().unwrap(), d.features()),
        (&[1.0][..], &[2.0][..])
    );
    // Hidden files in a folder are left out.
    store.put("d/.hidden.csv", b"x,y,z\n").await;
    let d = read(
        &store,
        &store.uri("d"),
        serde_json::json!({}),
        &store.opts(true, CSV),
    )
    .await
    .unwrap();
    assert_eq!(d.n_rows(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_paths_are_confined_to_the_import_roots() {
    let root = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("data")).unwrap();
    std::fs::write(root.path().join("data/a.csv"), b"1,2\n").unwrap();
    std::fs::write(outside.path().join("secret.csv"), b"1,42\n").unwrap();
    let mut opts = ReadOptions::new(true, CSV);
    opts.local = pier_model_store::ImportPolicy::under_roots(&[root.path().to_path_buf()]).unwrap();

    let inside = root.path().join("data");
    let d = read_channel(
        &channel(inside.to_str().unwrap(), "S3Prefix", serde_json::json!({})),
        &opts,
    )
    .await
    .unwrap();
    assert_eq!(d.features(), &[2.0]);

    let secret = outside.path().join("secret.csv");
    let e = read_channel(
        &channel(secret.to_str().unwrap(), "S3Prefix", serde_json::json!({})),
        &opts,
    )
    .await
    .unwrap_err();
    let root_shown = std::fs::canonicalize(root.path()).unwrap();
    assert_eq!(
        e.to_string(),
        format!(
            "channel 'train': {} may not be read: it is outside the import roots ({})",
            secret.display(),
            root_shown.display()
        )
    );

    // A link inside the root that leads out is refused when the file is opened.
    std::os::unix::fs::symlink(&secret, root.path().join("data/b.csv")).unwrap();
    let e = read_channel(
        &channel(inside.to_str().unwrap(), "S3Prefix", serde_json::json!({})),
        &opts,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(e, ChannelError::Refused { ref location, .. } if location.ends_with("data/b.csv")),
        "{e}"
    );

    // A local manifest naming a file outside the roots.
    let manifest =
        serde_json::json!([{"prefix": format!("{}/", outside.path().display())}, "secret.csv"]);
    std::fs::write(root.path().join("m.manifest"), manifest.to_string()).unwrap();
    let m = root.path().join("m.manifest");
    let e = read_channel(
        &channel(m.to_str().unwrap(), "ManifestFile", serde_json::json!({})),
        &opts,
    )
    .await
    .unwrap_err();
    assert!(matches!(e, ChannelError::Refused { .. }), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_read_leaves_the_channel_readable() {
    // A channel large enough to be mid-read when the caller gives up (the read future is
    // dropped: its download is aborted and its parsing thread stops).
    let store = Store::s3();
    let line = b"1,0.5,0.25,0.125\n".repeat(64 * 1024);
    for i in 0..4 {
        store.put(&format!("big/part-{i}.csv"), &line).await;
    }
    let c = channel(&store.uri("big/"), "S3Prefix", serde_json::json!({}));
    let opts = store.opts(true, CSV);
    let timed_out =
        tokio::time::timeout(std::time::Duration::from_millis(1), read_channel(&c, &opts)).await;
    assert!(timed_out.is_err(), "the read finished within 1 ms");
    // The channel still reads whole afterwards.
    let d = read_channel(&c, &opts).await.unwrap();
    assert_eq!(d.n_rows(), 4 * 64 * 1024);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_objects_arrive_whole_through_ranged_gets() {
    let store = Store::s3();
    // Past pier_jobs::channels::RANGE_BYTES: downloaded as ranges, reassembled in order, with
    // lines cut at every range boundary.
    let mut csv = Vec::new();
    let mut rows = 0u64;
    while (csv.len() as u64) < 2 * pier_jobs::channels::RANGE_BYTES + 12345 {
        csv.extend_from_slice(format!("{},{},{}\n", rows % 2, rows, rows * 3).as_bytes());
        rows += 1;
    }
    store.put("large/data.csv", &csv).await;
    store.put("large/data.csv.gz/ignored", b"").await;
    let d = read(
        &store,
        &store.uri("large/data.csv"),
        serde_json::json!({}),
        &store.opts(true, CSV),
    )
    .await
    .unwrap();
    assert_eq!(d.n_rows() as u64, rows);
    for i in [0, 1, rows / 2, rows - 1] {
        assert_eq!(d.row(i as usize), &[i as f32, (i * 3) as f32], "row {i}");
    }
    // The same through gzip.
    store.put("large-gz/data.csv.gz", &gzip(&csv)).await;
    let d = read(
        &store,
        &store.uri("large-gz/"),
        serde_json::json!({"CompressionType": "Gzip"}),
        &store.opts(true, CSV),
    )
    .await
    .unwrap();
    assert_eq!(d.n_rows() as u64, rows);
}
