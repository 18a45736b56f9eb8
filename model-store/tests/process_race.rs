//! Separate processes publishing to one model name at once.
//!
//! Runs without libtest (`harness = false`): the test re-executes its own binary as the child
//! publishers, which is how a race between processes can be had without a helper binary.

use std::collections::BTreeMap;
use std::process::Command;

use pier_model_store::{ArtifactFile, ManifestDraft, ModelStore};

const CHILDREN: usize = 4;
const PER_CHILD: usize = 12;

fn main() {
    if let Ok(root) = std::env::var("PIER_RACE_CHILD_ROOT") {
        let id: usize = std::env::var("PIER_RACE_CHILD_ID")
            .unwrap()
            .parse()
            .unwrap();
        child(&root, id);
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("store");
    ModelStore::open(&root).unwrap();
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..CHILDREN)
        .map(|id| {
            Command::new(&exe)
                .env("PIER_RACE_CHILD_ROOT", &root)
                .env("PIER_RACE_CHILD_ID", id.to_string())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success(), "a child publisher failed");
    }
    let store = ModelStore::open(&root).unwrap();
    let versions = store.list_versions("shared").unwrap();
    assert_eq!(
        versions,
        (1..=(CHILDREN * PER_CHILD) as u64).collect::<Vec<_>>()
    );
    let mut bodies = BTreeMap::new();
    for v in versions {
        let a = store.open_version("shared", Some(v)).unwrap();
        let body = std::fs::read_to_string(a.primary_path().unwrap()).unwrap();
        assert_eq!(
            a.manifest().provenance["body"],
            serde_json::json!(body),
            "content and manifest match"
        );
        assert!(bodies.insert(body, v).is_none(), "each publish stored once");
    }
    assert_eq!(bodies.len(), CHILDREN * PER_CHILD);
    println!("process_race: {} passed, 0 failed", 1);
}

fn child(root: &str, id: usize) {
    let store = ModelStore::open(root).unwrap();
    for i in 0..PER_CHILD {
        let body = format!("process {id} item {i}");
        let draft = ManifestDraft {
            runtime: "onnx".into(),
            provenance: [("body".to_string(), serde_json::json!(body))].into(),
            ..Default::default()
        };
        store
            .publish(
                "shared",
                vec![ArtifactFile::from_bytes("f.txt", body.clone())],
                draft,
            )
            .unwrap();
    }
}
