//! Search quality of Pier's tuning strategies through the same proposal API the runner uses
//! ([`pier_jobs::tuning::strategy::propose`]): Branin, Hartmann-6 and a mixed
//! integer/categorical/log-scaled function, 10 seeds (or `--seeds N` from `--first-seed S`),
//! budgets 20 and 50, sequential (one
//! proposal at a time) and 4 in parallel (batches of four, the pending ones known to the
//! strategy). Prints the median simple regret (best value found minus the optimum) per cell.
//! `benches/tuning/optuna_compare.py` prints the same table for Optuna's TPE and random
//! samplers. Not run in CI:
//!
//! ```text
//! cargo run --release --example tuning_bench -- [--seeds 20] [--first-seed 0] [--per-seed] \
//!     [--trace] [branin|hartmann6|mixed]
//! ```

use std::time::Instant;

use pier_jobs::tuning::strategy::{
    Direction, Kind, Observation, Outcome, Point, Range, Space, propose,
};

struct Problem {
    name: &'static str,
    space: Space,
    f: fn(&Point) -> f64,
    optimum: f64,
}

fn get(p: &Point, k: &str) -> f64 {
    p[k].parse().unwrap()
}

fn branin(p: &Point) -> f64 {
    let (x1, x2) = (get(p, "x1"), get(p, "x2"));
    let pi = std::f64::consts::PI;
    let (a, b, c, r, s, t) = (
        1.0,
        5.1 / (4.0 * pi * pi),
        5.0 / pi,
        6.0,
        10.0,
        1.0 / (8.0 * pi),
    );
    a * (x2 - b * x1 * x1 + c * x1 - r).powi(2) + s * (1.0 - t) * x1.cos() + s
}

fn hartmann6(p: &Point) -> f64 {
    const A: [[f64; 6]; 4] = [
        [10.0, 3.0, 17.0, 3.5, 1.7, 8.0],
        [0.05, 10.0, 17.0, 0.1, 8.0, 14.0],
        [3.0, 3.5, 1.7, 10.0, 17.0, 8.0],
        [17.0, 8.0, 0.05, 10.0, 0.1, 14.0],
    ];
    const P: [[f64; 6]; 4] = [
        [0.1312, 0.1696, 0.5569, 0.0124, 0.8283, 0.5886],
        [0.2329, 0.4135, 0.8307, 0.3736, 0.1004, 0.9991],
        [0.2348, 0.1451, 0.3522, 0.2883, 0.3047, 0.6650],
        [0.4047, 0.8828, 0.8732, 0.5743, 0.1091, 0.0381],
    ];
    const ALPHA: [f64; 4] = [1.0, 1.2, 3.0, 3.2];
    let x: Vec<f64> = (0..6).map(|i| get(p, &format!("x{i}"))).collect();
    -(0..4)
        .map(|i| {
            let s: f64 = (0..6).map(|j| A[i][j] * (x[j] - P[i][j]).powi(2)).sum();
            ALPHA[i] * (-s).exp()
        })
        .sum::<f64>()
}

/// Integers a ∈ [-10, 10], b ∈ [0, 20], an activation, a log-scaled rate: optimum 0 at
/// a = 3, b = 12, relu, rate = 10^-2.5.
fn mixed(p: &Point) -> f64 {
    let (a, b, rate) = (get(p, "a"), get(p, "b"), get(p, "rate"));
    let offset = match p["act"].as_str() {
        "relu" => 0.0,
        "tanh" => 0.5,
        "sigmoid" => 1.0,
        _ => 2.0,
    };
    (a - 3.0).powi(2) / 10.0 + (b - 12.0).powi(2) / 20.0 + offset + (rate.log10() + 2.5).powi(2)
}

fn problems() -> Vec<Problem> {
    let c = |n: &str, lo: &str, hi: &str| Range::continuous(n, lo, hi, None).unwrap();
    vec![
        Problem {
            name: "branin",
            space: Space::new(vec![c("x1", "-5", "10"), c("x2", "0", "15")]).unwrap(),
            f: branin,
            optimum: 0.397887,
        },
        Problem {
            name: "hartmann6",
            space: Space::new((0..6).map(|i| c(&format!("x{i}"), "0", "1")).collect()).unwrap(),
            f: hartmann6,
            optimum: -3.32237,
        },
        Problem {
            name: "mixed",
            space: Space::new(vec![
                Range::integer("a", "-10", "10", None).unwrap(),
                Range::integer("b", "0", "20", None).unwrap(),
                Range::categorical(
                    "act",
                    &["relu", "tanh", "sigmoid", "linear"].map(String::from),
                )
                .unwrap(),
                Range::continuous("rate", "0.0001", "1", Some("Logarithmic")).unwrap(),
            ])
            .unwrap(),
            f: mixed,
            optimum: 0.0,
        },
    ]
}

/// The best value after each evaluation of one run of `budget` evaluations.
fn run(
    problem: &Problem,
    kind: Kind,
    seed: u64,
    budget: usize,
    batch: usize,
    trace: bool,
) -> Vec<f64> {
    let mut history: Vec<Observation> = Vec::new();
    let mut best = Vec::with_capacity(budget);
    let mut so_far = f64::INFINITY;
    while history.len() < budget {
        let want = batch.min(budget - history.len());
        let points = propose(
            kind,
            &problem.space,
            Direction::Minimize,
            &history,
            want,
            seed,
        );
        assert!(!points.is_empty(), "{} ran out of points", problem.name);
        for p in points {
            let v = (problem.f)(&p);
            if trace {
                println!(
                    "    seed {seed} trial {:>2} {:?} -> {v:.4}",
                    history.len(),
                    p.iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                );
            }
            so_far = so_far.min(v);
            best.push(so_far);
            history.push(Observation {
                point: p,
                outcome: Outcome::Value(v),
            });
        }
    }
    best
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn cpu_seconds() -> f64 {
    // utime + stime of this process, from /proc (Linux); 0 elsewhere.
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let rest = s.rsplit_once(')')?.1.split_whitespace().collect::<Vec<_>>();
            let (u, st): (f64, f64) = (rest.get(11)?.parse().ok()?, rest.get(12)?.parse().ok()?);
            Some((u + st) / 100.0)
        })
        .unwrap_or(0.0)
}

/// The command line: `[--seeds N] [--first-seed S] [--per-seed] [--trace] [FUNCTION]`.
struct Args {
    seeds: u64,
    first: u64,
    per_seed: bool,
    trace: bool,
    only: Option<String>,
}

fn args() -> Args {
    let mut a = Args {
        seeds: 10,
        first: 0,
        per_seed: false,
        trace: false,
        only: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut number = |flag: &str| -> u64 {
            it.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{flag} takes a number"))
        };
        match arg.as_str() {
            "--seeds" => a.seeds = number("--seeds").max(1),
            "--first-seed" => a.first = number("--first-seed"),
            "--per-seed" => a.per_seed = true,
            "--trace" => a.trace = true,
            "-h" | "--help" => {
                println!(
                    "tuning_bench [--seeds N (10)] [--first-seed S (0)] [--per-seed] [--trace] \
                     [branin|hartmann6|mixed]\n  --per-seed: each seed's regret at 20 and 50 \
                     and the quartiles\n  --trace: every proposed point (Bayesian only)"
                );
                std::process::exit(0);
            }
            name => a.only = Some(name.to_owned()),
        }
    }
    a
}

fn main() {
    let args = args();
    let seeds = args.first..args.first + args.seeds;
    let wall = Instant::now();
    println!(
        "median simple regret over {} seeds ({}..={}; Pier strategies)",
        args.seeds,
        seeds.start,
        seeds.end - 1
    );
    println!(
        "{:<10} {:<9} {:<10} {:>12} {:>12}",
        "function", "mode", "strategy", "budget 20", "budget 50"
    );
    for problem in problems() {
        if args.only.as_deref().is_some_and(|o| o != problem.name) {
            continue;
        }
        for (mode, batch) in [("seq", 1), ("par4", 4)] {
            for (label, kind) in [("random", Kind::Random), ("bayesian", Kind::Bayesian)] {
                let started = Instant::now();
                let trace = args.trace && kind == Kind::Bayesian;
                if trace {
                    println!("  {} {mode} {label}:", problem.name);
                }
                let runs: Vec<Vec<f64>> = seeds
                    .clone()
                    .map(|seed| run(&problem, kind, seed, 50, batch, trace))
                    .collect();
                let regrets = |n: usize| -> Vec<f64> {
                    runs.iter().map(|r| r[n - 1] - problem.optimum).collect()
                };
                println!(
                    "{:<10} {:<9} {:<10} {:>12.5} {:>12.5}   ({:.1} s)",
                    problem.name,
                    mode,
                    label,
                    median(regrets(20)),
                    median(regrets(50)),
                    started.elapsed().as_secs_f64()
                );
                if args.per_seed {
                    for n in [20, 50] {
                        let r = regrets(n);
                        let mut sorted = r.clone();
                        sorted.sort_by(f64::total_cmp);
                        let q = |f: f64| sorted[((sorted.len() - 1) as f64 * f).round() as usize];
                        println!(
                            "    @{n}: quartiles {:.4} / {:.4} / {:.4}; per seed {}",
                            q(0.25),
                            median(r.clone()),
                            q(0.75),
                            r.iter()
                                .map(|v| format!("{v:.4}"))
                                .collect::<Vec<_>>()
                                .join(" ")
                        );
                    }
                }
            }
        }
    }
    println!(
        "wall {:.1} s, cpu {:.1} s",
        wall.elapsed().as_secs_f64(),
        cpu_seconds()
    );
}
