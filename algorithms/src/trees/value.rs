//! Typed access to a parsed XGBoost document (`serde_json::Value`, from JSON or UBJSON)
//! with errors that name the path that was wrong, e.g.
//! `learner.gradient_booster.model.trees[3].left_children[7]`.
//!
//! XGBoost writes most parameters as strings (`"num_class": "3"`) and, in UBJSON, booleans
//! as integers; the readers here accept each spelling XGBoost uses. Pure functions.

use serde_json::Value;

use super::error::{Result, TreeError};

/// The member `name` of the object `v` at `path`.
pub(crate) fn field<'a>(v: &'a Value, name: &str, path: &str) -> Result<&'a Value> {
    v.get(name).ok_or_else(|| {
        TreeError::invalid(
            if path.is_empty() {
                "document".to_string()
            } else {
                path.to_string()
            },
            format!("missing field `{name}`"),
        )
    })
}

/// `v` as an array.
pub(crate) fn array<'a>(v: &'a Value, path: &str) -> Result<&'a Vec<Value>> {
    v.as_array()
        .ok_or_else(|| TreeError::invalid(path, "expected an array"))
}

/// `v` as a string.
pub(crate) fn str_value<'a>(v: &'a Value, path: &str) -> Result<&'a str> {
    v.as_str()
        .ok_or_else(|| TreeError::invalid(path, "expected a string"))
}

/// An integer written as a number, a bool, or a string of digits (XGBoost writes
/// parameters as strings).
pub(crate) fn int_value(v: &Value, path: &str) -> Result<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9e15)
                .map(|f| f as i64)
        }),
        Value::Bool(b) => Some(i64::from(*b)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .ok_or_else(|| TreeError::invalid(path, format!("expected an integer, found {}", short(v))))
}

/// The integer member `name` of `params` at `path`.
pub(crate) fn int_param(params: &Value, name: &str, path: &str) -> Result<i64> {
    int_value(field(params, name, path)?, &format!("{path}.{name}"))
}

/// A float written as a number or as a string (`"NaN"`, `"inf"`, `"5E-1"`).
pub(crate) fn float32(v: &Value, path: &str) -> Result<f32> {
    match v {
        Value::Number(n) => n.as_f64().map(|f| f as f32),
        Value::String(s) => match s.as_str() {
            "NaN" | "nan" => Some(f32::NAN),
            "inf" | "Infinity" => Some(f32::INFINITY),
            "-inf" | "-Infinity" => Some(f32::NEG_INFINITY),
            other => other.parse().ok(),
        },
        _ => None,
    }
    .ok_or_else(|| TreeError::invalid(path, format!("expected a number, found {}", short(v))))
}

/// An array of integers.
pub(crate) fn ints(v: &Value, path: &str) -> Result<Vec<i64>> {
    array(v, path)?
        .iter()
        .enumerate()
        .map(|(i, x)| int_value(x, &format!("{path}[{i}]")))
        .collect()
}

/// An array of floats, as `f32`.
pub(crate) fn floats(v: &Value, path: &str) -> Result<Vec<f32>> {
    array(v, path)?
        .iter()
        .enumerate()
        .map(|(i, x)| float32(x, &format!("{path}[{i}]")))
        .collect()
}

/// A value shortened for an error message.
fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 40 {
        format!("{}...", &s[..s.floor_char_boundary(40)])
    } else {
        s
    }
}
