//! Times Pier's training of the built-in algorithms on one labelled CSV (label first) and
//! prints one JSON line per algorithm (used by `scripts/builtin/compare.py`, which times
//! scikit-learn and XGBoost on the same data with the same hyperparameters).
//!
//! Usage: `builtin_bench <data.csv> [algorithm ...]` (default: xgboost kmeans pca
//! linear-learner). Hyperparameters are fixed below and mirrored in the script.

use std::collections::BTreeMap;

use anyhow::Context;
use pier_algorithms::builtin::{Algorithm, Dataset, train};

fn hyperparameters(a: Algorithm) -> BTreeMap<String, String> {
    let kv: &[(&str, &str)] = match a {
        Algorithm::XGBoost => &[
            ("objective", "binary:logistic"),
            ("num_round", "100"),
            ("max_depth", "6"),
            ("eta", "0.3"),
            ("max_bin", "256"),
        ],
        Algorithm::KMeans => &[("k", "8"), ("init_method", "kmeans++")],
        Algorithm::Pca => &[("num_components", "10")],
        Algorithm::LinearLearner => &[("predictor_type", "binary_classifier"), ("epochs", "5")],
        Algorithm::FactorizationMachines => &[
            ("predictor_type", "binary_classifier"),
            ("num_factors", "8"),
        ],
    };
    kv.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// CPU seconds (user + system) this process has used, from `/proc/self/stat` on Linux
/// (10 ms resolution); `None` elsewhere.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path = args
        .first()
        .context("usage: builtin_bench <data.csv> [algorithm ...]")?;
    let bytes = std::fs::read(path).with_context(|| format!("reading {path}"))?;
    let labelled = Dataset::from_csv(&bytes, true)?;
    let unlabelled = Dataset::new(labelled.features().to_vec(), labelled.n_cols(), None)?;
    let names: Vec<String> = if args.len() > 1 {
        args[1..].to_vec()
    } else {
        ["xgboost", "kmeans", "pca", "linear-learner"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    };
    for name in names {
        let a: Algorithm = name.parse()?;
        let data = if a.supervised() {
            &labelled
        } else {
            &unlabelled
        };
        let hp = hyperparameters(a);
        let (start, cpu_start) = (std::time::Instant::now(), cpu_seconds());
        let model = train(a, &hp, data, None, &|_| {})?;
        let seconds = start.elapsed().as_secs_f64();
        let cpu = cpu_seconds().zip(cpu_start).map(|(b, a)| b - a);
        let line = serde_json::json!({
            "algorithm": a.image_name(),
            "seconds": seconds,
            "cpu_seconds": cpu,
            "threads": rayon::current_num_threads(),
            "hyperparameters": hp,
            "metrics": model.metrics,
        });
        println!("{line}");
    }
    Ok(())
}
