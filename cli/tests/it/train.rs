//! `pier train` as a user runs it: the real binary, a temporary data folder, a fixture.

use std::path::{Path, PathBuf};
use std::process::Command;

use pier_model_store::{ModelStore, VersionSelector};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/builtin")
        .join(name)
}

#[test]
fn trains_linear_learner_prints_metrics_and_publishes() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_pier"))
        .arg("train")
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--algorithm", "linear-learner", "--model-name", "cancer"])
        .arg("--train")
        .arg(fixture("breast_cancer_train.csv"))
        .arg("--validation")
        .arg(fixture("breast_cancer_test.csv"))
        .args([
            "--hyperparameters",
            "predictor_type=binary_classifier",
            "epochs=5",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let accuracy = stdout
        .lines()
        .find_map(|l| l.strip_prefix("validation:binary_classification_accuracy = "))
        .unwrap_or_else(|| panic!("no accuracy in:\n{stdout}"));
    let accuracy: f64 = accuracy.parse().unwrap();
    assert!(accuracy > 0.9, "{accuracy}");
    assert_eq!(stdout.lines().last(), Some("pier://cancer/1"), "{stdout}");

    let store = ModelStore::open(dir.path().join("store")).unwrap();
    let artifact = store
        .open_version("cancer", VersionSelector::Exact(1))
        .unwrap();
    let m = artifact.manifest();
    assert_eq!(m.runtime, "linear-learner");
    assert_eq!(m.properties["num_features"], 30);
    assert_eq!(m.signature.inputs[0].shape, vec![-1, 30]);
    assert_eq!(
        m.provenance["hyperparameters"]["predictor_type"],
        "binary_classifier"
    );
    assert!(m.provenance["metrics"]["validation:binary_classification_accuracy"].is_number());
    assert!(
        m.provenance["train"]
            .as_str()
            .unwrap()
            .ends_with("breast_cancer_train.csv")
    );
}

#[test]
fn bad_hyperparameters_fail_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_pier"))
        .arg("train")
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--algorithm", "linear-learner", "--model-name", "cancer"])
        .arg("--train")
        .arg(fixture("breast_cancer_train.csv"))
        .args([
            "--hyperparameters",
            "predictor_type=binary_classifier",
            "epochz=5",
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("epochz"), "{stderr}");
}
