//! `pier models push` killed with SIGKILL in the middle of its copy (issue 12, defect 8): its
//! staging folder is removed by the next store open (as `pier serve` does at start), no
//! partial version exists, and a push still running is never swept by a concurrent open.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pier_model_store::ModelStore;

/// A staging folder holding a partly written file, if there is one yet.
fn partial_staging(staging: &Path) -> Option<PathBuf> {
    std::fs::read_dir(staging).ok()?.flatten().find_map(|e| {
        let written = std::fs::read_dir(e.path())
            .ok()?
            .flatten()
            .any(|f| f.metadata().is_ok_and(|m| m.len() > 0));
        written.then(|| e.path())
    })
}

#[test]
fn a_push_killed_mid_copy_is_swept_and_a_live_one_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let big = dir.path().join("big.onnx");
    // 4 GiB of holes: takes seconds to copy, costs nothing to create.
    std::fs::File::create(&big)
        .unwrap()
        .set_len(4 << 30)
        .unwrap();
    let mut push = Command::new(env!("CARGO_BIN_EXE_pier"))
        .args(["models", "push", "big"])
        .arg(&big)
        .arg("--data-dir")
        .arg(&data)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let staging = data.join("store/.staging");
    let deadline = Instant::now() + Duration::from_secs(60);
    let folder = loop {
        if let Some(folder) = partial_staging(&staging) {
            break folder;
        }
        assert!(
            push.try_wait().unwrap().is_none(),
            "the push ended before it was seen copying"
        );
        assert!(Instant::now() < deadline, "the push never started copying");
        std::thread::sleep(Duration::from_millis(1));
    };

    // A store opened meanwhile (a server starting, another push) leaves the live push alone.
    let store = ModelStore::open(data.join("store")).unwrap();
    assert_eq!(store.sweep_staging().unwrap(), 0);
    assert!(folder.exists(), "a live writer's staging was swept");
    assert!(push.try_wait().unwrap().is_none(), "still copying");

    push.kill().unwrap(); // SIGKILL
    push.wait().unwrap();
    assert!(folder.exists(), "the kill left its partial copy behind");
    assert!(store.list_versions("big").unwrap().is_empty());

    // The next open removes it; no partial version was ever published.
    let store = ModelStore::open(data.join("store")).unwrap();
    assert!(!folder.exists(), "the dead push's staging was not swept");
    assert_eq!(std::fs::read_dir(&staging).unwrap().count(), 0);
    assert!(store.list_versions("big").unwrap().is_empty());
    assert!(!data.join("store/big/1").exists());
}
