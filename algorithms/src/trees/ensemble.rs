//! [`TreeEnsemble`]: a loaded model, whichever library wrote it, and its predict API.
//!
//! A `TreeEnsemble` is immutable after load and `Send + Sync`: share one behind an `Arc`
//! and call `predict` from as many threads as you like; each call is single-threaded and
//! allocates only its output and one block-sized accumulator.

use super::error::{Result, TreeError};
use super::predict::{FEATURE_MASK, Layout};
use super::raw::{RawTree, lower};
use super::transform::Transform;

/// Most output groups (classes) a model may have; bounds what a file can make the
/// loader and each predict call allocate.
pub(crate) const MAX_GROUPS: usize = 1 << 16;

/// Which library wrote the model (and whose arithmetic the predictor reproduces).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelFormat {
    /// XGBoost JSON or UBJSON; sums in `f32`.
    XGBoost,
    /// LightGBM text; sums in `f64`.
    LightGBM,
}

/// What [`TreeEnsemble::predict`] returns per row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputKind {
    /// One probability of the positive class (binary classification).
    Probability,
    /// One probability per class, summing to 1 (or per-class sigmoid for one-vs-all).
    Probabilities,
    /// A predicted value (regression, counts).
    Regression,
    /// A class index as a float (XGBoost `multi:softmax`).
    Label,
    /// The raw margin, untransformed (e.g. `binary:logitraw`, ranking scores).
    Margin,
}

/// A model's objective as Pier serves it.
#[derive(Debug, Clone, PartialEq)]
pub struct Objective {
    /// The objective's name as the file spells it, e.g. `binary:logistic` or `multiclass`.
    pub name: String,
    /// How margins become outputs.
    pub transform: Transform,
    /// What the outputs mean.
    pub output_kind: OutputKind,
}

/// A loaded XGBoost or LightGBM tree ensemble, ready to predict.
#[derive(Debug, Clone)]
pub struct TreeEnsemble {
    layout: Layout,
    format: ModelFormat,
    objective: Objective,
    num_features: usize,
    /// Base margin per group (XGBoost's `base_score` through the inverse link; 0 for LightGBM).
    base_margin: Vec<f64>,
    /// Divide the sum by this before the transform (LightGBM `average_output`, random
    /// forests); 1 otherwise. LightGBM's raw scores are the plain sum, so margins skip it.
    average_over: f64,
    /// Feature names recorded in the file, if it records them for every feature.
    feature_names: Option<Vec<String>>,
}

impl TreeEnsemble {
    /// Builds an ensemble from the readers' intermediate form, validating every tree.
    pub(crate) fn build(
        format: ModelFormat,
        objective: Objective,
        num_features: usize,
        base_margin: Vec<f64>,
        trees: &[RawTree],
        tree_name: &dyn Fn(usize) -> String,
    ) -> Result<Self> {
        if num_features == 0 {
            return Err(TreeError::invalid(
                "model",
                "the model has no input features",
            ));
        }
        if num_features > FEATURE_MASK as usize + 1 {
            return Err(TreeError::Unsupported(format!(
                "{num_features} input features (at most 2^28)"
            )));
        }
        if base_margin.is_empty() {
            return Err(TreeError::invalid("model", "the model has no outputs"));
        }
        let layout = lower(trees, num_features, base_margin.len(), tree_name)?;
        Ok(TreeEnsemble {
            layout,
            format,
            objective,
            num_features,
            base_margin,
            average_over: 1.0,
            feature_names: None,
        })
    }

    /// Records the file's feature names; ignored unless there is one per feature.
    pub(crate) fn with_feature_names(mut self, names: Vec<String>) -> Self {
        if names.len() == self.num_features {
            self.feature_names = Some(names);
        }
        self
    }

    /// LightGBM `average_output` (random forest): outputs are the mean over `iterations`.
    pub(crate) fn with_average_over(mut self, iterations: usize) -> Self {
        self.average_over = iterations.max(1) as f64;
        self
    }

    /// Features per input row.
    pub fn num_features(&self) -> usize {
        self.num_features
    }

    /// Values per row that [`predict`](Self::predict) returns: 1 for binary, regression
    /// and `multi:softmax` labels, the class count for multiclass probabilities.
    pub fn num_outputs(&self) -> usize {
        self.objective
            .transform
            .output_width(self.base_margin.len())
    }

    /// Values per row that [`predict_margin`](Self::predict_margin) returns (the class
    /// count for multiclass models, else 1).
    pub fn num_groups(&self) -> usize {
        self.base_margin.len()
    }

    /// Number of trees.
    pub fn num_trees(&self) -> usize {
        self.layout.trees.len()
    }

    /// The objective (name, transform, output meaning).
    pub fn objective(&self) -> &Objective {
        &self.objective
    }

    /// What [`predict`](Self::predict)'s outputs mean.
    pub fn output_kind(&self) -> OutputKind {
        self.objective.output_kind
    }

    /// Which library wrote the model.
    pub fn format(&self) -> ModelFormat {
        self.format
    }

    /// The input feature names the file records (XGBoost `feature_names`, LightGBM
    /// `feature_names=`), if it names every feature.
    pub fn feature_names(&self) -> Option<&[String]> {
        self.feature_names.as_deref()
    }

    /// Transformed predictions (what the library's `predict` returns), row-major
    /// `[n_rows, num_outputs()]`. `features` is row-major `[n_rows, n_features]`, NaN for
    /// missing values; `n_features` must equal [`num_features`](Self::num_features).
    pub fn predict(&self, features: &[f32], n_rows: usize, n_features: usize) -> Result<Vec<f32>> {
        // Shape first: the output is only allocated for an input that matches it.
        self.check_input(features, n_rows, n_features)?;
        let mut out = vec![0.0; n_rows * self.num_outputs()];
        self.predict_into(features, n_rows, n_features, &mut out)?;
        Ok(out)
    }

    /// Like [`predict`](Self::predict), writing into `out` (length `n_rows * num_outputs()`).
    pub fn predict_into(
        &self,
        features: &[f32],
        n_rows: usize,
        n_features: usize,
        out: &mut [f32],
    ) -> Result<()> {
        self.check(features, n_rows, n_features, out.len(), self.num_outputs())?;
        self.run(features, Some(self.objective.transform), out);
        Ok(())
    }

    /// Raw margins before the objective's transform, row-major `[n_rows, num_groups()]`
    /// (what the library returns with `output_margin=True` / `raw_score=True`).
    pub fn predict_margin(
        &self,
        features: &[f32],
        n_rows: usize,
        n_features: usize,
    ) -> Result<Vec<f32>> {
        self.check_input(features, n_rows, n_features)?;
        let mut out = vec![0.0; n_rows * self.num_groups()];
        self.check(features, n_rows, n_features, out.len(), self.num_groups())?;
        self.run(features, None, &mut out);
        Ok(out)
    }

    fn check(
        &self,
        features: &[f32],
        n_rows: usize,
        n_features: usize,
        out_len: usize,
        width: usize,
    ) -> Result<()> {
        self.check_input(features, n_rows, n_features)?;
        if out_len != n_rows * width {
            return Err(TreeError::WrongOutputLength {
                expected: n_rows * width,
                got: out_len,
            });
        }
        Ok(())
    }

    fn check_input(&self, features: &[f32], n_rows: usize, n_features: usize) -> Result<()> {
        if n_features != self.num_features {
            return Err(TreeError::WrongFeatureCount {
                expected: self.num_features,
                got: n_features,
            });
        }
        if n_rows.checked_mul(n_features) != Some(features.len()) {
            return Err(TreeError::WrongInputLength {
                n_rows,
                n_features,
                got: features.len(),
            });
        }
        Ok(())
    }

    fn run(&self, features: &[f32], transform: Option<Transform>, out: &mut [f32]) {
        match self.format {
            ModelFormat::XGBoost => self.layout.run::<f32>(
                features,
                self.num_features,
                &self.base_margin,
                transform,
                out,
                1.0,
            ),
            ModelFormat::LightGBM => self.layout.run::<f64>(
                features,
                self.num_features,
                &self.base_margin,
                transform,
                out,
                self.average_over,
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ensembles_are_shareable_across_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<TreeEnsemble>();
    }

    #[test]
    fn huge_row_counts_are_refused_before_allocating() {
        let leaf = RawTree {
            nodes: vec![super::super::raw::RawNode::Leaf(1.0)],
            group: 0,
        };
        let objective = Objective {
            name: "reg".into(),
            transform: Transform::Identity,
            output_kind: OutputKind::Regression,
        };
        let model = TreeEnsemble::build(
            ModelFormat::XGBoost,
            objective,
            2,
            vec![0.5],
            &[leaf],
            &|t| t.to_string(),
        )
        .unwrap();
        assert!(matches!(
            model.predict(&[], usize::MAX / 2, 2),
            Err(TreeError::WrongInputLength { .. })
        ));
        assert_eq!(model.predict(&[0.0, 0.0], 1, 2).unwrap(), vec![1.5]);
    }
}
