//! SageMaker's response shapes for built-in algorithm predictions, so every front end
//! (HTTP invocations, batch transform) writes the same JSON:
//! linear learner / factorization machines / xgboost
//! `{"predictions":[{"score": s | [..], "predicted_label": l}]}` (no `predicted_label` for
//! regressors), k-means `{"predictions":[{"closest_cluster": c, "distance_to_cluster": d}]}`,
//! PCA `{"projections":[{"projection":[..]}]}`. For `application/jsonlines` each record is
//! one line. Pure functions over [`Predictions`].

use serde_json::{Value, json};

use super::Predictions;

impl Predictions {
    /// Number of predicted rows.
    pub fn n_rows(&self) -> usize {
        match self {
            Predictions::Scores { width, scores, .. } => scores.len() / (*width).max(1),
            Predictions::Clusters {
                closest_cluster, ..
            } => closest_cluster.len(),
            Predictions::Projections { dim, projections } => projections.len() / (*dim).max(1),
        }
    }

    /// One JSON object per row, as SageMaker writes a JSON Lines response.
    pub fn records(&self) -> Vec<Value> {
        match self {
            Predictions::Scores {
                width,
                scores,
                predicted_label,
            } => scores
                .chunks(*width)
                .enumerate()
                .map(|(i, s)| {
                    let score = if *width == 1 { json!(s[0]) } else { json!(s) };
                    match predicted_label {
                        Some(l) => json!({"score": score, "predicted_label": label(l[i])}),
                        None => json!({"score": score}),
                    }
                })
                .collect(),
            Predictions::Clusters {
                closest_cluster,
                distance_to_cluster,
            } => closest_cluster
                .iter()
                .zip(distance_to_cluster)
                .map(|(c, d)| json!({"closest_cluster": c, "distance_to_cluster": d}))
                .collect(),
            Predictions::Projections { dim, projections } => projections
                .chunks(*dim)
                .map(|p| json!({"projection": p}))
                .collect(),
        }
    }

    /// The `application/json` response body.
    pub fn to_json(&self) -> Value {
        let key = match self {
            Predictions::Projections { .. } => "projections",
            _ => "predictions",
        };
        json!({ key: self.records() })
    }
}

/// Integral labels as JSON integers (SageMaker writes `"predicted_label": 2`).
fn label(l: f32) -> Value {
    if l.fract() == 0.0 && l.abs() < 1e9 {
        json!(l as i64)
    } else {
        json!(l)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_match_sagemaker() {
        let p = Predictions::Scores {
            width: 1,
            scores: vec![0.25],
            predicted_label: Some(vec![0.0]),
        };
        assert_eq!(
            p.to_json(),
            json!({"predictions": [{"score": 0.25, "predicted_label": 0}]})
        );
        let p = Predictions::Scores {
            width: 3,
            scores: vec![0.25, 0.25, 0.5],
            predicted_label: Some(vec![2.0]),
        };
        assert_eq!(
            p.records()[0],
            json!({"score": [0.25, 0.25, 0.5], "predicted_label": 2})
        );
        let p = Predictions::Scores {
            width: 1,
            scores: vec![1.5, 2.5],
            predicted_label: None,
        };
        assert_eq!(
            p.to_json(),
            json!({"predictions": [{"score": 1.5}, {"score": 2.5}]})
        );
        let p = Predictions::Clusters {
            closest_cluster: vec![1],
            distance_to_cluster: vec![0.5],
        };
        assert_eq!(
            p.to_json(),
            json!({"predictions": [{"closest_cluster": 1, "distance_to_cluster": 0.5}]})
        );
        let p = Predictions::Projections {
            dim: 2,
            projections: vec![1.0, 2.0, 3.0, 4.0],
        };
        assert_eq!(p.n_rows(), 2);
        assert_eq!(
            p.to_json(),
            json!({"projections": [{"projection": [1.0, 2.0]}, {"projection": [3.0, 4.0]}]})
        );
    }
}
