//! Output transforms: how a model's raw margins become what its library's `predict`
//! returns (probabilities, class labels, counts, plain regression values).
//!
//! Each library computes its transform in its own precision: XGBoost in `f32`, LightGBM in
//! `f64`. Both are implemented here so that outputs match the reference libraries to the
//! last bit wherever the platform's `exp` agrees. Pure functions on slices; no state.

/// How raw margins (one per output group) become the transformed output of one row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Transform {
    /// Output equals the margin.
    Identity,
    /// `1 / (1 + exp(-scale * margin))`, one output per group.
    Sigmoid {
        /// LightGBM's `sigmoid:` parameter; 1 for XGBoost.
        scale: f64,
    },
    /// `exp(margin)` (Poisson, gamma, Tweedie).
    Exp,
    /// Softmax over the groups: one probability per class.
    Softmax,
    /// Index of the largest margin (first one on ties), as a float: XGBoost `multi:softmax`.
    ArgMax,
    /// `sign(margin) * margin^2`: LightGBM regression trained with `reg_sqrt`.
    SignedSquare,
}

impl Transform {
    /// Output values per row, given the number of margin groups.
    pub fn output_width(self, groups: usize) -> usize {
        match self {
            Transform::ArgMax => 1,
            _ => groups,
        }
    }

    /// XGBoost's transform of one row, in `f32` as XGBoost computes it.
    pub(crate) fn apply_f32(self, margin: &[f32], out: &mut [f32]) {
        match self {
            Transform::Identity => out.copy_from_slice(margin),
            Transform::Sigmoid { scale } => {
                let scale = scale as f32;
                for (o, &m) in out.iter_mut().zip(margin) {
                    // XGBoost clamps the exponent to stay finite.
                    let e = (-(scale * m)).min(88.7).exp();
                    *o = 1.0 / (1.0 + e);
                }
            }
            Transform::Exp => {
                for (o, &m) in out.iter_mut().zip(margin) {
                    *o = m.exp();
                }
            }
            Transform::Softmax => {
                let max = margin.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let mut sum = 0.0f32;
                for (o, &m) in out.iter_mut().zip(margin) {
                    *o = (m - max).exp();
                    sum += *o;
                }
                for o in out.iter_mut() {
                    *o /= sum;
                }
            }
            Transform::ArgMax => out[0] = argmax(margin.iter().map(|&m| f64::from(m))) as f32,
            Transform::SignedSquare => {
                for (o, &m) in out.iter_mut().zip(margin) {
                    *o = m.signum() * m * m;
                }
            }
        }
    }

    /// LightGBM's transform of one row, in `f64` as LightGBM computes it, rounded to `f32`.
    pub(crate) fn apply_f64(self, margin: &[f64], out: &mut [f32]) {
        match self {
            Transform::Identity => {
                for (o, &m) in out.iter_mut().zip(margin) {
                    *o = m as f32;
                }
            }
            Transform::Sigmoid { scale } => {
                for (o, &m) in out.iter_mut().zip(margin) {
                    *o = (1.0 / (1.0 + (-scale * m).exp())) as f32;
                }
            }
            Transform::Exp => {
                for (o, &m) in out.iter_mut().zip(margin) {
                    *o = m.exp() as f32;
                }
            }
            Transform::Softmax => {
                let max = margin.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let sum: f64 = margin.iter().map(|&m| (m - max).exp()).sum();
                for (o, &m) in out.iter_mut().zip(margin) {
                    *o = ((m - max).exp() / sum) as f32;
                }
            }
            Transform::ArgMax => out[0] = argmax(margin.iter().copied()) as f32,
            Transform::SignedSquare => {
                for (o, &m) in out.iter_mut().zip(margin) {
                    *o = (m.signum() * m * m) as f32;
                }
            }
        }
    }
}

/// Index of the first largest value (NaN never wins).
fn argmax(values: impl Iterator<Item = f64>) -> usize {
    let mut best = 0;
    let mut best_value = f64::NEG_INFINITY;
    for (i, v) in values.enumerate() {
        if v > best_value {
            best = i;
            best_value = v;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_sums_to_one_and_orders_like_margins() {
        let mut out = [0.0f32; 3];
        Transform::Softmax.apply_f32(&[1.0, 3.0, 2.0], &mut out);
        assert!((out.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(out[1] > out[2] && out[2] > out[0]);
        let mut out64 = [0.0f32; 3];
        Transform::Softmax.apply_f64(&[1.0, 3.0, 2.0], &mut out64);
        assert!((out64[1] - out[1]).abs() < 1e-6);
    }

    #[test]
    fn argmax_takes_first_of_ties() {
        let mut out = [0.0f32; 1];
        Transform::ArgMax.apply_f32(&[0.5, 2.0, 2.0], &mut out);
        assert_eq!(out[0], 1.0);
        assert_eq!(Transform::ArgMax.output_width(3), 1);
        assert_eq!(Transform::Softmax.output_width(3), 3);
    }

    #[test]
    fn sigmoid_scale_and_extremes() {
        let mut out = [0.0f32; 3];
        Transform::Sigmoid { scale: 1.0 }.apply_f32(&[0.0, -1000.0, 1000.0], &mut out);
        // XGBoost clamps the exponent at 88.7, so the lower tail stops just above zero.
        assert_eq!(out[0], 0.5);
        assert!(out[1] > 0.0 && out[1] < 1e-38);
        assert_eq!(out[2], 1.0);
        Transform::Sigmoid { scale: 2.0 }.apply_f64(&[0.5, 0.0, 0.0], &mut out);
        assert!((out[0] - 0.731_058_6).abs() < 1e-6);
        Transform::SignedSquare.apply_f64(&[-2.0, 3.0, 0.0], &mut out);
        assert_eq!(out, [-4.0, 9.0, 0.0]);
    }
}
