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
        let mut reader = CsvReader::new(has_label, false);
        reader.feed(bytes)?;
        reader.end_object()?;
        reader.finish()
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

/// An incremental `text/csv` reader: bytes are fed in chunks as they arrive (lines may span
/// chunks), one or more objects one after another (each object's lines are numbered from 1,
/// and with `header` each object's first line is skipped, as SageMaker's `header=present`),
/// then [`CsvReader::finish`] makes the [`Dataset`]. Every object must have the width of the
/// first record. [`Dataset::from_csv`] is this reader over one slice.
#[derive(Debug)]
pub struct CsvReader {
    has_label: bool,
    header: bool,
    features: Vec<f32>,
    labels: Option<Vec<f32>>,
    width: Option<usize>,
    /// The bytes of a line not yet ended by a newline.
    partial: Vec<u8>,
    /// Lines seen in the current object.
    line: usize,
}

impl CsvReader {
    /// A reader; with `has_label` the first column is the label, with `header` each object's
    /// first line is a header and is skipped.
    pub fn new(has_label: bool, header: bool) -> Self {
        CsvReader {
            has_label,
            header,
            features: Vec::new(),
            labels: has_label.then(Vec::new),
            width: None,
            partial: Vec::new(),
            line: 0,
        }
    }

    /// Parses the complete lines of `data` and keeps the rest for the next chunk.
    pub fn feed(&mut self, mut data: &[u8]) -> Result<()> {
        if !self.partial.is_empty() {
            match data.iter().position(|&b| b == b'\n') {
                None => {
                    self.partial.extend_from_slice(data);
                    return Ok(());
                }
                Some(i) => {
                    self.partial.extend_from_slice(&data[..i]);
                    let line = std::mem::take(&mut self.partial);
                    self.parse_line(&line)?;
                    self.partial = line;
                    self.partial.clear();
                    data = &data[i + 1..];
                }
            }
        }
        match data.iter().rposition(|&b| b == b'\n') {
            None => self.partial.extend_from_slice(data),
            Some(last) => {
                for line in data[..last].split(|&b| b == b'\n') {
                    self.parse_line(line)?;
                }
                self.partial.extend_from_slice(&data[last + 1..]);
            }
        }
        Ok(())
    }

    /// Ends the current object: parses its last line if it had no newline, and numbers the
    /// next object's lines from 1.
    pub fn end_object(&mut self) -> Result<()> {
        if !self.partial.is_empty() {
            let line = std::mem::take(&mut self.partial);
            self.parse_line(&line)?;
        }
        self.line = 0;
        Ok(())
    }

    /// Records read so far.
    pub fn n_rows(&self) -> usize {
        match self.width {
            Some(w) if w > usize::from(self.has_label) => {
                self.features.len() / (w - usize::from(self.has_label))
            }
            _ => 0,
        }
    }

    /// The data set of every record read (call [`CsvReader::end_object`] first).
    pub fn finish(self) -> Result<Dataset> {
        let cols = self
            .width
            .unwrap_or(0)
            .saturating_sub(usize::from(self.has_label));
        if cols == 0 {
            return Err(TrainError::Csv {
                line: 1,
                column: 0,
                reason: if self.width.is_none() {
                    "no records".into()
                } else {
                    "no feature columns".into()
                },
            });
        }
        Dataset::new(self.features, cols, self.labels)
    }

    fn parse_line(&mut self, raw: &[u8]) -> Result<()> {
        self.line += 1;
        let line_no = self.line;
        if self.header && line_no == 1 {
            return Ok(());
        }
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let line = std::str::from_utf8(raw).map_err(|_| TrainError::Csv {
            line: line_no,
            column: 0,
            reason: "not valid UTF-8".into(),
        })?;
        if line.trim().is_empty() {
            return Ok(());
        }
        let (features_before, labels_before) = (
            self.features.len(),
            self.labels.as_ref().map_or(0, Vec::len),
        );
        let result = self.parse_fields(line, line_no);
        if result.is_err() {
            // Leave no half record behind.
            self.features.truncate(features_before);
            if let Some(l) = &mut self.labels {
                l.truncate(labels_before);
            }
        }
        result
    }

    fn parse_fields(&mut self, line: &str, line_no: usize) -> Result<()> {
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
            match (&mut self.labels, j) {
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
                    self.features.push(v)
                }
            }
            n += 1;
        }
        let expected = *self.width.get_or_insert(n);
        if n != expected {
            return Err(TrainError::Csv {
                line: line_no,
                column: n.min(expected) + 1,
                reason: format!("{n} columns where earlier lines have {expected}"),
            });
        }
        Ok(())
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

    #[test]
    fn chunks_split_anywhere_and_headers_are_skipped() {
        let data = b"a,b,c\n1,0.5,2\r\n0,,3\n";
        for cut in 0..data.len() {
            let mut r = CsvReader::new(true, true);
            r.feed(&data[..cut]).unwrap();
            r.feed(&data[cut..]).unwrap();
            r.end_object().unwrap();
            // A second object, without a trailing newline: its header is skipped too.
            r.feed(b"x,y,z\n1,7,8").unwrap();
            r.end_object().unwrap();
            let d = r.finish().unwrap();
            assert_eq!((d.n_rows(), d.n_cols()), (3, 2), "cut at {cut}");
            assert_eq!(d.labels().unwrap(), &[1.0, 0.0, 1.0]);
            assert_eq!(d.row(2), &[7.0, 8.0]);
        }
    }

    #[test]
    fn lines_are_numbered_per_object() {
        let mut r = CsvReader::new(false, false);
        r.feed(b"1,2\n3,4\n").unwrap();
        r.end_object().unwrap();
        let e = r.feed(b"5,6\n7\n").unwrap_err();
        assert!(
            matches!(
                e,
                TrainError::Csv {
                    line: 2,
                    column: 2,
                    ..
                }
            ),
            "{e}"
        );
    }
}
