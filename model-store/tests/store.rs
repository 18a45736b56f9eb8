//! Publish, open, list and delete against a real folder, including corruption and races.

use std::collections::BTreeSet;
use std::fs;
use std::sync::{Arc, Barrier};

use pier_model_store::{ArtifactFile, ManifestDraft, ModelStore, StoreError, VersionSelector};

fn draft() -> ManifestDraft {
    ManifestDraft {
        runtime: "onnx".into(),
        ..Default::default()
    }
}

fn store() -> (tempfile::TempDir, ModelStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = ModelStore::open(dir.path().join("store")).unwrap();
    (dir, store)
}

#[test]
fn versions_count_up_and_open_verifies() {
    let (_t, store) = store();
    let m1 = store
        .publish(
            "m",
            vec![ArtifactFile::from_bytes("model.onnx", b"one".to_vec())],
            draft(),
        )
        .unwrap();
    let m2 = store
        .publish(
            "m",
            vec![ArtifactFile::from_bytes("model.onnx", b"two".to_vec())],
            draft(),
        )
        .unwrap();
    assert_eq!((m1.version, m2.version), (1, 2));
    assert_eq!(store.list_versions("m").unwrap(), vec![1, 2]);
    assert_eq!(store.list_names().unwrap(), vec!["m".to_string()]);

    let latest = store.open_version("m", VersionSelector::Latest).unwrap();
    assert_eq!(latest.manifest().version, 2);
    assert_eq!(fs::read(latest.primary_path().unwrap()).unwrap(), b"two");
    let first = store.open_version("m", Some(1)).unwrap();
    assert_eq!(
        fs::read(first.file_path("model.onnx").unwrap()).unwrap(),
        b"one"
    );
    assert_eq!(first.manifest().files[0].size, 3);
}

#[test]
fn publish_from_path_copies_the_file() {
    let (t, store) = store();
    let src = t.path().join("src.bin");
    fs::write(&src, vec![7u8; 200_000]).unwrap();
    let m = store
        .publish("big", vec![ArtifactFile::from_path("w.bin", &src)], draft())
        .unwrap();
    assert_eq!(m.files[0].size, 200_000);
    fs::remove_file(&src).unwrap();
    store.open_version("big", VersionSelector::Latest).unwrap();
}

#[test]
fn deleted_versions_are_gone_and_never_reused() {
    let (_t, store) = store();
    for _ in 0..3 {
        store
            .publish(
                "m",
                vec![ArtifactFile::from_bytes("f", b"x".to_vec())],
                draft(),
            )
            .unwrap();
    }
    store.delete_version("m", 3).unwrap();
    assert_eq!(store.list_versions("m").unwrap(), vec![1, 2]);
    assert!(matches!(
        store.open_version("m", Some(3)),
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store.delete_version("m", 3),
        Err(StoreError::NotFound { .. })
    ));
    let next = store
        .publish(
            "m",
            vec![ArtifactFile::from_bytes("f", b"y".to_vec())],
            draft(),
        )
        .unwrap();
    assert_eq!(next.version, 4);
}

#[test]
fn unknown_model_and_version_are_not_found() {
    let (_t, store) = store();
    let err = store
        .open_version("nope", VersionSelector::Latest)
        .unwrap_err();
    assert!(
        matches!(err, StoreError::NotFound { version: None, .. }),
        "{err}"
    );
    store
        .publish(
            "m",
            vec![ArtifactFile::from_bytes("f", b"x".to_vec())],
            draft(),
        )
        .unwrap();
    let err = store.open_version("m", Some(9)).unwrap_err();
    assert_eq!(err.to_string(), "model \"m\" has no version 9");
}

#[test]
fn invalid_names_are_refused_before_writing() {
    let (_t, store) = store();
    let err = store.publish("bad_name", vec![], draft()).unwrap_err();
    assert!(matches!(err, StoreError::InvalidName { .. }));
    let err = store
        .publish(
            "m",
            vec![ArtifactFile::from_bytes("../escape", b"x".to_vec())],
            draft(),
        )
        .unwrap_err();
    assert!(matches!(err, StoreError::InvalidFileName { .. }), "{err}");
    let twice = vec![
        ArtifactFile::from_bytes("a", b"x".to_vec()),
        ArtifactFile::from_bytes("a", b"y".to_vec()),
    ];
    assert!(store.publish("m", twice, draft()).is_err());
    assert!(store.list_names().unwrap().is_empty());
}

fn published(store: &ModelStore) -> std::path::PathBuf {
    let m = store
        .publish(
            "m",
            vec![ArtifactFile::from_bytes(
                "model.onnx",
                b"0123456789".to_vec(),
            )],
            draft(),
        )
        .unwrap();
    store.root().join("m").join(m.version.to_string())
}

#[test]
fn truncated_file_is_a_size_mismatch_naming_the_file() {
    let (_t, store) = store();
    let dir = published(&store);
    fs::write(dir.join("model.onnx"), b"01234").unwrap();
    let err = store
        .open_version("m", VersionSelector::Latest)
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::SizeMismatch {
                expected: 10,
                actual: 5,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("model.onnx"), "{err}");
}

#[test]
fn altered_file_is_a_digest_mismatch() {
    let (_t, store) = store();
    let dir = published(&store);
    fs::write(dir.join("model.onnx"), b"0123456780").unwrap();
    let err = store
        .open_version("m", VersionSelector::Latest)
        .unwrap_err();
    assert!(matches!(err, StoreError::DigestMismatch { .. }), "{err}");
    assert!(err.to_string().contains("model.onnx"), "{err}");
}

#[test]
fn missing_file_and_missing_manifest_are_named() {
    let (_t, store) = store();
    let dir = published(&store);
    fs::remove_file(dir.join("model.onnx")).unwrap();
    let err = store
        .open_version("m", VersionSelector::Latest)
        .unwrap_err();
    assert!(
        matches!(err, StoreError::FileMissing { ref path } if path.ends_with("model.onnx")),
        "{err}"
    );

    fs::remove_file(dir.join("manifest.json")).unwrap();
    let err = store
        .open_version("m", VersionSelector::Latest)
        .unwrap_err();
    assert!(matches!(err, StoreError::ManifestMissing { .. }), "{err}");
    assert!(err.to_string().contains("manifest.json"), "{err}");
}

#[test]
fn garbage_and_misplaced_manifests_are_invalid() {
    let (_t, store) = store();
    let dir = published(&store);
    let good = fs::read_to_string(dir.join("manifest.json")).unwrap();
    fs::write(dir.join("manifest.json"), "{not json").unwrap();
    let err = store.open_version("m", Some(1)).unwrap_err();
    assert!(matches!(err, StoreError::ManifestInvalid { .. }), "{err}");

    fs::write(
        dir.join("manifest.json"),
        good.replace("\"version\": 1", "\"version\": 7"),
    )
    .unwrap();
    let err = store.open_version("m", Some(1)).unwrap_err();
    assert!(err.to_string().contains("lies at m/1"), "{err}");
}

#[test]
fn racing_threads_get_distinct_versions_with_their_own_content() {
    let (_t, store) = store();
    let threads = 16;
    let per_thread = 8;
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let store = store.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                (0..per_thread)
                    .map(|i| {
                        let body = format!("thread {t} item {i}");
                        let m = store
                            .publish(
                                "race",
                                vec![ArtifactFile::from_bytes("f.txt", body.clone())],
                                draft(),
                            )
                            .unwrap();
                        (m.version, body)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let results: Vec<(u64, String)> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    let versions: BTreeSet<u64> = results.iter().map(|r| r.0).collect();
    assert_eq!(
        versions.len(),
        threads * per_thread,
        "every publish got its own version"
    );
    assert_eq!(versions, (1..=(threads * per_thread) as u64).collect());
    for (version, body) in results {
        let a = store.open_version("race", Some(version)).unwrap();
        assert_eq!(fs::read_to_string(a.primary_path().unwrap()).unwrap(), body);
    }
    let staging = fs::read_dir(store.root().join(".staging")).unwrap().count();
    assert_eq!(staging, 0, "no staging folder left behind");
}
