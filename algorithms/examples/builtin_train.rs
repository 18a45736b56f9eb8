//! Trains one built-in algorithm from SageMaker-style CSV channels and writes the artifact,
//! the predictions on the test channel and the metrics (used by `scripts/builtin/compare.py`).
//!
//! Usage: `builtin_train <algorithm> <train.csv> <test.csv|-> <out_dir> [name=value ...]`

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::{Context, bail};
use pier_algorithms::builtin::{Algorithm, Dataset, Predictions, load_predictor, train};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 4 {
        bail!(
            "usage: builtin_train <algorithm> <train.csv> <test.csv|-> <out_dir> [name=value ...]"
        );
    }
    let algorithm: Algorithm = args[0].parse()?;
    let read = |p: &str| -> anyhow::Result<Dataset> {
        let bytes = std::fs::read(p).with_context(|| format!("reading {p}"))?;
        Ok(Dataset::from_csv(&bytes, true)?)
    };
    let strip = |d: Dataset| -> anyhow::Result<Dataset> {
        if algorithm.supervised() {
            Ok(d)
        } else {
            Ok(Dataset::new(d.features().to_vec(), d.n_cols(), None)?)
        }
    };
    let train_set = strip(read(&args[1])?)?;
    let test_set = if args[2] == "-" {
        None
    } else {
        Some(strip(read(&args[2])?)?)
    };
    let mut hp = BTreeMap::new();
    for kv in &args[4..] {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("{kv} is not name=value"))?;
        hp.insert(k.to_string(), v.to_string());
    }
    let start = std::time::Instant::now();
    let model = train(algorithm, &hp, &train_set, test_set.as_ref(), &|_| {})?;
    let seconds = start.elapsed().as_secs_f64();
    let out = std::path::Path::new(&args[3]);
    std::fs::create_dir_all(out)?;
    std::fs::write(out.join(model.file_name), &model.artifact)?;
    if let Some(t) = &test_set {
        let predictor = load_predictor(algorithm, &model.artifact)?;
        let mut f = std::io::BufWriter::new(std::fs::File::create(out.join("predictions.csv"))?);
        match predictor.predict(t.features(), t.n_rows())? {
            Predictions::Scores { width, scores, .. } => {
                for row in scores.chunks(width) {
                    writeln!(
                        f,
                        "{}",
                        row.iter()
                            .map(|v| format!("{v:?}"))
                            .collect::<Vec<_>>()
                            .join(",")
                    )?;
                }
            }
            Predictions::Clusters {
                closest_cluster,
                distance_to_cluster,
            } => {
                for (c, d) in closest_cluster.iter().zip(&distance_to_cluster) {
                    writeln!(f, "{c},{d:?}")?;
                }
            }
            Predictions::Projections { dim, projections } => {
                for row in projections.chunks(dim) {
                    writeln!(
                        f,
                        "{}",
                        row.iter()
                            .map(|v| format!("{v:?}"))
                            .collect::<Vec<_>>()
                            .join(",")
                    )?;
                }
            }
        }
    }
    let mut metrics = model.metrics.clone();
    metrics.insert("seconds".into(), seconds);
    std::fs::write(
        out.join("metrics.json"),
        serde_json::to_vec_pretty(&metrics)?,
    )?;
    println!("{}", serde_json::to_string(&metrics)?);
    Ok(())
}
