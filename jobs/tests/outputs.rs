//! model.tar.gz outputs written as SageMaker writes them (local folder and a real S3 server),
//! and CreateModel's `ModelDataUrl` fetched back and unpacked with the model store's rules.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};

use common::{BUCKET, S3Server};
use object_store::path::Path as ObjectPath;
use pier_jobs::output::{OutputError, fetch_model_data, stage_model_data, write_model_tarball};
use pier_model_store::{Budget, Cancel, ImportLimits, ImportPolicy, ModelStore};

/// The (name, content) of every entry of a tar.gz.
fn entries(tar_gz: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(tar_gz));
    archive
        .entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let name = e.path().unwrap().display().to_string();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            (name, data)
        })
        .collect()
}

fn model_files(dir: &Path) -> Vec<(String, PathBuf)> {
    std::fs::write(dir.join("model.json"), b"{\"trees\": []}").unwrap();
    std::fs::write(dir.join("meta"), b"v1").unwrap();
    vec![
        ("xgboost-model".to_owned(), dir.join("model.json")),
        ("pier-meta".to_owned(), dir.join("meta")),
    ]
}

/// Incompressible bytes (xorshift), so a tarball of them crosses the multipart threshold.
fn noise(n: usize) -> Vec<u8> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_output_is_renamed_into_place() {
    let src = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let files = model_files(src.path());
    let base = out.path().join("models");
    let uri = write_model_tarball(base.to_str().unwrap(), "job-1", &files, &Default::default())
        .await
        .unwrap();
    let dest = base.join("job-1/output/model.tar.gz");
    assert_eq!(uri, dest.display().to_string());
    let got = entries(&std::fs::read(&dest).unwrap());
    assert_eq!(
        got,
        vec![
            ("xgboost-model".to_owned(), b"{\"trees\": []}".to_vec()),
            ("pier-meta".to_owned(), b"v1".to_vec())
        ]
    );
    // Nothing but the archive is left in the folder (the temporary name was renamed).
    let names: Vec<_> = std::fs::read_dir(dest.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, vec!["model.tar.gz"]);

    let file_uri = format!("file://{}/", out.path().display());
    let uri = write_model_tarball(&file_uri, "job-2", &files, &Default::default())
        .await
        .unwrap();
    assert_eq!(
        uri,
        format!("file://{}/job-2/output/model.tar.gz", out.path().display())
    );

    let e = write_model_tarball(&file_uri, "../x", &files, &Default::default())
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("S3OutputPath '{file_uri}' cannot hold the job name '../x'")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_output_round_trips_through_create_model() {
    let server = S3Server::start(BUCKET);
    let s3 = server.config();
    let src = tempfile::tempdir().unwrap();
    let files = model_files(src.path());
    let uri = write_model_tarball("s3://pier-data/output", "job-1", &files, &s3)
        .await
        .unwrap();
    assert_eq!(uri, "s3://pier-data/output/job-1/output/model.tar.gz");
    let got = server
        .client(BUCKET)
        .get(&ObjectPath::from("output/job-1/output/model.tar.gz"))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(
        entries(&got)[0],
        ("xgboost-model".to_owned(), b"{\"trees\": []}".to_vec())
    );

    // CreateModel's ModelDataUrl: downloaded, then unpacked into a staging version.
    let scratch = tempfile::tempdir().unwrap();
    let limits = ImportLimits::default();
    let source = fetch_model_data(
        &uri,
        scratch.path(),
        &ImportPolicy::anywhere(),
        &limits,
        &s3,
    )
    .await
    .unwrap();
    let store_dir = tempfile::tempdir().unwrap();
    let store = ModelStore::open(store_dir.path()).unwrap();
    let staging =
        stage_model_data(&store, &source, &mut Budget::new(limits, Cancel::new())).unwrap();
    let mut names: Vec<_> = staging.files().iter().map(|f| f.name.clone()).collect();
    names.sort();
    assert_eq!(names, vec!["pier-meta", "xgboost-model"]);
    let model = std::fs::read(staging.file_path("xgboost-model").unwrap()).unwrap();
    assert_eq!(model, b"{\"trees\": []}");

    // Over the download limit.
    let tiny = ImportLimits {
        max_bytes: 10,
        ..limits
    };
    let e = fetch_model_data(&uri, scratch.path(), &ImportPolicy::anywhere(), &tiny, &s3)
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("{uri} is larger than the limit of 10 bytes")
    );

    let missing = "s3://pier-data/output/nope/output/model.tar.gz";
    let e = fetch_model_data(
        missing,
        scratch.path(),
        &ImportPolicy::anywhere(),
        &limits,
        &s3,
    )
    .await
    .unwrap_err();
    assert_eq!(e.to_string(), format!("{missing} does not exist"));

    let e = fetch_model_data(
        "s3://pier-data/output/model.bin",
        scratch.path(),
        &ImportPolicy::anywhere(),
        &limits,
        &s3,
    )
    .await
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "ModelDataUrl 's3://pier-data/output/model.bin' does not name a model archive (…/model.tar.gz, .tgz or .tar)"
    );

    // (s3s-fs creates a missing bucket on PUT, unlike S3, so an unknown bucket is tested on
    // the read side, in tests/channels.rs.) A store that does not answer: the error names the
    // object, after the bounded retries.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let dead = pier_jobs::channels::S3Config::default()
        .with_endpoint(format!("http://127.0.0.1:{closed}"))
        .with_credentials(common::ACCESS_KEY, common::SECRET_KEY);
    let e = write_model_tarball("s3://pier-data/out", "job-1", &files, &dead)
        .await
        .unwrap_err();
    assert!(matches!(e, OutputError::S3 { .. }), "{e}");
    assert!(
        e.to_string()
            .starts_with("s3://pier-data/out/job-1/output/model.tar.gz: "),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_outputs_go_up_in_parts() {
    let server = S3Server::start(BUCKET);
    let src = tempfile::tempdir().unwrap();
    let big = noise(20 << 20);
    std::fs::write(src.path().join("big"), &big).unwrap();
    let files = vec![("model".to_owned(), src.path().join("big"))];
    let uri = write_model_tarball("s3://pier-data/big/", "job-big", &files, &server.config())
        .await
        .unwrap();
    assert_eq!(uri, "s3://pier-data/big/job-big/output/model.tar.gz");
    let got = server
        .client(BUCKET)
        .get(&ObjectPath::from("big/job-big/output/model.tar.gz"))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(got.len() > pier_jobs::output::MULTIPART_THRESHOLD);
    let e = entries(&got);
    assert_eq!(e.len(), 1);
    assert!(e[0].1 == big, "the 20 MiB model came back changed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsafe_archives_are_refused_by_the_store_rules() {
    let server = S3Server::start(BUCKET);
    // A tar entry named `../evil`, written by hand (the tar crate refuses to make one).
    let mut header = tar::Header::new_old();
    header.as_old_mut().name[..7].copy_from_slice(b"../evil");
    header.set_size(4);
    header.set_mode(0o644);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_cksum();
    let mut raw = header.as_bytes().to_vec();
    raw.extend_from_slice(b"evil");
    raw.resize(1024 + 512 * 2, 0);
    server
        .client(BUCKET)
        .put(
            &ObjectPath::from("bad/model.tar.gz"),
            common::gzip(&raw).into(),
        )
        .await
        .unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let limits = ImportLimits::default();
    let source = fetch_model_data(
        "s3://pier-data/bad/model.tar.gz",
        scratch.path(),
        &ImportPolicy::anywhere(),
        &limits,
        &server.config(),
    )
    .await
    .unwrap();
    let store_dir = tempfile::tempdir().unwrap();
    let store = ModelStore::open(store_dir.path()).unwrap();
    let e = stage_model_data(&store, &source, &mut Budget::new(limits, Cancel::new())).unwrap_err();
    assert!(e.to_string().contains("'..'"), "{e}");
    assert!(!store_dir.path().join("evil").exists());
}
