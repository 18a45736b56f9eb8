//! Reader for XGBoost models: the JSON and UBJSON documents `Booster.save_model` writes,
//! and SageMaker's extension-less `xgboost-model` (UBJSON from XGBoost 2.1 on). The
//! encoding is detected from the content, never the file name.
//!
//! Serves `gbtree` and `dart` boosters (dart trees are scaled by `weight_drop` at load),
//! any `num_parallel_tree`, multiclass `tree_info` groups, NaN-as-missing via
//! `default_left`, and categorical splits (`split_type` 1: categories in the set go right).
//! `base_score` is read as XGBoost 3.x writes it (`"[5E-1]"`, a vector in output space)
//! or as older versions do (`"5E-1"`) and turned into a margin with the objective's
//! inverse link, in `f32` as XGBoost does. Load is single-threaded and runs once.

use std::collections::HashMap;

use serde_json::Value;

use super::ensemble::{MAX_GROUPS, ModelFormat, Objective, OutputKind, TreeEnsemble};
use super::error::{Result, TreeError};
use super::predict::CatRule;
use super::raw::{RawNode, RawTree, Split, bitset, categorical};
use super::transform::Transform;
use super::ubjson;
use super::value::{array, field, float32, floats, int_param, int_value, ints, str_value};

/// XGBoost category codes must be below 2^24.
const MAX_CATEGORY: i64 = 1 << 24;

/// Bound on all categorical bitsets of one model (64 MiB), so a small hostile file naming
/// huge category codes on many nodes cannot exhaust memory.
const MAX_CATEGORY_WORDS: usize = 1 << 24;

/// How `base_score` (output space) becomes a margin.
#[derive(Debug, Clone, Copy, PartialEq)]
enum InverseLink {
    Identity,
    Logit,
    Log,
}

/// Loads an XGBoost model from the bytes of a JSON or UBJSON file.
pub fn load_xgboost(bytes: &[u8]) -> Result<TreeEnsemble> {
    let doc = parse_document(bytes)?;
    from_document(&doc)
}

/// Parses JSON or UBJSON, whichever the content is.
fn parse_document(bytes: &[u8]) -> Result<Value> {
    let start = bytes.iter().position(|b| !b.is_ascii_whitespace());
    let Some(start) = start else {
        return Err(TreeError::Truncated {
            what: "XGBoost model (file is empty)".into(),
            offset: bytes.len(),
        });
    };
    if bytes[start] != b'{' {
        if bytes.starts_with(b"binf") || bytes.len() >= 4 && !bytes[..4].iter().all(u8::is_ascii) {
            return Err(TreeError::Unsupported("XGBoost's legacy binary model format; re-save the model with save_model(\"model.json\") or \"model.ubj\"".into()));
        }
        return Err(TreeError::invalid(
            format!("byte {start}"),
            "not an XGBoost JSON or UBJSON model (expected '{')",
        ));
    }
    // In UBJSON an object's first key starts with an integer-length marker; in JSON with
    // a quote, whitespace or '}'.
    match bytes.get(start + 1) {
        Some(b'i' | b'U' | b'I' | b'l' | b'L' | b'$' | b'#') => ubjson::parse(&bytes[start..]),
        _ => serde_json::from_slice(bytes).map_err(|e| {
            let location = format!("line {} column {}", e.line(), e.column());
            if e.is_eof() {
                TreeError::Truncated {
                    what: format!("JSON document ({location})"),
                    offset: bytes.len(),
                }
            } else {
                TreeError::invalid(location, e.to_string())
            }
        }),
    }
}

/// Builds the ensemble from a parsed model document.
fn from_document(doc: &Value) -> Result<TreeEnsemble> {
    let learner = field(doc, "learner", "")?;
    let params = field(learner, "learner_model_param", "learner")?;
    let num_feature = int_param(params, "num_feature", "learner.learner_model_param")?;
    let num_class = int_param(params, "num_class", "learner.learner_model_param")?;
    if let Some(targets) = params.get("num_target") {
        let n = int_value(targets, "learner.learner_model_param.num_target")?;
        if n > 1 {
            return Err(TreeError::Unsupported(format!(
                "multi-target models (num_target = {n})"
            )));
        }
    }
    let name = str_value(
        field(
            field(learner, "objective", "learner")?,
            "name",
            "learner.objective",
        )?,
        "learner.objective.name",
    )?;
    let (transform, output_kind, link) = objective(name)?;
    let groups = usize::try_from(num_class.max(1))
        .map_err(|_| TreeError::invalid("learner.learner_model_param.num_class", "negative"))?;
    if groups > MAX_GROUPS {
        return Err(TreeError::Unsupported(format!(
            "{groups} classes (at most {MAX_GROUPS})"
        )));
    }
    let base_score = field(params, "base_score", "learner.learner_model_param")?;
    let base_margin = base_margin(base_score, groups, link)?;

    let booster = field(learner, "gradient_booster", "learner")?;
    let booster_name = str_value(
        field(booster, "name", "learner.gradient_booster")?,
        "learner.gradient_booster.name",
    )?;
    let (model, model_path, weights) = match booster_name {
        "gbtree" => (
            field(booster, "model", "learner.gradient_booster")?,
            "learner.gradient_booster.model",
            None,
        ),
        "dart" => {
            let inner = field(booster, "gbtree", "learner.gradient_booster")?;
            let weights = floats(
                field(booster, "weight_drop", "learner.gradient_booster")?,
                "learner.gradient_booster.weight_drop",
            )?;
            (
                field(inner, "model", "learner.gradient_booster.gbtree")?,
                "learner.gradient_booster.gbtree.model",
                Some(weights),
            )
        }
        other => {
            return Err(TreeError::Unsupported(format!(
                "XGBoost booster `{other}` (only gbtree and dart are served)"
            )));
        }
    };
    let trees = array(
        field(model, "trees", model_path)?,
        &format!("{model_path}.trees"),
    )?;
    let tree_info = ints(
        field(model, "tree_info", model_path)?,
        &format!("{model_path}.tree_info"),
    )?;
    if tree_info.len() != trees.len() {
        return Err(TreeError::invalid(
            format!("{model_path}.tree_info"),
            format!("{} entries for {} trees", tree_info.len(), trees.len()),
        ));
    }
    if let Some(w) = &weights
        && w.len() != trees.len()
    {
        return Err(TreeError::invalid(
            "learner.gradient_booster.weight_drop",
            format!("{} weights for {} trees", w.len(), trees.len()),
        ));
    }
    let mut raw = Vec::with_capacity(trees.len());
    let mut category_words = 0;
    for (t, tree) in trees.iter().enumerate() {
        let path = format!("{model_path}.trees[{t}]");
        let group = u32::try_from(tree_info[t]).map_err(|_| {
            TreeError::invalid(format!("{model_path}.tree_info[{t}]"), "negative group")
        })?;
        let weight = weights.as_ref().map(|w| w[t]);
        raw.push(read_tree(tree, group, weight, &path, &mut category_words)?);
    }
    let num_features = usize::try_from(num_feature)
        .map_err(|_| TreeError::invalid("learner.learner_model_param.num_feature", "negative"))?;
    let objective = Objective {
        name: name.to_string(),
        transform,
        output_kind,
    };
    let model = TreeEnsemble::build(
        ModelFormat::XGBoost,
        objective,
        num_features,
        base_margin,
        &raw,
        &|t| format!("{model_path}.trees[{t}]"),
    )?;
    // Names are informational: a malformed list is ignored rather than refused.
    let names = learner.get("feature_names").and_then(Value::as_array);
    let names: Option<Vec<String>> =
        names.and_then(|n| n.iter().map(|v| v.as_str().map(String::from)).collect());
    Ok(match names {
        Some(names) => model.with_feature_names(names),
        None => model,
    })
}

fn objective(name: &str) -> Result<(Transform, OutputKind, InverseLink)> {
    use InverseLink::*;
    Ok(match name {
        "binary:logistic" => (
            Transform::Sigmoid { scale: 1.0 },
            OutputKind::Probability,
            Logit,
        ),
        "reg:logistic" => (
            Transform::Sigmoid { scale: 1.0 },
            OutputKind::Regression,
            Logit,
        ),
        // logitraw uses base_score as the margin itself (no inverse link), unlike binary:logistic.
        "binary:logitraw" => (Transform::Identity, OutputKind::Margin, Identity),
        "reg:squarederror"
        | "reg:linear"
        | "reg:absoluteerror"
        | "reg:pseudohubererror"
        | "reg:squaredlogerror"
        | "reg:quantileerror" => (Transform::Identity, OutputKind::Regression, Identity),
        "count:poisson" | "reg:gamma" | "reg:tweedie" => {
            (Transform::Exp, OutputKind::Regression, Log)
        }
        "multi:softprob" => (Transform::Softmax, OutputKind::Probabilities, Identity),
        "multi:softmax" => (Transform::ArgMax, OutputKind::Label, Identity),
        "rank:pairwise" | "rank:ndcg" | "rank:map" => {
            (Transform::Identity, OutputKind::Margin, Identity)
        }
        other => return Err(TreeError::UnknownObjective(other.to_string())),
    })
}

/// `base_score` in output space -> margin per group, in `f32` as XGBoost computes it.
fn base_margin(value: &Value, groups: usize, link: InverseLink) -> Result<Vec<f64>> {
    let path = "learner.learner_model_param.base_score";
    let scores: Vec<f32> = match value {
        Value::String(s) => {
            let inner = s.trim();
            let inner = inner
                .strip_prefix('[')
                .and_then(|v| v.strip_suffix(']'))
                .unwrap_or(inner);
            inner
                .split(',')
                .map(|v| {
                    v.trim()
                        .parse::<f32>()
                        .map_err(|_| TreeError::invalid(path, format!("not a number list: {s:?}")))
                })
                .collect::<Result<_>>()?
        }
        other => vec![float32(other, path)?],
    };
    let scores = match scores.len() {
        1 => vec![scores[0]; groups],
        n if n == groups => scores,
        n => {
            return Err(TreeError::invalid(
                path,
                format!("{n} values for {groups} output groups"),
            ));
        }
    };
    Ok(scores
        .into_iter()
        .map(|p| {
            f64::from(match link {
                InverseLink::Identity => p,
                InverseLink::Logit => -(1.0f32 / p - 1.0).ln(),
                InverseLink::Log => p.ln(),
            })
        })
        .collect())
}

fn read_tree(
    tree: &Value,
    group: u32,
    weight: Option<f32>,
    path: &str,
    category_words: &mut usize,
) -> Result<RawTree> {
    let param = field(tree, "tree_param", path)?;
    if let Some(size) = param.get("size_leaf_vector") {
        let n = int_value(size, &format!("{path}.tree_param.size_leaf_vector"))?;
        if n > 1 {
            return Err(TreeError::Unsupported(format!(
                "vector-leaf (multi-target) trees (size_leaf_vector = {n})"
            )));
        }
    }
    let get = |name: &str| field(tree, name, path);
    let at = |name: &str| format!("{path}.{name}");
    let left = ints(get("left_children")?, &at("left_children"))?;
    let right = ints(get("right_children")?, &at("right_children"))?;
    let features = ints(get("split_indices")?, &at("split_indices"))?;
    let conditions = floats(get("split_conditions")?, &at("split_conditions"))?;
    let default_left = ints(get("default_left")?, &at("default_left"))?;
    let n = left.len();
    let split_type = match tree.get("split_type") {
        Some(v) => ints(v, &at("split_type"))?,
        None => vec![0; n],
    };
    for (name, len) in [
        ("right_children", right.len()),
        ("split_indices", features.len()),
        ("split_conditions", conditions.len()),
        ("default_left", default_left.len()),
        ("split_type", split_type.len()),
    ] {
        if len != n {
            return Err(TreeError::invalid(
                at(name),
                format!("{len} entries but left_children has {n}"),
            ));
        }
    }
    let cats = category_sets(tree, path)?;
    let mut nodes = Vec::with_capacity(n);
    for i in 0..n {
        let node_path = || format!("{path}.node[{i}]");
        if left[i] == -1 {
            let leaf = match weight {
                Some(w) => w * conditions[i],
                None => conditions[i],
            };
            nodes.push(RawNode::Leaf(f64::from(leaf)));
            continue;
        }
        let child = |c: i64| {
            u32::try_from(c)
                .map_err(|_| TreeError::invalid(node_path(), format!("bad child index {c}")))
        };
        let feature = u32::try_from(features[i])
            .ok()
            .filter(|&f| f <= super::predict::FEATURE_MASK)
            .ok_or_else(|| {
                TreeError::invalid(node_path(), format!("bad feature index {}", features[i]))
            })?;
        let default_left = default_left[i] != 0;
        let split = match split_type[i] {
            0 => Split::Less {
                threshold: conditions[i],
                default_left,
            },
            1 => {
                let values = cats.get(&(i as i64)).cloned().unwrap_or_default();
                let words = bitset(values, MAX_CATEGORY, &node_path())?;
                *category_words += words.len();
                if *category_words > MAX_CATEGORY_WORDS {
                    return Err(TreeError::Unsupported(format!(
                        "categorical splits whose bitsets exceed {} MiB in total",
                        (MAX_CATEGORY_WORDS * 4) >> 20
                    )));
                }
                categorical(words, CatRule::XgboostInSetRight, default_left)
            }
            other => {
                return Err(TreeError::invalid(
                    node_path(),
                    format!("unknown split_type {other}"),
                ));
            }
        };
        nodes.push(RawNode::Split {
            feature,
            split,
            left: child(left[i])?,
            right: child(right[i])?,
        });
    }
    Ok(RawTree { nodes, group })
}

/// Categories of each categorical node of a tree, by node id.
fn category_sets(tree: &Value, path: &str) -> Result<HashMap<i64, Vec<i64>>> {
    let Some(nodes) = tree.get("categories_nodes") else {
        return Ok(HashMap::new());
    };
    let at = |name: &str| format!("{path}.{name}");
    let nodes = ints(nodes, &at("categories_nodes"))?;
    let get = |name: &str| field(tree, name, path).and_then(|v| ints(v, &at(name)));
    let (categories, segments, sizes) = (
        get("categories")?,
        get("categories_segments")?,
        get("categories_sizes")?,
    );
    if segments.len() != nodes.len() || sizes.len() != nodes.len() {
        return Err(TreeError::invalid(
            at("categories_segments"),
            "categories_nodes, categories_segments and categories_sizes differ in length",
        ));
    }
    let mut out = HashMap::with_capacity(nodes.len());
    for k in 0..nodes.len() {
        let (start, size) = (segments[k], sizes[k]);
        let range = usize::try_from(start)
            .ok()
            .zip(usize::try_from(size).ok())
            .and_then(|(s, n)| categories.get(s..s.checked_add(n)?));
        let values = range.ok_or_else(|| {
            TreeError::invalid(
                at("categories_segments"),
                format!(
                    "segment {start}+{size} outside the {} categories",
                    categories.len()
                ),
            )
        })?;
        out.insert(nodes[k], values.to_vec());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_score_forms() {
        let logit = base_margin(&Value::String("[5E-1]".into()), 1, InverseLink::Logit).unwrap();
        assert_eq!(logit, vec![0.0]);
        let old = base_margin(&Value::String("0.5".into()), 2, InverseLink::Identity).unwrap();
        assert_eq!(old, vec![0.5, 0.5]);
        let vector =
            base_margin(&Value::String("[1E0,2E0,3E0]".into()), 3, InverseLink::Log).unwrap();
        assert!((vector[1] - 2f64.ln()).abs() < 1e-6);
        assert!(base_margin(&Value::String("[1E0,2E0]".into()), 3, InverseLink::Identity).is_err());
        assert!(base_margin(&Value::String("half".into()), 1, InverseLink::Identity).is_err());
    }

    #[test]
    fn unknown_objective_is_named() {
        assert_eq!(
            objective("reg:made_up").unwrap_err(),
            TreeError::UnknownObjective("reg:made_up".into())
        );
    }

    #[test]
    fn content_sniffing() {
        assert!(matches!(
            load_xgboost(b""),
            Err(TreeError::Truncated { .. })
        ));
        assert!(matches!(
            load_xgboost(b"binf\x00\x00\x00\x3f"),
            Err(TreeError::Unsupported(_))
        ));
        assert!(matches!(
            load_xgboost(b"{\"learner\": {"),
            Err(TreeError::Truncated { .. })
        ));
        assert!(matches!(
            load_xgboost(b"hello"),
            Err(TreeError::Invalid { .. })
        ));
    }
}
