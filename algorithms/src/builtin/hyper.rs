//! Hyperparameters as SageMaker passes them: a map of strings. [`Hyper`] parses them into
//! typed values one name at a time and, at the end, refuses any name the algorithm did not
//! ask for, so a typo is an error naming the hyperparameter, never silently ignored.
//!
//! Single-threaded, borrowed for the duration of one algorithm's `Params::parse`.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;

use super::error::{Result, TrainError};

/// Names SageMaker itself may add to a job's hyperparameters; accepted and ignored.
const SAGEMAKER_RESERVED: &[&str] = &["_tuning_objective_metric", "_kfold", "_num_kfold"];

/// A cursor over string hyperparameters that remembers which names were read.
pub(crate) struct Hyper<'a> {
    algorithm: &'static str,
    map: &'a BTreeMap<String, String>,
    seen: RefCell<BTreeSet<&'static str>>,
}

impl<'a> Hyper<'a> {
    /// Starts parsing `map` for `algorithm` (its SageMaker image name).
    pub(crate) fn new(algorithm: &'static str, map: &'a BTreeMap<String, String>) -> Self {
        Hyper {
            algorithm,
            map,
            seen: RefCell::new(BTreeSet::new()),
        }
    }

    /// The raw value of `name`, trimmed, or `None` when absent.
    pub(crate) fn raw(&self, name: &'static str) -> Option<&'a str> {
        self.seen.borrow_mut().insert(name);
        self.map.get(name).map(|s| s.trim())
    }

    /// A value parsed with `FromStr`, or `default` when absent.
    pub(crate) fn get<T: FromStr>(&self, name: &'static str, default: T) -> Result<T> {
        match self.raw(name) {
            None => Ok(default),
            Some(v) => parse(name, v),
        }
    }

    /// A required value parsed with `FromStr`.
    pub(crate) fn required<T: FromStr>(&self, name: &'static str) -> Result<T> {
        match self.raw(name) {
            None => Err(TrainError::MissingHyperparameter { name }),
            Some(v) => parse(name, v),
        }
    }

    /// `None` for absent or `"auto"`, else the parsed value.
    pub(crate) fn auto<T: FromStr>(&self, name: &'static str) -> Result<Option<T>> {
        match self.raw(name) {
            None => Ok(None),
            Some(v) if v.eq_ignore_ascii_case("auto") => Ok(None),
            Some(v) => parse(name, v).map(Some),
        }
    }

    /// A boolean (`true`/`false`, any case, also `1`/`0`), or `default` when absent.
    pub(crate) fn flag(&self, name: &'static str, default: bool) -> Result<bool> {
        match self.raw(name) {
            None => Ok(default),
            Some(v) => parse_bool(name, v),
        }
    }

    /// One of `choices` (exact, lower case), or `default` when absent.
    pub(crate) fn choice(
        &self,
        name: &'static str,
        choices: &[&'static str],
        default: &'static str,
    ) -> Result<&'static str> {
        let v = self.raw(name).unwrap_or(default);
        choices
            .iter()
            .find(|c| c.eq_ignore_ascii_case(v))
            .copied()
            .ok_or_else(|| TrainError::bad(name, v, format!("expected one of {choices:?}")))
    }

    /// Fails on the first name that was never read (SageMaker's reserved names excepted).
    pub(crate) fn finish(self) -> Result<()> {
        let seen = self.seen.borrow();
        for name in self.map.keys() {
            if !seen.contains(name.as_str()) && !SAGEMAKER_RESERVED.contains(&name.as_str()) {
                return Err(TrainError::UnknownHyperparameter {
                    algorithm: self.algorithm,
                    name: name.clone(),
                });
            }
        }
        Ok(())
    }
}

fn parse<T: FromStr>(name: &str, v: &str) -> Result<T> {
    v.parse::<T>().map_err(|_| {
        TrainError::bad(
            name,
            v,
            format!(
                "expected {}",
                std::any::type_name::<T>()
                    .rsplit("::")
                    .next()
                    .unwrap_or("value")
            ),
        )
    })
}

fn parse_bool(name: &str, v: &str) -> Result<bool> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(TrainError::bad(name, v, "expected true or false")),
    }
}

/// Checks `lo <= v <= hi` (use infinities for open ends).
pub(crate) fn in_range<T: PartialOrd + std::fmt::Display + Copy>(
    name: &str,
    v: T,
    lo: T,
    hi: T,
) -> Result<T> {
    if v >= lo && v <= hi {
        Ok(v)
    } else {
        Err(TrainError::bad(
            name,
            &v.to_string(),
            format!("must be in [{lo}, {hi}]"),
        ))
    }
}

/// Checks `v > 0` for a float.
pub(crate) fn positive(name: &str, v: f64) -> Result<f64> {
    if v > 0.0 && v.is_finite() {
        Ok(v)
    } else {
        Err(TrainError::bad(
            name,
            &v.to_string(),
            "must be a positive number",
        ))
    }
}

/// Checks `v >= 0` for a float.
pub(crate) fn non_negative(name: &str, v: f64) -> Result<f64> {
    if v >= 0.0 && v.is_finite() {
        Ok(v)
    } else {
        Err(TrainError::bad(name, &v.to_string(), "must be >= 0"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parses_and_refuses_unknown() {
        let m = map(&[("epochs", "3"), ("bogus", "1")]);
        let h = Hyper::new("kmeans", &m);
        assert_eq!(h.get::<usize>("epochs", 1).unwrap(), 3);
        let e = h.finish().unwrap_err();
        assert!(matches!(e, TrainError::UnknownHyperparameter { ref name, .. } if name == "bogus"));
    }

    #[test]
    fn bad_value_names_the_hyperparameter() {
        let m = map(&[("epochs", "three")]);
        let h = Hyper::new("kmeans", &m);
        let e = h.get::<usize>("epochs", 1).unwrap_err();
        assert!(e.to_string().contains("`epochs`"), "{e}");
        assert_eq!(h.auto::<f64>("learning_rate").unwrap(), None);
        assert!(h.flag("x", true).unwrap());
    }
}
