//! Replays every committed corpus file (`fuzz/corpus/<target>/*`) through its fuzz entry
//! point, so `cargo test` keeps what the fuzzer found from regressing. A panic on any thread
//! (a request handler, a spawned task, the compute pool) fails the replay.

use std::path::Path;
use std::sync::Once;
use std::sync::atomic::{AtomicUsize, Ordering};

static PANICS: AtomicUsize = AtomicUsize::new(0);

fn count_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, Ordering::SeqCst);
            previous(info);
        }));
    });
}

fn replay(target: &str) {
    count_panics();
    let entry = pier_fuzz_targets::TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .map(|(_, f)| *f)
        .expect("a known target");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} has no corpus", dir.display());
    for file in &files {
        let data = std::fs::read(file).expect("a readable corpus file");
        entry(&data);
        assert_eq!(
            PANICS.load(Ordering::SeqCst),
            0,
            "a panic while replaying {}",
            file.display()
        );
    }
}

#[test]
fn every_target_has_a_corpus() {
    for (name, _) in pier_fuzz_targets::TARGETS {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fuzz/corpus")
            .join(name);
        assert!(dir.is_dir(), "{} is missing", dir.display());
        let fuzz = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fuzz/fuzz_targets")
            .join(format!("{name}.rs"));
        assert!(fuzz.is_file(), "{} is missing", fuzz.display());
    }
}

#[test]
fn csv() {
    replay("csv");
}

#[test]
fn json() {
    replay("json");
}

#[test]
fn json_lines() {
    replay("json_lines");
}

#[test]
fn v2_json() {
    replay("v2_json");
}

#[test]
fn v2_binary() {
    replay("v2_binary");
}

#[test]
fn grpc_model_infer() {
    replay("grpc_model_infer");
}

#[test]
fn control() {
    replay("control");
}
