//! Evaluation metrics reported under SageMaker's names: accuracy, ROC AUC (rank-based, ties
//! averaged), RMSE/MSE, log loss, and squared distances for k-means.
//!
//! Pure functions over slices; callers parallelise if they need to.

/// Fraction of `pred == label`.
pub fn accuracy(pred: &[f32], label: &[f32]) -> f64 {
    if label.is_empty() {
        return 0.0;
    }
    let hits = pred.iter().zip(label).filter(|(p, l)| p == l).count();
    hits as f64 / label.len() as f64
}

/// Area under the ROC curve of `score` for binary `label` (1 positive, else negative),
/// computed from ranks with ties averaged. 0.5 when one class is absent.
pub fn roc_auc(score: &[f32], label: &[f32]) -> f64 {
    let mut idx: Vec<usize> = (0..score.len()).collect();
    idx.sort_by(|&a, &b| score[a].total_cmp(&score[b]));
    let n_pos = label.iter().filter(|&&l| l == 1.0).count();
    let n_neg = label.len() - n_pos;
    if n_pos == 0 || n_neg == 0 {
        return 0.5;
    }
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && score[idx[j + 1]] == score[idx[i]] {
            j += 1;
        }
        let avg_rank = (i + j) as f64 / 2.0 + 1.0;
        rank_sum += idx[i..=j].iter().filter(|&&k| label[k] == 1.0).count() as f64 * avg_rank;
        i = j + 1;
    }
    let n_pos = n_pos as f64;
    (rank_sum - n_pos * (n_pos + 1.0) / 2.0) / (n_pos * n_neg as f64)
}

/// Mean squared error.
pub fn mse(pred: &[f32], label: &[f32]) -> f64 {
    if label.is_empty() {
        return 0.0;
    }
    let s: f64 = pred
        .iter()
        .zip(label)
        .map(|(p, l)| (f64::from(*p) - f64::from(*l)).powi(2))
        .sum();
    s / label.len() as f64
}

/// Root mean squared error.
pub fn rmse(pred: &[f32], label: &[f32]) -> f64 {
    mse(pred, label).sqrt()
}

/// Mean binary cross-entropy of probabilities `p` against 0/1 labels.
pub fn binary_log_loss(p: &[f32], label: &[f32]) -> f64 {
    if label.is_empty() {
        return 0.0;
    }
    let s: f64 = p
        .iter()
        .zip(label)
        .map(|(&p, &l)| {
            let p = f64::from(p).clamp(1e-15, 1.0 - 1e-15);
            if l == 1.0 { -p.ln() } else { -(1.0 - p).ln() }
        })
        .sum();
    s / label.len() as f64
}

/// Mean multiclass cross-entropy of row-major probabilities (`k` per row).
pub fn multiclass_log_loss(p: &[f32], k: usize, label: &[f32]) -> f64 {
    if label.is_empty() {
        return 0.0;
    }
    let s: f64 = label
        .iter()
        .enumerate()
        .map(|(i, &l)| -f64::from(p[i * k + l as usize]).clamp(1e-15, 1.0).ln())
        .sum();
    s / label.len() as f64
}

/// Index of the largest value (first on ties).
pub(crate) fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    for (i, x) in v.iter().enumerate() {
        if *x > v[best] {
            best = i;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_matches_hand_computation() {
        assert_eq!(roc_auc(&[0.1, 0.4, 0.35, 0.8], &[0.0, 0.0, 1.0, 1.0]), 0.75);
        assert_eq!(roc_auc(&[0.5, 0.5], &[0.0, 1.0]), 0.5);
        assert_eq!(roc_auc(&[0.2, 0.9], &[0.0, 1.0]), 1.0);
    }

    #[test]
    fn rmse_and_accuracy() {
        assert!((rmse(&[1.0, 3.0], &[1.0, 1.0]) - 2f64.sqrt()).abs() < 1e-12);
        assert_eq!(accuracy(&[1.0, 0.0], &[1.0, 1.0]), 0.5);
    }
}
