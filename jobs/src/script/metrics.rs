//! `AlgorithmSpecification.MetricDefinitions` over a script's log, as SageMaker reads them:
//! each definition is a name and a regular expression whose first capture group is the
//! value; every line of the log (stdout and stderr) is tried against every definition, and
//! each match is a point (`step` = the n-th match of that metric, 1-based). The last value of
//! each metric is its final value (FinalMetricDataList).

use std::collections::BTreeMap;

use regex::Regex;
use serde_json::Value;

/// SageMaker's limits: 40 definitions, names of 1–255 characters, expressions of 1–500.
pub const MAX_DEFINITIONS: usize = 40;

/// One compiled definition.
#[derive(Clone, Debug)]
pub struct MetricDefinition {
    /// The metric's name (`validation:accuracy`).
    pub name: String,
    /// The expression; its first group is the value.
    pub regex: Regex,
}

/// Parses and compiles `MetricDefinitions` (`[{"Name": …, "Regex": …}]`); errors name the
/// entry and the field.
pub fn parse_definitions(value: &Value) -> Result<Vec<MetricDefinition>, String> {
    let field = "AlgorithmSpecification.MetricDefinitions";
    let items = value
        .as_array()
        .ok_or_else(|| format!("{field} must be a list of {{\"Name\", \"Regex\"}}"))?;
    if items.len() > MAX_DEFINITIONS {
        return Err(format!(
            "{field} has {} entries; at most {MAX_DEFINITIONS} are allowed",
            items.len()
        ));
    }
    let mut out: Vec<MetricDefinition> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let get = |key: &str| item.get(key).and_then(Value::as_str);
        let name = get("Name").ok_or_else(|| format!("{field}.{i}.Name is required"))?;
        let regex = get("Regex").ok_or_else(|| format!("{field}.{i}.Regex is required"))?;
        if name.is_empty() || name.chars().count() > 255 {
            return Err(format!("{field}.{i}.Name must have 1 to 255 characters"));
        }
        if regex.is_empty() || regex.chars().count() > 500 {
            return Err(format!("{field}.{i}.Regex must have 1 to 500 characters"));
        }
        if out.iter().any(|d| d.name == name) {
            return Err(format!("{field}.{i}.Name {name:?} is defined twice"));
        }
        let compiled = Regex::new(regex)
            .map_err(|e| format!("{field}.{i}.Regex {regex:?} is not a regular expression: {e}"))?;
        if compiled.captures_len() < 2 {
            return Err(format!(
                "{field}.{i}.Regex {regex:?} has no capture group: the first group is the value"
            ));
        }
        out.push(MetricDefinition {
            name: name.to_owned(),
            regex: compiled,
        });
    }
    Ok(out)
}

/// Matches log lines against the definitions, counting each metric's matches.
#[derive(Debug, Default)]
pub struct MetricScanner {
    definitions: Vec<MetricDefinition>,
    steps: BTreeMap<String, u64>,
    last: BTreeMap<String, f64>,
}

impl MetricScanner {
    /// A scanner over `definitions`.
    pub fn new(definitions: Vec<MetricDefinition>) -> Self {
        Self {
            definitions,
            ..Default::default()
        }
    }

    /// The metrics `line` gives: `(name, step, value)` for each definition that matches with a
    /// finite number in its first group.
    pub fn scan(&mut self, line: &str) -> Vec<(String, u64, f64)> {
        let mut found = Vec::new();
        for d in &self.definitions {
            let Some(value) = d
                .regex
                .captures(line)
                .and_then(|c| c.get(1))
                .and_then(|m| m.as_str().trim().parse::<f64>().ok())
                .filter(|v| v.is_finite())
            else {
                continue;
            };
            let step = self.steps.entry(d.name.clone()).or_insert(0);
            *step += 1;
            self.last.insert(d.name.clone(), value);
            found.push((d.name.clone(), *step, value));
        }
        found
    }

    /// Each metric's last value.
    pub fn last(&self) -> &BTreeMap<String, f64> {
        &self.last
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_match_is_a_step_and_the_last_is_final() {
        let defs = parse_definitions(&json!([
            {"Name": "train:loss", "Regex": "loss=([0-9.eE+-]+)"},
            {"Name": "validation:accuracy", "Regex": "val_acc: ([0-9.]+)"},
        ]))
        .unwrap();
        let mut scanner = MetricScanner::new(defs);
        assert_eq!(
            scanner.scan("epoch 1 loss=0.9 val_acc: 0.5"),
            [
                ("train:loss".to_string(), 1, 0.9),
                ("validation:accuracy".to_string(), 1, 0.5)
            ]
        );
        assert!(scanner.scan("nothing here").is_empty());
        assert_eq!(
            scanner.scan("epoch 2 loss=4e-1"),
            [("train:loss".to_string(), 2, 0.4)]
        );
        assert!(scanner.scan("loss=nan").is_empty());
        assert_eq!(scanner.last()["train:loss"], 0.4);
        assert_eq!(scanner.last()["validation:accuracy"], 0.5);
    }

    #[test]
    fn bad_definitions_name_the_entry() {
        for (value, needle) in [
            (json!({}), "must be a list"),
            (json!([{"Regex": "x(1)"}]), "MetricDefinitions.0.Name"),
            (json!([{"Name": "a", "Regex": "x"}]), "no capture group"),
            (
                json!([{"Name": "a", "Regex": "x("}]),
                "not a regular expression",
            ),
            (
                json!([{"Name": "a", "Regex": "(x)"}, {"Name": "a", "Regex": "(y)"}]),
                "defined twice",
            ),
        ] {
            let err = parse_definitions(&value).unwrap_err();
            assert!(err.contains(needle), "{needle}: {err}");
        }
    }
}
