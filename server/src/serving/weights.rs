//! Weighted choice of a production variant: a small validated type with an injectable
//! source of randomness, so routing tests are deterministic.

/// Variant weights that passed validation: every weight finite and `>= 0`, at least one
/// `> 0`. Traffic share of variant `i` is `weight[i] / sum`.
///
/// Shares are computed on weights scaled by the largest one, so weights near `f64::MAX`
/// (whose sum overflows) or subnormal weights (whose sums lose precision) split traffic as
/// their ratios say.
#[derive(Clone, Debug, PartialEq)]
pub struct WeightedChoice {
    /// The weights as given.
    weights: Vec<f64>,
    /// Running sums of the weights divided by the largest; the last is the total.
    cumulative: Vec<f64>,
}

/// Why a set of weights is refused.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum WeightError {
    /// No variants at all.
    #[error("an endpoint needs at least one production variant")]
    Empty,
    /// A negative, NaN or infinite weight.
    #[error("variant weight {0} must be a finite number >= 0")]
    Invalid(f64),
    /// Every weight is zero: no variant could take traffic.
    #[error("at least one variant weight must be greater than 0")]
    AllZero,
}

impl WeightedChoice {
    /// Validates weights.
    pub fn new(weights: &[f64]) -> Result<Self, WeightError> {
        if weights.is_empty() {
            return Err(WeightError::Empty);
        }
        if let Some(&w) = weights.iter().find(|w| !w.is_finite() || **w < 0.0) {
            return Err(WeightError::Invalid(w));
        }
        let max = weights.iter().copied().fold(0.0, f64::max);
        if max <= 0.0 {
            return Err(WeightError::AllZero);
        }
        let mut total = 0.0;
        let cumulative = weights
            .iter()
            .map(|&w| {
                total += w / max;
                total
            })
            .collect();
        Ok(Self {
            weights: weights.to_vec(),
            cumulative,
        })
    }

    /// The variant for a uniform sample `u` in `[0, 1)`. Zero-weight variants are never
    /// chosen.
    pub fn pick(&self, u: f64) -> usize {
        let total = *self.cumulative.last().expect("validated non-empty");
        let x = u.clamp(0.0, 1.0) * total;
        self.cumulative
            .iter()
            .position(|&c| x < c)
            .unwrap_or_else(|| {
                (0..self.cumulative.len())
                    .rev()
                    .find(|&i| self.weights[i] > 0.0)
                    .unwrap_or(0)
            })
    }

    /// The variant for a sample drawn from `rng`.
    pub fn pick_with(&self, rng: &mut fastrand::Rng) -> usize {
        self.pick(rng.f64())
    }

    /// The weight of variant `i` as given.
    pub fn weight(&self, i: usize) -> f64 {
        self.weights.get(i).copied().unwrap_or(0.0)
    }

    /// Number of variants.
    pub fn len(&self) -> usize {
        self.weights.len()
    }

    /// Always false: validation refuses empty weights.
    pub fn is_empty(&self) -> bool {
        self.weights.is_empty()
    }

    /// Traffic share of each variant (sums to 1).
    pub fn shares(&self) -> Vec<f64> {
        let total = *self.cumulative.last().expect("validated non-empty");
        let mut prev = 0.0;
        self.cumulative
            .iter()
            .map(|&c| {
                let share = (c - prev) / total;
                prev = c;
                share
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation() {
        assert_eq!(WeightedChoice::new(&[]), Err(WeightError::Empty));
        assert_eq!(WeightedChoice::new(&[0.0, 0.0]), Err(WeightError::AllZero));
        assert_eq!(
            WeightedChoice::new(&[1.0, -1.0]),
            Err(WeightError::Invalid(-1.0))
        );
        assert!(WeightedChoice::new(&[f64::NAN]).is_err());
        assert!(WeightedChoice::new(&[1.0, f64::INFINITY]).is_err());
    }

    #[test]
    fn extreme_weights_split_by_their_ratio() {
        // The sum of two 1e308 overflows; two subnormals lose precision when summed.
        for w in [1e308, f64::MAX, 5e-324, 1e-310] {
            let c = WeightedChoice::new(&[w, w]).unwrap();
            assert_eq!(c.shares(), vec![0.5, 0.5], "weights {w:e}");
            assert_eq!((c.pick(0.49), c.pick(0.51)), (0, 1), "weights {w:e}");
            assert_eq!(c.weight(1), w);
        }
        let c = WeightedChoice::new(&[f64::MAX, f64::MAX / 3.0]).unwrap();
        let shares = c.shares();
        assert!((shares[0] - 0.75).abs() < 1e-12, "{shares:?}");
    }

    #[test]
    fn picks_by_interval() {
        let c = WeightedChoice::new(&[70.0, 30.0]).unwrap();
        assert_eq!(c.pick(0.0), 0);
        assert_eq!(c.pick(0.6999), 0);
        assert_eq!(c.pick(0.7), 1);
        assert_eq!(c.pick(0.9999), 1);
        assert_eq!(c.pick(1.0), 1);
        assert_eq!(c.shares(), vec![0.7, 0.3]);
    }

    #[test]
    fn zero_weights_never_win() {
        let c = WeightedChoice::new(&[0.0, 1.0, 0.0]).unwrap();
        for i in 0..=100 {
            assert_eq!(c.pick(f64::from(i) / 100.0), 1);
        }
    }

    #[test]
    fn seeded_rng_is_deterministic_and_fair() {
        let c = WeightedChoice::new(&[3.0, 1.0]).unwrap();
        let mut rng = fastrand::Rng::with_seed(7);
        let first: Vec<usize> = (0..10_000).map(|_| c.pick_with(&mut rng)).collect();
        let mut rng = fastrand::Rng::with_seed(7);
        let again: Vec<usize> = (0..10_000).map(|_| c.pick_with(&mut rng)).collect();
        assert_eq!(first, again);
        let ones = first.iter().filter(|&&v| v == 1).count() as f64;
        // Binomial(10000, 0.25): sd = 43.3; allow 5 sd.
        assert!((ones - 2500.0).abs() < 5.0 * 43.3, "{ones}");
    }
}
