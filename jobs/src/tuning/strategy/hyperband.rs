//! Hyperband's early stopping and the median rule, as pure decisions over intermediate
//! objective values (losses: smaller is better).
//!
//! Hyperband here is its asynchronous form (ASHA): every job is given `MaxResource` (epochs or
//! boosting rounds) and a bracket, in turn; bracket `b`'s rungs are `MinResource·η^(b+k)`
//! below `MaxResource` (η = 3). When a job reports its objective at a rung, it goes on only if
//! it is in the best `1/η` of the jobs of its bracket that reached that rung so far (a rung
//! with fewer than η jobs lets it go on). Points come from [`super::random`].
//!
//! The median rule (`TrainingJobEarlyStoppingType=Auto`, SageMaker's): a job is stopped at a
//! step when its objective there is worse than the median of the running averages, up to that
//! step, of the jobs that completed.

use super::StrategyError;

/// Hyperband's reduction factor.
pub const ETA: u64 = 3;

/// The rungs of a Hyperband search.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rungs {
    /// `MinResource`.
    pub min: u64,
    /// `MaxResource`.
    pub max: u64,
}

impl Rungs {
    /// Checks `MinResource` and `MaxResource`.
    pub fn new(min: i64, max: i64) -> Result<Self, StrategyError> {
        if min < 1 {
            return Err(StrategyError::new(format!(
                "HyperbandStrategyConfig.MinResource {min} must be at least 1"
            )));
        }
        if max <= min {
            return Err(StrategyError::new(format!(
                "HyperbandStrategyConfig.MaxResource {max} must be greater than MinResource {min}"
            )));
        }
        if max > 100_000 {
            return Err(StrategyError::new(format!(
                "HyperbandStrategyConfig.MaxResource {max} must be at most 100000"
            )));
        }
        Ok(Rungs {
            min: min as u64,
            max: max as u64,
        })
    }

    /// How many brackets there are.
    pub fn brackets(&self) -> usize {
        self.rungs_from(self.min).len().max(1)
    }

    /// Bracket `b`'s rungs (steps), smallest first.
    pub fn rungs(&self, bracket: usize) -> Vec<u64> {
        self.rungs_from(self.min)
            .into_iter()
            .skip(bracket)
            .collect()
    }

    fn rungs_from(&self, start: u64) -> Vec<u64> {
        let mut out = Vec::new();
        let mut r = start;
        while r < self.max {
            out.push(r);
            r = r.saturating_mul(ETA);
        }
        out
    }
}

/// Whether a job whose loss at a rung is `loss` goes on, given the losses of every job of its
/// bracket at that rung (its own included).
pub fn promote(loss: f64, rung: &[f64]) -> bool {
    if (rung.len() as u64) < ETA {
        return true;
    }
    let keep = rung.len().div_ceil(ETA as usize);
    let better = rung.iter().filter(|&&x| x < loss).count();
    better < keep
}

/// Whether the median rule stops a job whose loss at `step` is `loss`; `completed` holds each
/// completed job's losses by step (1-based steps, sorted). Needs three completed jobs that
/// reached `step`.
pub fn median_stops(loss: f64, step: u64, completed: &[Vec<(u64, f64)>]) -> bool {
    let mut averages: Vec<f64> = completed
        .iter()
        .filter_map(|curve| {
            let upto: Vec<f64> = curve
                .iter()
                .filter(|(s, _)| *s <= step)
                .map(|(_, v)| *v)
                .collect();
            let reached = curve.iter().any(|(s, _)| *s >= step);
            (reached && !upto.is_empty()).then(|| upto.iter().sum::<f64>() / upto.len() as f64)
        })
        .collect();
    if averages.len() < 3 {
        return false;
    }
    averages.sort_by(f64::total_cmp);
    let m = averages.len();
    let median = if m % 2 == 1 {
        averages[m / 2]
    } else {
        (averages[m / 2 - 1] + averages[m / 2]) / 2.0
    };
    loss > median
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rungs_and_brackets() {
        let r = Rungs::new(1, 27).unwrap();
        assert_eq!(r.brackets(), 3);
        assert_eq!(r.rungs(0), [1, 3, 9]);
        assert_eq!(r.rungs(2), [9]);
        let r = Rungs::new(5, 50).unwrap();
        assert_eq!(r.rungs(0), [5, 15, 45]);
        assert!(
            Rungs::new(0, 5)
                .unwrap_err()
                .to_string()
                .contains("MinResource")
        );
        assert!(
            Rungs::new(5, 5)
                .unwrap_err()
                .to_string()
                .contains("MaxResource")
        );
    }

    #[test]
    fn the_best_third_goes_on() {
        assert!(promote(9.0, &[9.0, 1.0]), "fewer than eta: go on");
        let rung = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        assert!(promote(1.0, &rung) && promote(2.0, &rung));
        assert!(!promote(3.0, &rung) && !promote(6.0, &rung));
    }

    #[test]
    fn median_rule_stops_what_is_worse_than_the_median_running_average() {
        let curves = vec![
            vec![(1, 1.0), (2, 0.5), (3, 0.4)],
            vec![(1, 2.0), (2, 1.0), (3, 0.9)],
            vec![(1, 3.0), (2, 2.0), (3, 1.0)],
        ];
        // Running averages at step 2: 0.75, 1.5, 2.5 → median 1.5.
        assert!(median_stops(1.6, 2, &curves));
        assert!(!median_stops(1.4, 2, &curves));
        assert!(!median_stops(9.0, 2, &curves[..2]), "needs three");
        assert!(!median_stops(9.0, 4, &curves), "none reached step 4");
    }
}
