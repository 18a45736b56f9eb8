//! The search space: SageMaker's `ParameterRanges` (Integer, Continuous, Categorical) checked
//! as SageMaker checks them, and each range's scaling (`Linear`, `Logarithmic`,
//! `ReverseLogarithmic`; `Auto` is linear) between its values and the unit interval the
//! strategies search in.
//!
//! A point of the space is a map hyperparameter → value string, as a training job takes it.
//! The strategies see two encodings: [`Space::to_unit`] (one coordinate per range in `[0, 1]`,
//! a categorical as its index) for sampling and grids, and [`Space::features`] (numeric ranges
//! scaled to `[0, 1]`, categoricals one-hot) for the Bayesian surrogate.

use std::collections::BTreeMap;

use super::StrategyError;

/// Most ranges a search may have (SageMaker's limit).
pub const MAX_RANGES: usize = 30;
/// Most values a categorical range may have (SageMaker's limit).
pub const MAX_CATEGORICAL_VALUES: usize = 30;

/// `ScalingType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scaling {
    /// Chosen by Pier: linear.
    Auto,
    /// Uniform over the range.
    Linear,
    /// Uniform over the logarithm (bounds > 0).
    Logarithmic,
    /// Dense near the top: uniform over `log(1 - x)` (`0 <= MinValue < MaxValue < 1`).
    ReverseLogarithmic,
}

impl Scaling {
    /// Parses SageMaker's name (absent: `Auto`).
    pub fn parse(field: &str, s: Option<&str>) -> Result<Self, StrategyError> {
        Ok(match s {
            None | Some("Auto") => Scaling::Auto,
            Some("Linear") => Scaling::Linear,
            Some("Logarithmic") => Scaling::Logarithmic,
            Some("ReverseLogarithmic") => Scaling::ReverseLogarithmic,
            Some(other) => {
                return Err(StrategyError::new(format!(
                    "{field}.ScalingType {other:?} must be one of Auto, Linear, Logarithmic, \
                     ReverseLogarithmic"
                )));
            }
        })
    }
}

/// What values a range takes.
#[derive(Clone, Debug, PartialEq)]
pub enum Domain {
    /// Integers from `min` to `max` inclusive.
    Integer {
        /// Smallest value.
        min: i64,
        /// Largest value.
        max: i64,
    },
    /// Reals from `min` to `max`.
    Continuous {
        /// Smallest value.
        min: f64,
        /// Largest value.
        max: f64,
    },
    /// One of these strings.
    Categorical(Vec<String>),
}

/// One range of the search.
#[derive(Clone, Debug, PartialEq)]
pub struct Range {
    /// The hyperparameter it sets.
    pub name: String,
    /// Its values.
    pub domain: Domain,
    /// How the unit interval maps onto it.
    pub scaling: Scaling,
}

/// A point: hyperparameter → value, as a training job takes it.
pub type Point = BTreeMap<String, String>;

/// The search space, ranges in SageMaker's order (integer, continuous, then categorical
/// ranges, each as given).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Space {
    /// The ranges.
    pub ranges: Vec<Range>,
}

fn num(field: &str, s: &str) -> Result<f64, StrategyError> {
    s.trim()
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
        .ok_or_else(|| StrategyError::new(format!("{field} {s:?} is not a number")))
}

impl Range {
    /// An integer range from the wire's strings, checked.
    pub fn integer(
        name: &str,
        min: &str,
        max: &str,
        scaling: Option<&str>,
    ) -> Result<Self, StrategyError> {
        let field = format!("IntegerParameterRanges[{name}]");
        let int = |which: &str, s: &str| -> Result<i64, StrategyError> {
            s.trim()
                .parse::<i64>()
                .map_err(|_| StrategyError::new(format!("{field}.{which} {s:?} is not an integer")))
        };
        let (lo, hi) = (int("MinValue", min)?, int("MaxValue", max)?);
        let scaling = Scaling::parse(&field, scaling)?;
        if lo > hi {
            return Err(StrategyError::new(format!(
                "{field}: MinValue {lo} is greater than MaxValue {hi}"
            )));
        }
        match scaling {
            Scaling::Logarithmic if lo <= 0 => {
                return Err(StrategyError::new(format!(
                    "{field}: Logarithmic scaling needs MinValue greater than 0, not {lo}"
                )));
            }
            Scaling::ReverseLogarithmic => {
                return Err(StrategyError::new(format!(
                    "{field}: ReverseLogarithmic scaling is only for continuous ranges"
                )));
            }
            _ => {}
        }
        Ok(Range {
            name: name.to_owned(),
            domain: Domain::Integer { min: lo, max: hi },
            scaling,
        })
    }

    /// A continuous range from the wire's strings, checked.
    pub fn continuous(
        name: &str,
        min: &str,
        max: &str,
        scaling: Option<&str>,
    ) -> Result<Self, StrategyError> {
        let field = format!("ContinuousParameterRanges[{name}]");
        let (lo, hi) = (
            num(&format!("{field}.MinValue"), min)?,
            num(&format!("{field}.MaxValue"), max)?,
        );
        let scaling = Scaling::parse(&field, scaling)?;
        if lo > hi {
            return Err(StrategyError::new(format!(
                "{field}: MinValue {lo} is greater than MaxValue {hi}"
            )));
        }
        match scaling {
            Scaling::Logarithmic if lo <= 0.0 => {
                return Err(StrategyError::new(format!(
                    "{field}: Logarithmic scaling needs MinValue greater than 0, not {lo}"
                )));
            }
            Scaling::ReverseLogarithmic if !(lo >= 0.0 && hi < 1.0) => {
                return Err(StrategyError::new(format!(
                    "{field}: ReverseLogarithmic scaling needs 0 <= MinValue and MaxValue < 1, \
                     not [{lo}, {hi}]"
                )));
            }
            _ => {}
        }
        Ok(Range {
            name: name.to_owned(),
            domain: Domain::Continuous { min: lo, max: hi },
            scaling,
        })
    }

    /// A categorical range, checked.
    pub fn categorical(name: &str, values: &[String]) -> Result<Self, StrategyError> {
        let field = format!("CategoricalParameterRanges[{name}]");
        if values.is_empty() || values.len() > MAX_CATEGORICAL_VALUES {
            return Err(StrategyError::new(format!(
                "{field}.Values must hold 1 to {MAX_CATEGORICAL_VALUES} values, not {}",
                values.len()
            )));
        }
        for (i, v) in values.iter().enumerate() {
            if values[..i].contains(v) {
                return Err(StrategyError::new(format!(
                    "{field}.Values holds {v:?} twice"
                )));
            }
        }
        Ok(Range {
            name: name.to_owned(),
            domain: Domain::Categorical(values.to_vec()),
            scaling: Scaling::Auto,
        })
    }

    /// How many values it takes (`None`: continuous).
    pub fn cardinality(&self) -> Option<u64> {
        match &self.domain {
            Domain::Integer { min, max } => Some((max - min) as u64 + 1),
            Domain::Continuous { .. } => None,
            Domain::Categorical(v) => Some(v.len() as u64),
        }
    }

    /// The value at `u` in `[0, 1]` of the scaled range.
    pub fn value_at(&self, u: f64) -> String {
        let u = u.clamp(0.0, 1.0);
        match &self.domain {
            Domain::Categorical(values) => {
                let i = ((u * values.len() as f64) as usize).min(values.len() - 1);
                values[i].clone()
            }
            Domain::Integer { min, max } => {
                // Integers own equal slices of the scaled interval [min - 0.5, max + 0.5].
                let (lo, hi) = (*min as f64 - 0.5, *max as f64 + 0.5);
                let x = match self.scaling {
                    Scaling::Logarithmic => {
                        let (lo, hi) = ((*min as f64).ln(), (*max as f64 + 1.0).ln());
                        (lo + u * (hi - lo)).exp().floor()
                    }
                    _ => (lo + u * (hi - lo)).round(),
                };
                (x as i64).clamp(*min, *max).to_string()
            }
            Domain::Continuous { min, max } => {
                let x = scale(self.scaling, *min, *max, u);
                format_float(x.clamp(*min, *max))
            }
        }
    }

    /// Where `value` lies in `[0, 1]` (the middle of its slice for integers and categories);
    /// `None` when it is not a value of the range.
    pub fn unit_of(&self, value: &str) -> Option<f64> {
        match &self.domain {
            Domain::Categorical(values) => {
                let i = values.iter().position(|v| v == value)?;
                Some((i as f64 + 0.5) / values.len() as f64)
            }
            Domain::Integer { min, max } => {
                let x: i64 = value.trim().parse().ok()?;
                if x < *min || x > *max {
                    return None;
                }
                Some(match self.scaling {
                    Scaling::Logarithmic => {
                        let (lo, hi) = ((*min as f64).ln(), (*max as f64 + 1.0).ln());
                        (((x as f64 + 0.5).ln() - lo) / (hi - lo)).clamp(0.0, 1.0)
                    }
                    _ => {
                        (x - min) as f64 / ((max - min) as f64 + 1.0)
                            + 0.5 / ((max - min) as f64 + 1.0)
                    }
                })
            }
            Domain::Continuous { min, max } => {
                let x: f64 = value.trim().parse().ok().filter(|x: &f64| x.is_finite())?;
                if x < *min - 1e-12 * min.abs().max(1.0) || x > *max + 1e-12 * max.abs().max(1.0) {
                    return None;
                }
                Some(unscale(self.scaling, *min, *max, x.clamp(*min, *max)))
            }
        }
    }
}

/// `u` in `[0, 1]` → a value of `[min, max]` under `scaling`.
fn scale(scaling: Scaling, min: f64, max: f64, u: f64) -> f64 {
    if max <= min {
        return min;
    }
    match scaling {
        Scaling::Auto | Scaling::Linear => min + u * (max - min),
        Scaling::Logarithmic => (min.ln() + u * (max.ln() - min.ln())).exp(),
        Scaling::ReverseLogarithmic => {
            // Uniform over log(1 - x): 1 - x runs from 1 - min down to 1 - max.
            let (a, b) = ((1.0 - min).ln(), (1.0 - max).ln());
            1.0 - (a + u * (b - a)).exp()
        }
    }
}

fn unscale(scaling: Scaling, min: f64, max: f64, x: f64) -> f64 {
    if max <= min {
        return 0.5;
    }
    let u = match scaling {
        Scaling::Auto | Scaling::Linear => (x - min) / (max - min),
        Scaling::Logarithmic => (x.ln() - min.ln()) / (max.ln() - min.ln()),
        Scaling::ReverseLogarithmic => {
            let (a, b) = ((1.0 - min).ln(), (1.0 - max).ln());
            ((1.0 - x).ln() - a) / (b - a)
        }
    };
    u.clamp(0.0, 1.0)
}

/// A real as a hyperparameter string: 12 significant digits, shortest form.
pub fn format_float(x: f64) -> String {
    let x: f64 = format!("{x:.11e}").parse().unwrap_or(x);
    let s = format!("{x}");
    if s.contains('e') || s.contains('.') || s.contains("inf") || s.contains("NaN") {
        s
    } else {
        format!("{s}.0")
    }
}

impl Space {
    /// A space of these ranges; names must be distinct and at most [`MAX_RANGES`].
    pub fn new(ranges: Vec<Range>) -> Result<Self, StrategyError> {
        if ranges.is_empty() {
            return Err(StrategyError::new(
                "ParameterRanges must hold at least one range",
            ));
        }
        if ranges.len() > MAX_RANGES {
            return Err(StrategyError::new(format!(
                "ParameterRanges holds {} ranges; at most {MAX_RANGES} are allowed",
                ranges.len()
            )));
        }
        for (i, r) in ranges.iter().enumerate() {
            if ranges[..i].iter().any(|o| o.name == r.name) {
                return Err(StrategyError::new(format!(
                    "ParameterRanges names the hyperparameter {:?} twice",
                    r.name
                )));
            }
        }
        Ok(Space { ranges })
    }

    /// The point at unit coordinates `u` (one per range).
    pub fn point_at(&self, u: &[f64]) -> Point {
        self.ranges
            .iter()
            .zip(u)
            .map(|(r, &u)| (r.name.clone(), r.value_at(u)))
            .collect()
    }

    /// The unit coordinates of a point; `None` if a value is missing or out of its range.
    pub fn to_unit(&self, p: &Point) -> Option<Vec<f64>> {
        self.ranges
            .iter()
            .map(|r| r.unit_of(p.get(&r.name)?))
            .collect()
    }

    /// The surrogate's features of a point: numeric ranges' unit coordinate, categoricals
    /// one-hot.
    pub fn features(&self, p: &Point) -> Option<Vec<f64>> {
        let mut f = Vec::with_capacity(self.feature_len());
        for r in &self.ranges {
            let v = p.get(&r.name)?;
            match &r.domain {
                Domain::Categorical(values) => {
                    let i = values.iter().position(|x| x == v)?;
                    f.extend((0..values.len()).map(|j| if i == j { 1.0 } else { 0.0 }));
                }
                _ => f.push(r.unit_of(v)?),
            }
        }
        Some(f)
    }

    /// The number of surrogate features.
    pub fn feature_len(&self) -> usize {
        self.ranges
            .iter()
            .map(|r| match &r.domain {
                Domain::Categorical(v) => v.len(),
                _ => 1,
            })
            .sum()
    }

    /// The number of distinct points (`None`: a continuous range, or past `u64`).
    pub fn cardinality(&self) -> Option<u64> {
        self.ranges
            .iter()
            .try_fold(1u64, |n, r| n.checked_mul(r.cardinality()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sagemaker_validation_names_the_range() {
        for (r, needle) in [
            (
                Range::continuous("eta", "0", "1", Some("Logarithmic")),
                "greater than 0",
            ),
            (
                Range::continuous("eta", "0.5", "1", Some("ReverseLogarithmic")),
                "MaxValue < 1",
            ),
            (
                Range::integer("d", "1", "5", Some("ReverseLogarithmic")),
                "only for continuous",
            ),
            (
                Range::integer("d", "0", "5", Some("Logarithmic")),
                "greater than 0",
            ),
            (Range::integer("d", "6", "5", None), "greater than MaxValue"),
            (Range::integer("d", "1.5", "5", None), "not an integer"),
            (Range::continuous("eta", "x", "1", None), "not a number"),
            (
                Range::continuous("eta", "0", "1", Some("Cubic")),
                "ScalingType",
            ),
            (Range::categorical("c", &[]), "1 to 30"),
            (Range::categorical("c", &["a".into(), "a".into()]), "twice"),
        ] {
            let e = r.unwrap_err().to_string();
            assert!(e.contains(needle), "{needle}: {e}");
        }
        let dup = Space::new(vec![
            Range::integer("d", "1", "2", None).unwrap(),
            Range::integer("d", "1", "3", None).unwrap(),
        ]);
        assert!(dup.unwrap_err().to_string().contains("\"d\" twice"));
    }

    #[test]
    fn scalings_map_the_unit_interval_onto_the_range_and_back() {
        let log = Range::continuous("eta", "0.001", "1", Some("Logarithmic")).unwrap();
        assert_eq!(log.value_at(0.0), "0.001");
        assert!((log.value_at(0.5).parse::<f64>().unwrap() - 0.0316227766).abs() < 1e-6);
        assert!((log.unit_of("0.01").unwrap() - 1.0 / 3.0).abs() < 1e-9);
        let rev = Range::continuous("b", "0.9", "0.999", Some("ReverseLogarithmic")).unwrap();
        let mid: f64 = rev.value_at(0.5).parse().unwrap();
        assert!((mid - 0.99).abs() < 1e-9, "{mid}");
        assert!((rev.unit_of("0.99").unwrap() - 0.5).abs() < 1e-9);
        let int = Range::integer("d", "2", "10", None).unwrap();
        let mut seen = std::collections::BTreeSet::new();
        for i in 0..=1000 {
            let v = int.value_at(i as f64 / 1000.0);
            assert_eq!(int.value_at(int.unit_of(&v).unwrap()), v);
            seen.insert(v.parse::<i64>().unwrap());
        }
        assert_eq!(
            seen.into_iter().collect::<Vec<_>>(),
            (2..=10).collect::<Vec<_>>()
        );
        let ilog = Range::integer("n", "1", "1000", Some("Logarithmic")).unwrap();
        assert_eq!(ilog.value_at(0.0), "1");
        assert_eq!(ilog.value_at(1.0), "1000");
        assert!(int.unit_of("11").is_none() && log.unit_of("2").is_none());
    }
}
