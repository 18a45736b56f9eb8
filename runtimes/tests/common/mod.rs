//! Helpers shared by the runtime test binaries: the ONNX fixtures and publishing one into a
//! store the way the server does.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use pier_model_store::{
    Artifact, ArtifactFile, ManifestDraft, ManifestSignature, ModelStore, VersionSelector,
};

/// `fixtures/onnx/`.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/onnx")
}

/// Publishes fixture `name` (its model.onnx and signature.json) and opens it.
pub fn publish(store: &ModelStore, name: &str) -> Artifact {
    let dir = fixtures().join(name);
    let signature: ManifestSignature =
        serde_json::from_str(&std::fs::read_to_string(dir.join("signature.json")).unwrap())
            .unwrap();
    let draft = ManifestDraft {
        runtime: "onnx".into(),
        signature,
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
    store.open_version(name, VersionSelector::Latest).unwrap()
}
