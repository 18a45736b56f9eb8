//! Times Pier's tree predictor on one thread, for `scripts/trees/bench_vs_xgboost.py`.
//!
//! ```text
//! cargo run --release -p pier-algorithms --example tree_bench -- MODEL DATA [RUNS] [PREDICTIONS_OUT]
//! ```
//!
//! `MODEL` is an XGBoost JSON/UBJSON or LightGBM text model (told apart by content).
//! `DATA` is `n_rows: u64 LE`, `n_features: u64 LE`, then `n_rows * n_features` `f32 LE`.
//! Prints one JSON line with the best of `RUNS` (default 7) timings, the wall time of all
//! timed runs and the process's CPU time over them (Linux; 0 elsewhere), so that a busy
//! machine shows as wall >> CPU; with
//! `PREDICTIONS_OUT`, also writes the predictions as `f32 LE` for a parity check.

use std::time::Instant;

use anyhow::{Context, bail};
use pier_algorithms::trees::{TreeEnsemble, load_model};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        bail!("usage: tree_bench MODEL DATA [RUNS] [PREDICTIONS_OUT]");
    }
    let model_bytes = std::fs::read(&args[1]).with_context(|| format!("reading {}", args[1]))?;
    let model: TreeEnsemble = load_model(&model_bytes)?;
    let data = std::fs::read(&args[2]).with_context(|| format!("reading {}", args[2]))?;
    if data.len() < 16 {
        bail!("{}: too short for the header", args[2]);
    }
    let n_rows = u64::from_le_bytes(data[0..8].try_into()?) as usize;
    let n_features = u64::from_le_bytes(data[8..16].try_into()?) as usize;
    let features: Vec<f32> = data[16..]
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    if features.len() != n_rows * n_features {
        bail!(
            "{}: {} values for {n_rows} x {n_features}",
            args[2],
            features.len()
        );
    }
    let runs: usize = args.get(3).map(|r| r.parse()).transpose()?.unwrap_or(7);
    let mut out = vec![0.0f32; n_rows * model.num_outputs()];
    model.predict_into(&features, n_rows, n_features, &mut out)?; // warm-up
    let mut best = f64::INFINITY;
    let (wall, cpu) = (Instant::now(), cpu_seconds());
    for _ in 0..runs {
        let start = Instant::now();
        model.predict_into(&features, n_rows, n_features, &mut out)?;
        best = best.min(start.elapsed().as_secs_f64());
    }
    let (wall, cpu) = (wall.elapsed().as_secs_f64(), cpu_seconds() - cpu);
    if let Some(path) = args.get(4) {
        let bytes: Vec<u8> = out.iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(path, bytes)?;
    }
    let checksum: f64 = out.iter().map(|&v| f64::from(v)).sum();
    println!(
        "{{\"rows\":{n_rows},\"trees\":{},\"best_seconds\":{best},\"rows_per_second\":{},\"checksum\":{checksum},\"wall_seconds\":{wall},\"cpu_seconds\":{cpu}}}",
        model.num_trees(),
        n_rows as f64 / best
    );
    Ok(())
}

/// User + system CPU seconds of this process so far, from `/proc/self/stat` (0 if absent).
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let ticks: f64 = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse::<f64>().ok())
        .sum();
    ticks / 100.0 // USER_HZ is 100 on Linux
}
