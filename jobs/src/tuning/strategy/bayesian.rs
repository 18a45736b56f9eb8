//! Bayesian optimisation: a Gaussian process over the scaled space with expected improvement.
//!
//! - Features: numeric ranges at their unit coordinate (after scaling, so a Logarithmic range
//!   is modelled in log space), categoricals one-hot; a candidate is always snapped to a real
//!   point of the space (integers rounded, one category) before it is scored, so the
//!   surrogate never scores a point that cannot run.
//! - Kernel: Matérn 5/2 with a length scale per feature (ARD) and a noise term, chosen by
//!   the marginal likelihood times a Gamma(3, 6) prior on the numeric features' length
//!   scales ([`log_prior`]) over a log grid (isotropic first, then a coordinate pass), the
//!   amplitude in closed form. Losses are standardised; a failed trial counts as the worst
//!   loss seen, so the search moves away from where jobs fail.
//! - Acquisition: expected improvement, maximised over random points, perturbations of the
//!   best trials and a local refinement of the best candidates.
//! - Parallel proposals (MaxParallelTrainingJobs > 1) and running trials: the kriging
//!   believer; a pending point counts as observed at the surrogate's mean (and that value as
//!   a candidate for the incumbent), so the next proposal looks elsewhere. No point already
//!   tried, running or proposed is proposed again.
//! - The first `d / 2 + 2` points (d = number of ranges; 3 to 10), running ones included, are a
//!   Latin hypercube drawn from the seed; one length scale per feature (ARD) once there are
//!   `2·d + 3` trials, a single one before.

use super::{Direction, Observation, Outcome, Point, Space, key, random, seen};

/// Trials the surrogate is fitted on at most (the best ones beyond that).
const MAX_FIT: usize = 200;
/// Random candidates per proposal.
const RANDOM_CANDIDATES: usize = 1500;
/// Length-scale grid (features lie in [0, 1]).
const SCALES: [f64; 8] = [0.04, 0.08, 0.15, 0.3, 0.6, 1.2, 2.5, 5.0];
/// Noise grid (relative to the amplitude).
const NOISES: [f64; 4] = [1e-6, 1e-4, 1e-2, 1e-1];

/// `n` points by expected improvement.
pub fn propose(
    space: &Space,
    direction: Direction,
    history: &[Observation],
    n: usize,
    rng: &mut fastrand::Rng,
    seed: u64,
) -> Vec<Point> {
    let startup = (space.ranges.len() / 2 + 2).clamp(3, 10);
    let mut seen = seen(space, history);
    let exhaustible = space.cardinality();
    let mut observed: Vec<(Vec<f64>, f64)> = Vec::new();
    let mut pending: Vec<Vec<f64>> = Vec::new();
    let worst = history
        .iter()
        .filter_map(|o| match o.outcome {
            Outcome::Value(v) if v.is_finite() => Some(direction.loss(v)),
            _ => None,
        })
        .fold(f64::NEG_INFINITY, f64::max);
    for o in history {
        let Some(f) = space.features(&o.point) else {
            continue;
        };
        match o.outcome {
            Outcome::Value(v) if v.is_finite() => observed.push((f, direction.loss(v))),
            Outcome::Failed if worst.is_finite() => observed.push((f, worst)),
            Outcome::Pending => pending.push(f),
            _ => {}
        }
    }
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        if exhaustible.is_some_and(|c| seen.len() as u64 >= c) {
            break;
        }
        // Running and just-proposed points count: a parallel search leaves its design sooner.
        let p = if observed.len() + pending.len() < startup {
            let index = history.len() + out.len();
            if index < startup {
                Some(space.point_at(&latin_hypercube(space.ranges.len(), startup, seed)[index]))
            } else {
                random::propose(space, &[], 1, rng).pop()
            }
        } else {
            next_point(space, &observed, &pending, &seen, rng)
        };
        let Some(p) = p else { break };
        let p = if seen.contains(&key(space, &p)) {
            // The surrogate found nothing new: fall back to a random new point.
            let hist: Vec<Observation> = Vec::new();
            match random::propose(space, &hist, 1, rng).pop() {
                Some(q) if !seen.contains(&key(space, &q)) => q,
                _ => p,
            }
        } else {
            p
        };
        seen.insert(key(space, &p));
        if let Some(f) = space.features(&p) {
            pending.push(f);
        }
        out.push(p);
    }
    out
}

/// `n` points of a Latin hypercube in `d` dimensions (each dimension's `n` strata used once),
/// the same for a seed whatever the history.
fn latin_hypercube(d: usize, n: usize, seed: u64) -> Vec<Vec<f64>> {
    let mut rng = fastrand::Rng::with_seed(super::mix(seed, 0x4c48_5300));
    let columns: Vec<Vec<f64>> = (0..d)
        .map(|_| {
            let mut strata: Vec<usize> = (0..n).collect();
            rng.shuffle(&mut strata);
            strata
                .into_iter()
                .map(|s| (s as f64 + rng.f64()) / n as f64)
                .collect()
        })
        .collect();
    (0..n)
        .map(|i| columns.iter().map(|c| c[i]).collect())
        .collect()
}

/// One point maximising expected improvement given the observed and pending points.
fn next_point(
    space: &Space,
    observed: &[(Vec<f64>, f64)],
    pending: &[Vec<f64>],
    seen: &std::collections::BTreeSet<Vec<String>>,
    rng: &mut fastrand::Rng,
) -> Option<Point> {
    let mut fit: Vec<(Vec<f64>, f64)> = observed.to_vec();
    if fit.len() > MAX_FIT {
        fit.sort_by(|a, b| a.1.total_cmp(&b.1));
        fit.truncate(MAX_FIT);
    }
    let ys: Vec<f64> = fit.iter().map(|(_, y)| *y).collect();
    let mean = ys.iter().sum::<f64>() / ys.len() as f64;
    let sd = (ys.iter().map(|y| (y - mean).powi(2)).sum::<f64>() / ys.len() as f64)
        .sqrt()
        .max(1e-12);
    let xs: Vec<Vec<f64>> = fit.iter().map(|(x, _)| x.clone()).collect();
    let ys: Vec<f64> = ys.iter().map(|y| (y - mean) / sd).collect();
    let numeric: Vec<bool> = space
        .ranges
        .iter()
        .flat_map(|r| match &r.domain {
            super::Domain::Categorical(v) => vec![false; v.len()],
            _ => vec![true],
        })
        .collect();
    let hyper = fit_hyper(&xs, &ys, &numeric, 2 * space.ranges.len() + 3);
    let gp = Gp::new(&xs, &ys, &hyper)?;
    let mut best = ys.iter().copied().fold(f64::INFINITY, f64::min);
    // Kriging believer: pending points join at the surrogate's mean, and count as trials
    // (the incumbent is the best of the observed and the believed values). Were a believed
    // value below the incumbent left out, the point beside it would keep that improvement
    // with next to no uncertainty, and a batch would stack near-copies of one point.
    let gp = if pending.is_empty() {
        gp
    } else {
        let mut xs = xs.clone();
        let mut ys = ys.clone();
        for f in pending {
            let (mu, _) = gp.predict(f);
            xs.push(f.clone());
            ys.push(mu);
            best = best.min(mu);
        }
        Gp::new(&xs, &ys, &hyper)?
    };
    let d = space.ranges.len();
    let score = |u: &[f64]| -> Option<(f64, Point)> {
        let p = space.point_at(u);
        if seen.contains(&key(space, &p)) {
            return None;
        }
        let f = space.features(&p)?;
        let (mu, var) = gp.predict(&f);
        Some((expected_improvement(best, mu, var.max(0.0).sqrt()), p))
    };
    let mut candidates: Vec<Vec<f64>> = (0..RANDOM_CANDIDATES)
        .map(|_| (0..d).map(|_| rng.f64()).collect())
        .collect();
    // Around the best trials.
    let mut order: Vec<usize> = (0..observed.len()).collect();
    order.sort_by(|&a, &b| observed[a].1.total_cmp(&observed[b].1));
    for &i in order.iter().take(5) {
        let Some(u) = unit_from_features(space, &observed[i].0) else {
            continue;
        };
        for k in 0..100 {
            let sigma = [0.02, 0.05, 0.1, 0.2][k % 4];
            candidates.push(perturb(&u, sigma, rng));
        }
    }
    let mut scored: Vec<(f64, Vec<f64>, Point)> = candidates
        .into_iter()
        .filter_map(|u| score(&u).map(|(s, p)| (s, u, p)))
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    scored.truncate(5);
    // Local refinement of the best candidates.
    for entry in &mut scored {
        let mut sigma = 0.05;
        for _ in 0..4 {
            for _ in 0..25 {
                let u = perturb(&entry.1, sigma, rng);
                if let Some((s, p)) = score(&u)
                    && s > entry.0
                {
                    *entry = (s, u, p);
                }
            }
            sigma /= 2.0;
        }
    }
    scored
        .into_iter()
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, _, p)| p)
}

/// The unit coordinates of a feature vector (categoricals: the hot index's slice middle).
fn unit_from_features(space: &Space, f: &[f64]) -> Option<Vec<f64>> {
    let mut u = Vec::with_capacity(space.ranges.len());
    let mut at = 0;
    for r in &space.ranges {
        match &r.domain {
            super::Domain::Categorical(values) => {
                let slice = f.get(at..at + values.len())?;
                let i = slice.iter().position(|&x| x > 0.5)?;
                u.push((i as f64 + 0.5) / values.len() as f64);
                at += values.len();
            }
            _ => {
                u.push(*f.get(at)?);
                at += 1;
            }
        }
    }
    Some(u)
}

fn perturb(u: &[f64], sigma: f64, rng: &mut fastrand::Rng) -> Vec<f64> {
    u.iter()
        .map(|&x| (x + sigma * normal(rng)).clamp(0.0, 1.0))
        .collect()
}

/// A standard normal draw (Box–Muller).
fn normal(rng: &mut fastrand::Rng) -> f64 {
    let u1 = rng.f64().max(1e-300);
    let u2 = rng.f64();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// Expected improvement below `best` of a normal (`mu`, `sigma`).
pub fn expected_improvement(best: f64, mu: f64, sigma: f64) -> f64 {
    let xi = 0.01;
    if sigma < 1e-12 {
        return (best - mu - xi).max(0.0);
    }
    let z = (best - mu - xi) / sigma;
    (best - mu - xi) * normal_cdf(z) + sigma * normal_pdf(z)
}

fn normal_pdf(z: f64) -> f64 {
    (-0.5 * z * z).exp() / (std::f64::consts::TAU).sqrt()
}

fn normal_cdf(z: f64) -> f64 {
    0.5 * erfc(-z / std::f64::consts::SQRT_2)
}

/// The complementary error function (Numerical Recipes' Chebyshev fit, |error| < 1.2e-7).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t
        * (-z * z - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87
                                        + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    if x >= 0.0 { r } else { 2.0 - r }
}

/// The kernel's hyperparameters.
#[derive(Clone, Debug)]
struct Hyper {
    scales: Vec<f64>,
    noise: f64,
}

fn matern52(a: &[f64], b: &[f64], scales: &[f64]) -> f64 {
    let r2: f64 = a
        .iter()
        .zip(b)
        .zip(scales)
        .map(|((x, y), l)| ((x - y) / l).powi(2))
        .sum();
    let r = (5.0 * r2).sqrt();
    (1.0 + r + 5.0 * r2 / 3.0) * (-r).exp()
}

/// A fitted GP with unit amplitude scaled by `amp` (closed form).
struct Gp {
    xs: Vec<Vec<f64>>,
    chol: Vec<f64>,
    alpha: Vec<f64>,
    amp: f64,
    hyper: Hyper,
}

impl Gp {
    fn new(xs: &[Vec<f64>], ys: &[f64], hyper: &Hyper) -> Option<Self> {
        let n = xs.len();
        let mut k = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..=i {
                let v = matern52(&xs[i], &xs[j], &hyper.scales);
                k[i * n + j] = v;
                k[j * n + i] = v;
            }
            k[i * n + i] += hyper.noise + 1e-9;
        }
        let chol = cholesky(&k, n)?;
        let alpha = solve(&chol, n, ys);
        let quad: f64 = ys.iter().zip(&alpha).map(|(a, b)| a * b).sum();
        let amp = (quad / n as f64).max(1e-12);
        Some(Gp {
            xs: xs.to_vec(),
            chol,
            alpha,
            amp,
            hyper: hyper.clone(),
        })
    }

    /// Mean and variance at `x`.
    fn predict(&self, x: &[f64]) -> (f64, f64) {
        let n = self.xs.len();
        let kx: Vec<f64> = self
            .xs
            .iter()
            .map(|xi| matern52(xi, x, &self.hyper.scales))
            .collect();
        let mu = kx.iter().zip(&self.alpha).map(|(a, b)| a * b).sum();
        let v = forward(&self.chol, n, &kx);
        let var = 1.0 + self.hyper.noise - v.iter().map(|x| x * x).sum::<f64>();
        (mu, self.amp * var.max(1e-12))
    }
}

/// The concentrated log marginal likelihood (amplitude profiled out).
fn log_likelihood(xs: &[Vec<f64>], ys: &[f64], hyper: &Hyper, numeric: &[bool]) -> f64 {
    let Some(gp) = Gp::new(xs, ys, hyper) else {
        return f64::NEG_INFINITY;
    };
    let n = xs.len();
    let log_det: f64 = (0..n).map(|i| gp.chol[i * n + i].ln()).sum::<f64>() * 2.0;
    -0.5 * n as f64 * gp.amp.ln() - 0.5 * log_det + log_prior(hyper, numeric)
}

/// The log density (up to a constant) of the length scales' prior: Gamma(3, 6) on each numeric
/// feature's scale (its mode a third of the unit interval, little mass below 0.05 or above 2;
/// BoTorch's long-standing default for inputs scaled to the unit cube), none on one-hot
/// features (how much categories share is left to the data). Without it, a handful of trials
/// fit the shortest scale of the grid: every trial its own island and the surrogate flat
/// between them, so expected improvement hugs the best trial.
fn log_prior(h: &Hyper, numeric: &[bool]) -> f64 {
    h.scales
        .iter()
        .zip(numeric)
        .filter(|(_, numeric)| **numeric)
        .map(|(l, _)| 2.0 * l.ln() - 6.0 * l)
        .sum()
}

fn fit_hyper(xs: &[Vec<f64>], ys: &[f64], numeric: &[bool], ard_from: usize) -> Hyper {
    let dims = numeric.len();
    let mut best = Hyper {
        scales: vec![0.3; dims],
        noise: 1e-4,
    };
    let mut best_ll = f64::NEG_INFINITY;
    for &l in &SCALES {
        for &noise in &NOISES {
            let h = Hyper {
                scales: vec![l; dims],
                noise,
            };
            let ll = log_likelihood(xs, ys, &h, numeric);
            if ll > best_ll {
                (best, best_ll) = (h, ll);
            }
        }
    }
    // One length scale per feature only once there are enough trials to tell them apart.
    if dims > 1 && xs.len() >= ard_from {
        for d in 0..dims {
            for &l in &SCALES {
                let mut h = best.clone();
                h.scales[d] = l;
                let ll = log_likelihood(xs, ys, &h, numeric);
                if ll > best_ll + 1e-9 {
                    (best, best_ll) = (h, ll);
                }
            }
        }
    }
    best
}

/// Lower Cholesky factor of the `n`×`n` matrix `a`; `None` if not positive definite.
fn cholesky(a: &[f64], n: usize) -> Option<Vec<f64>> {
    let mut l = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..=i {
            let mut s = a[i * n + j];
            for k in 0..j {
                s -= l[i * n + k] * l[j * n + k];
            }
            if i == j {
                if s <= 0.0 || !s.is_finite() {
                    return None;
                }
                l[i * n + i] = s.sqrt();
            } else {
                l[i * n + j] = s / l[j * n + j];
            }
        }
    }
    Some(l)
}

/// Solves `L y = b`.
fn forward(l: &[f64], n: usize, b: &[f64]) -> Vec<f64> {
    let mut y = vec![0.0; n];
    for i in 0..n {
        let s: f64 = (0..i).map(|k| l[i * n + k] * y[k]).sum();
        y[i] = (b[i] - s) / l[i * n + i];
    }
    y
}

/// Solves `L Lᵀ x = b`.
fn solve(l: &[f64], n: usize, b: &[f64]) -> Vec<f64> {
    let y = forward(l, n, b);
    let mut x = vec![0.0; n];
    for i in (0..n).rev() {
        let s: f64 = (i + 1..n).map(|k| l[k * n + i] * x[k]).sum();
        x[i] = (y[i] - s) / l[i * n + i];
    }
    x
}

#[cfg(test)]
mod tests {
    use super::super::{Kind, Range, propose as propose_any};
    use super::*;

    fn run(seed: u64, budget: usize, batch: usize, kind: Kind) -> f64 {
        // A 2-d bowl with its minimum at eta = 0.01 (log scale), depth = 7.
        let space = Space::new(vec![
            Range::continuous("eta", "0.0001", "1", Some("Logarithmic")).unwrap(),
            Range::integer("depth", "1", "20", None).unwrap(),
        ])
        .unwrap();
        let f = |p: &Point| {
            let e: f64 = p["eta"].parse().unwrap();
            let d: f64 = p["depth"].parse().unwrap();
            (e.log10() + 2.0).powi(2) + ((d - 7.0) / 5.0).powi(2)
        };
        let mut history: Vec<Observation> = Vec::new();
        while history.len() < budget {
            let ps = propose_any(kind, &space, Direction::Minimize, &history, batch, seed);
            for p in ps {
                let v = f(&p);
                history.push(Observation {
                    point: p,
                    outcome: Outcome::Value(v),
                });
            }
        }
        history
            .iter()
            .map(|o| match o.outcome {
                Outcome::Value(v) => v,
                _ => f64::INFINITY,
            })
            .fold(f64::INFINITY, f64::min)
    }

    #[test]
    fn seeded_and_better_than_random_on_a_bowl() {
        assert_eq!(run(3, 15, 1, Kind::Bayesian), run(3, 15, 1, Kind::Bayesian));
        let mut bayes = Vec::new();
        let mut rand = Vec::new();
        for seed in 0..5 {
            bayes.push(run(seed, 20, 1, Kind::Bayesian));
            rand.push(run(seed, 20, 1, Kind::Random));
        }
        bayes.sort_by(f64::total_cmp);
        rand.sort_by(f64::total_cmp);
        assert!(bayes[2] < rand[2], "median regret {bayes:?} vs {rand:?}");
        assert!(bayes[2] < 0.05, "{bayes:?}");
    }

    #[test]
    fn parallel_proposals_are_distinct_and_avoid_running_points() {
        let space = Space::new(vec![
            Range::integer("a", "1", "4", None).unwrap(),
            Range::categorical("c", &["x".into(), "y".into()]).unwrap(),
        ])
        .unwrap();
        let mut history: Vec<Observation> = Vec::new();
        for (a, c, v) in [("1", "x", 3.0), ("2", "y", 2.0), ("3", "x", 1.0)] {
            history.push(Observation {
                point: [("a".into(), a.into()), ("c".into(), c.into())].into(),
                outcome: Outcome::Value(v),
            });
        }
        history.push(Observation {
            point: [("a".into(), "4".into()), ("c".into(), "x".into())].into(),
            outcome: Outcome::Pending,
        });
        let ps = propose(
            &space,
            Direction::Minimize,
            &history,
            10,
            &mut fastrand::Rng::with_seed(5),
            5,
        );
        // 8 points in the space, 4 taken: exactly the 4 others, each once.
        assert_eq!(ps.len(), 4, "{ps:?}");
        let mut keys: Vec<Vec<String>> = ps.iter().map(|p| key(&space, p)).collect();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), 4);
        for o in &history {
            assert!(!keys.contains(&key(&space, &o.point)));
        }
    }

    /// Integers a ∈ [-10, 10], b ∈ [0, 20], a categorical, a log-scaled rate (the benchmark's
    /// mixed function), minimum 0 at a = 3, b = 12, "relu", rate = 10^-2.5.
    fn mixed_space() -> Space {
        Space::new(vec![
            Range::integer("a", "-10", "10", None).unwrap(),
            Range::integer("b", "0", "20", None).unwrap(),
            Range::categorical(
                "act",
                &["relu", "tanh", "sigmoid", "linear"].map(String::from),
            )
            .unwrap(),
            Range::continuous("rate", "0.0001", "1", Some("Logarithmic")).unwrap(),
        ])
        .unwrap()
    }

    fn mixed(p: &Point) -> f64 {
        let g = |k: &str| p[k].parse::<f64>().unwrap();
        let offset = ["relu", "tanh", "sigmoid", "linear"]
            .iter()
            .position(|c| *c == p["act"])
            .unwrap() as f64
            / 2.0;
        (g("a") - 3.0).powi(2) / 10.0
            + (g("b") - 12.0).powi(2) / 20.0
            + offset
            + (g("rate").log10() + 2.5).powi(2)
    }

    #[test]
    fn a_parallel_batch_spreads_out_instead_of_stacking_near_duplicates() {
        // Batches of four: the kriging believer's fantasies lower the incumbent, so the second
        // point of a batch is not a hair's breadth from the first (the same integers and
        // category, a rate equal to five digits), which is what it proposed before.
        let space = mixed_space();
        for seed in 0..6 {
            let mut history: Vec<Observation> = Vec::new();
            while history.len() < 20 {
                let batch = propose_any(
                    Kind::Bayesian,
                    &space,
                    Direction::Minimize,
                    &history,
                    4,
                    seed,
                );
                assert_eq!(batch.len(), 4);
                let units: Vec<Vec<f64>> =
                    batch.iter().map(|p| space.to_unit(p).unwrap()).collect();
                for i in 0..units.len() {
                    for j in 0..i {
                        let d = units[i]
                            .iter()
                            .zip(&units[j])
                            .map(|(x, y)| (x - y).powi(2))
                            .sum::<f64>()
                            .sqrt();
                        assert!(
                            d > 0.01,
                            "seed {seed}, trial {}: {:?} and {:?} are {d:.5} apart",
                            history.len(),
                            batch[i],
                            batch[j]
                        );
                    }
                }
                for p in batch {
                    let v = mixed(&p);
                    history.push(Observation {
                        point: p,
                        outcome: Outcome::Value(v),
                    });
                }
            }
        }
    }

    #[test]
    fn a_few_trials_do_not_fit_the_shortest_length_scale() {
        // Four spread-out points of a smooth bowl: maximum likelihood alone picks the shortest
        // length scale of the grid (every point its own island, the surrogate flat between
        // them); the prior on numeric length scales keeps a smooth fit.
        let xs: Vec<Vec<f64>> = vec![
            vec![0.1, 0.6],
            vec![0.4, 0.1],
            vec![0.6, 0.9],
            vec![0.9, 0.35],
        ];
        let raw: Vec<f64> = xs
            .iter()
            .map(|x| (x[0] - 0.5).powi(2) + (x[1] - 0.5).powi(2))
            .collect();
        let mean = raw.iter().sum::<f64>() / 4.0;
        let sd = (raw.iter().map(|y| (y - mean).powi(2)).sum::<f64>() / 4.0).sqrt();
        let ys: Vec<f64> = raw.iter().map(|y| (y - mean) / sd).collect();
        let h = fit_hyper(&xs, &ys, &[true, true], 7);
        assert!(h.scales.iter().all(|&l| l >= 0.15), "{h:?}");
        // The prior is on numeric features only: a category's one-hot scale is the data's.
        assert!(log_prior(&h, &[false, false]) == 0.0);
        assert!(log_prior(&h, &[true, true]) < 0.0);
    }

    #[test]
    fn the_start_is_a_seeded_latin_hypercube() {
        let a = latin_hypercube(3, 5, 9);
        assert_eq!(a, latin_hypercube(3, 5, 9));
        assert_ne!(a, latin_hypercube(3, 5, 10));
        for j in 0..3 {
            let mut strata: Vec<usize> = a.iter().map(|p| (p[j] * 5.0) as usize).collect();
            strata.sort();
            assert_eq!(strata, [0, 1, 2, 3, 4], "dimension {j}: {a:?}");
        }
    }

    #[test]
    fn gp_interpolates_and_ei_prefers_low_mean_or_high_variance() {
        let xs = vec![vec![0.1], vec![0.5], vec![0.9]];
        let ys = vec![1.0, -1.0, 0.5];
        let h = Hyper {
            scales: vec![0.3],
            noise: 1e-6,
        };
        let gp = Gp::new(&xs, &ys, &h).unwrap();
        let (mu, var) = gp.predict(&[0.5]);
        assert!((mu + 1.0).abs() < 1e-3 && var < 1e-3, "{mu} {var}");
        assert!(expected_improvement(0.0, -1.0, 0.1) > expected_improvement(0.0, 1.0, 0.1));
        assert!(expected_improvement(0.0, 1.0, 2.0) > expected_improvement(0.0, 1.0, 0.1));
        assert!((normal_cdf(0.0) - 0.5).abs() < 1e-7 && (normal_cdf(1.96) - 0.975).abs() < 1e-3);
    }
}
