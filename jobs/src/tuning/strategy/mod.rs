//! Search strategies, pure and clock-free: [`propose`] takes the space, the direction, the
//! history (every trial so far: finished with a value, failed, or still running) and how many
//! new points are wanted, and returns that many new points; the same inputs and seed give the
//! same points. Nothing here reads a clock or does I/O: the tuning job's task on the runner
//! ([`crate::tuning::run`]) and the benchmark drive the same function.
//!
//! - [`random`]: uniform over each range's scaled interval.
//! - [`grid`]: every point of a space of integer and categorical ranges, in SageMaker's order.
//! - [`bayesian`]: a Gaussian process (Matérn 5/2) over the scaled space with expected
//!   improvement, several proposals at once by the kriging believer (pending points count as
//!   observed at the surrogate's mean), never a point already tried or proposed.
//! - [`hyperband`]: random points, plus the rung rule that stops under-performers, and the
//!   median rule of `TrainingJobEarlyStoppingType=Auto`.

pub mod bayesian;
pub mod grid;
pub mod hyperband;
pub mod random;
pub mod space;

use std::collections::BTreeSet;

pub use space::{Domain, Point, Range, Scaling, Space};

/// A search that cannot run as asked: the message names the field at fault.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct StrategyError(pub String);

impl StrategyError {
    pub(crate) fn new(m: impl Into<String>) -> Self {
        StrategyError(m.into())
    }
}

/// `Strategy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Random search.
    Random,
    /// Grid search.
    Grid,
    /// Bayesian optimisation.
    Bayesian,
    /// Hyperband: random points, early stopping at rungs.
    Hyperband,
}

impl Kind {
    /// Parses SageMaker's name.
    pub fn parse(s: &str) -> Result<Self, StrategyError> {
        Ok(match s {
            "Random" => Kind::Random,
            "Grid" => Kind::Grid,
            "Bayesian" => Kind::Bayesian,
            "Hyperband" => Kind::Hyperband,
            other => {
                return Err(StrategyError::new(format!(
                    "HyperParameterTuningJobConfig.Strategy {other:?} must be one of Bayesian, \
                     Random, Hyperband, Grid"
                )));
            }
        })
    }
}

/// `HyperParameterTuningJobObjective.Type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Smaller is better.
    Minimize,
    /// Larger is better.
    Maximize,
}

impl Direction {
    /// `value` as a loss (smaller is better).
    pub fn loss(self, value: f64) -> f64 {
        match self {
            Direction::Minimize => value,
            Direction::Maximize => -value,
        }
    }

    /// Whether `a` is better than `b`.
    pub fn better(self, a: f64, b: f64) -> bool {
        self.loss(a) < self.loss(b)
    }
}

/// What became of a trial.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Outcome {
    /// Still running (or queued).
    Pending,
    /// Ended without an objective value.
    Failed,
    /// Its objective value.
    Value(f64),
}

/// One trial of the history.
#[derive(Clone, Debug, PartialEq)]
pub struct Observation {
    /// Its hyperparameters (at least the tuned ones).
    pub point: Point,
    /// What became of it.
    pub outcome: Outcome,
}

/// Proposes `n` new points. `seed` is the search's `RandomSeed`; the points depend only on
/// the inputs. Fewer than `n` come back only when the space has run out of new points (a
/// grid, or a small discrete space).
pub fn propose(
    kind: Kind,
    space: &Space,
    direction: Direction,
    history: &[Observation],
    n: usize,
    seed: u64,
) -> Vec<Point> {
    let mut rng = fastrand::Rng::with_seed(mix(seed, history.len() as u64));
    match kind {
        Kind::Grid => grid::propose(space, history, n),
        Kind::Random | Kind::Hyperband => random::propose(space, history, n, &mut rng),
        Kind::Bayesian => bayesian::propose(space, direction, history, n, &mut rng, seed),
    }
}

/// SplitMix64 of `a` and `b`: independent streams for each step of a seeded search.
pub fn mix(a: u64, b: u64) -> u64 {
    let mut z = a ^ b.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The tuned values of `p`, as a key for duplicate checks.
pub(crate) fn key(space: &Space, p: &Point) -> Vec<String> {
    space
        .ranges
        .iter()
        .map(|r| p.get(&r.name).cloned().unwrap_or_default())
        .collect()
}

/// The keys of every point tried so far.
pub(crate) fn seen(space: &Space, history: &[Observation]) -> BTreeSet<Vec<String>> {
    history.iter().map(|o| key(space, &o.point)).collect()
}
