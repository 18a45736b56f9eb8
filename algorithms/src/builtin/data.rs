//! Training data: a dense row-major `f32` matrix with optional labels, and the `text/csv`
//! channel reader as SageMaker's built-in algorithms read it — no header, one record a line,
//! the label in the first column for supervised algorithms and no label column for the
//! unsupervised ones (k-means, PCA; SageMaker's `label_size=0`). An empty feature field is a
//! missing value (NaN). Errors name the 1-based line and column.
//!
//! Plain data, no interior mutability; shared read-only across rayon workers while training.

use super::error::{Result, TrainError};

/// A dense data set: `n_rows x n_cols` features, row-major, NaN for missing.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    n_rows: usize,
    n_cols: usize,
    features: Vec<f32>,
    labels: Option<Vec<f32>>,
}

impl Dataset {
    /// A data set from row-major `features` of width `n_cols` and optional labels.
    pub fn new(features: Vec<f32>, n_cols: usize, labels: Option<Vec<f32>>) -> Result<Self> {
        if n_cols == 0 {
            return Err(TrainError::Input(
                "a data set needs at least one feature column".into(),
            ));
        }
        if !features.len().is_multiple_of(n_cols) {
            return Err(TrainError::Input(format!(
                "{} values do not make rows of {n_cols} features",
                features.len()
            )));
        }
        let n_rows = features.len() / n_cols;
        if let Some(l) = &labels
            && l.len() != n_rows
        {
            return Err(TrainError::Input(format!(
                "{} labels for {n_rows} rows",
                l.len()
            )));
        }
        Ok(Dataset {
            n_rows,
            n_cols,
            features,
            labels,
        })
    }

    /// Reads SageMaker `text/csv`: with `has_label` the first column is the label.
    pub fn from_csv(bytes: &[u8], has_label: bool) -> Result<Self> {
        let text = std::str::from_utf8(bytes).map_err(|e| {
            let line = bytes[..e.valid_up_to()]
                .iter()
                .filter(|&&b| b == b'\n')
                .count()
                + 1;
            TrainError::Csv {
                line,
                column: 0,
                reason: "not valid UTF-8".into(),
            }
        })?;
        let mut features = Vec::new();
        let mut labels = has_label.then(Vec::new);
        let mut width: Option<usize> = None;
        for (i, raw) in text.split('\n').enumerate() {
            let line_no = i + 1;
            let line = raw.strip_suffix('\r').unwrap_or(raw);
            if line.trim().is_empty() {
                continue;
            }
            let mut n = 0;
            for (j, field) in line.split(',').enumerate() {
                let col = j + 1;
                let f = field.trim();
                let v = if f.is_empty() {
                    f32::NAN
                } else {
                    f.parse::<f32>().map_err(|_| TrainError::Csv {
                        line: line_no,
                        column: col,
                        reason: format!("{f:?} is not a number"),
                    })?
                };
                match (&mut labels, j) {
                    (Some(l), 0) => {
                        if !v.is_finite() {
                            return Err(TrainError::Csv {
                                line: line_no,
                                column: col,
                                reason: "the label is missing or not finite".into(),
                            });
                        }
                        l.push(v)
                    }
                    _ => {
                        if v.is_infinite() {
                            return Err(TrainError::Csv {
                                line: line_no,
                                column: col,
                                reason: "infinite value".into(),
                            });
                        }
                        features.push(v)
                    }
                }
                n += 1;
            }
            let expected = *width.get_or_insert(n);
            if n != expected {
                return Err(TrainError::Csv {
                    line: line_no,
                    column: n.min(expected) + 1,
                    reason: format!("{n} columns where earlier lines have {expected}"),
                });
            }
        }
        let cols = width.unwrap_or(0).saturating_sub(usize::from(has_label));
        if cols == 0 {
            return Err(TrainError::Csv {
                line: 1,
                column: 0,
                reason: if width.is_none() {
                    "no records".into()
                } else {
                    "no feature columns".into()
                },
            });
        }
        Dataset::new(features, cols, labels)
    }

    /// Number of rows.
    pub fn n_rows(&self) -> usize {
        self.n_rows
    }

    /// Number of feature columns.
    pub fn n_cols(&self) -> usize {
        self.n_cols
    }

    /// All features, row-major.
    pub fn features(&self) -> &[f32] {
        &self.features
    }

    /// Row `i`'s features.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.features[i * self.n_cols..(i + 1) * self.n_cols]
    }

    /// The labels, if the data set has them.
    pub fn labels(&self) -> Option<&[f32]> {
        self.labels.as_deref()
    }

    /// The labels or a [`TrainError::Data`] saying that `channel` lacks them.
    pub(crate) fn require_labels(&self, channel: &'static str) -> Result<&[f32]> {
        self.labels
            .as_deref()
            .ok_or_else(|| TrainError::data(channel, "this algorithm needs labels"))
    }

    /// Fails unless every feature is finite (algorithms that cannot handle missing values).
    pub(crate) fn require_finite(&self, channel: &'static str) -> Result<()> {
        match self.features.iter().position(|v| !v.is_finite()) {
            None => Ok(()),
            Some(p) => Err(TrainError::data(
                channel,
                format!(
                    "missing value at row {}, feature {}; this algorithm needs dense data",
                    p / self.n_cols + 1,
                    p % self.n_cols + 1
                ),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_labelled_csv() {
        let d = Dataset::from_csv(b"1,0.5,2\r\n0,,3\n\n", true).unwrap();
        assert_eq!((d.n_rows(), d.n_cols()), (2, 2));
        assert_eq!(d.labels().unwrap(), &[1.0, 0.0]);
        assert!(d.row(1)[0].is_nan());
    }

    #[test]
    fn names_line_and_column() {
        let e = Dataset::from_csv(b"1,2,3\n4,x,6\n", false).unwrap_err();
        assert_eq!(
            e,
            TrainError::Csv {
                line: 2,
                column: 2,
                reason: "\"x\" is not a number".into()
            }
        );
        let e = Dataset::from_csv(b"1,2,3\n4,5\n", false).unwrap_err();
        assert!(
            matches!(
                e,
                TrainError::Csv {
                    line: 2,
                    column: 3,
                    ..
                }
            ),
            "{e}"
        );
    }
}
