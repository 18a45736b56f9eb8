//! Tuning on real training: the XGBoost built-in on a 50k-row synthetic classification set
//! (40k train, 10k validation, 10 features, a non-linear noisy label), 4 hyperparameters
//! (`eta` log, `max_depth`, `min_child_weight` log, `subsample`), 30 jobs of up to 40 rounds,
//! one at a time, for Random, Bayesian and Hyperband (MinResource 2, MaxResource 40), with
//! the same seeds. The strategies run through the runner's proposal API
//! ([`pier_jobs::tuning::strategy::propose`]) and Hyperband's rung rule
//! ([`pier_jobs::tuning::strategy::hyperband::promote`]) on each round's `validation:auc`,
//! training in process (no server). Prints each search's best `validation:auc` and its total
//! training time. Not run in CI:
//!
//! ```text
//! cargo run --release --example tuning_real [SEEDS]
//! ```

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use pier_algorithms::builtin::{Algorithm, Dataset, Progress, TrainError, train_cancellable};
use pier_jobs::tuning::strategy::hyperband::{Rungs, promote};
use pier_jobs::tuning::strategy::{
    Direction, Kind, Observation, Outcome, Point, Range, Space, propose,
};

const JOBS: usize = 30;
const ROUNDS: u64 = 40;
const METRIC: &str = "validation:auc";

fn data(rows: usize, seed: u64) -> Dataset {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut features = Vec::with_capacity(rows * 10);
    let mut labels = Vec::with_capacity(rows);
    for _ in 0..rows {
        let x: Vec<f32> = (0..10).map(|_| rng.f32() * 2.0 - 1.0).collect();
        let noise = (rng.f32() - 0.5) * 2.0 + (rng.f32() - 0.5) * 2.0;
        let logit = 2.0 * x[0] * x[1] - 1.5 * x[2] + (3.0 * x[3]).sin() + x[4] * x[4]
            - 0.5 * x[5] * x[6] * x[7]
            + 0.8 * (x[8] > 0.3) as i32 as f32
            + noise;
        features.extend_from_slice(&x);
        labels.push(f32::from(logit > 0.2));
    }
    Dataset::new(features, 10, Some(labels)).unwrap()
}

fn space() -> Space {
    Space::new(vec![
        Range::integer("max_depth", "2", "10", None).unwrap(),
        Range::continuous("eta", "0.01", "0.5", Some("Logarithmic")).unwrap(),
        Range::continuous("min_child_weight", "1", "50", Some("Logarithmic")).unwrap(),
        Range::continuous("subsample", "0.5", "1", None).unwrap(),
    ])
    .unwrap()
}

/// One job: its final (or, stopped early, last) `validation:auc`, rounds run.
fn train(
    point: &Point,
    train_set: &Dataset,
    validation: &Dataset,
    on_round: &dyn Fn(u64, f64) -> bool,
) -> (f64, u64) {
    let mut hp: BTreeMap<String, String> = point.clone();
    hp.insert("objective".into(), "binary:logistic".into());
    hp.insert("num_round".into(), ROUNDS.to_string());
    let cancel = AtomicBool::new(false);
    let last = Mutex::new((f64::NAN, 0u64));
    let progress = |p: Progress| {
        if let Some(&auc) = p.metrics.get(METRIC) {
            *last.lock().unwrap() = (auc, p.done as u64);
            if !on_round(p.done as u64, auc) {
                cancel.store(true, Ordering::SeqCst);
            }
        }
    };
    match train_cancellable(
        Algorithm::XGBoost,
        &hp,
        train_set,
        Some(validation),
        &progress,
        &cancel,
    ) {
        Ok(trained) => (trained.metrics[METRIC], ROUNDS),
        Err(TrainError::Cancelled) => *last.lock().unwrap(),
        Err(e) => panic!("training failed: {e}"),
    }
}

struct Result {
    best: f64,
    seconds: f64,
    rounds: u64,
}

fn search(kind: Kind, seed: u64, train_set: &Dataset, validation: &Dataset) -> Result {
    let space = space();
    let mut history: Vec<Observation> = Vec::new();
    let started = Instant::now();
    let mut rounds = 0;
    let rungs = Rungs::new(2, ROUNDS as i64).unwrap();
    // Hyperband: each bracket's rung values so far (step → losses).
    let mut peers: Vec<BTreeMap<u64, Vec<f64>>> = vec![BTreeMap::new(); rungs.brackets()];
    for i in 0..JOBS {
        let point = propose(kind, &space, Direction::Maximize, &history, 1, seed)
            .pop()
            .unwrap();
        let (auc, ran) = if kind == Kind::Hyperband {
            let bracket = i % rungs.brackets();
            let steps = rungs.rungs(bracket);
            let seen = Mutex::new(BTreeMap::<u64, f64>::new());
            let out = train(&point, train_set, validation, &|step, auc| {
                if !steps.contains(&step) {
                    return true;
                }
                seen.lock().unwrap().insert(step, -auc);
                let mut rung: Vec<f64> = peers[bracket].get(&step).cloned().unwrap_or_default();
                rung.push(-auc);
                promote(-auc, &rung)
            });
            for (step, loss) in seen.into_inner().unwrap() {
                peers[bracket].entry(step).or_default().push(loss);
            }
            out
        } else {
            train(&point, train_set, validation, &|_, _| true)
        };
        rounds += ran;
        history.push(Observation {
            point,
            outcome: Outcome::Value(auc),
        });
    }
    let best = history
        .iter()
        .filter_map(|o| match o.outcome {
            Outcome::Value(v) => Some(v),
            _ => None,
        })
        .fold(f64::NEG_INFINITY, f64::max);
    Result {
        best,
        seconds: started.elapsed().as_secs_f64(),
        rounds,
    }
}

fn main() {
    let seeds: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let train_set = data(40_000, 1);
    let validation = data(10_000, 2);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    println!("XGBoost, 40k/10k rows, 4 hyperparameters, {JOBS} jobs of up to {ROUNDS} rounds");
    println!(
        "{:<5} {:<10} {:>10} {:>10} {:>8}",
        "seed", "strategy", "best auc", "train s", "rounds"
    );
    pool.install(|| {
        for seed in 0..seeds {
            for (label, kind) in [
                ("random", Kind::Random),
                ("bayesian", Kind::Bayesian),
                ("hyperband", Kind::Hyperband),
            ] {
                let r = search(kind, seed, &train_set, &validation);
                println!(
                    "{seed:<5} {label:<10} {:>10.5} {:>10.1} {:>8}",
                    r.best, r.seconds, r.rounds
                );
            }
        }
    });
}
