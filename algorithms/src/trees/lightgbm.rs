//! Reader for LightGBM's text model format (`Booster.save_model("m.txt")`).
//!
//! The file is a header of `key=value` lines (`num_class`, `num_tree_per_iteration`,
//! `max_feature_idx`, `objective`, `average_output`, `tree_sizes`), then one `Tree=N` block
//! per tree, then `end of trees` and sections Pier does not need. In a tree, internal nodes
//! are numbered `0..num_leaves-1` and a negative child `c` is leaf `!c`. `decision_type`
//! packs bit 0 categorical, bit 1 default-left and bits 2-3 the missing type (None, Zero,
//! NaN). LightGBM goes left iff `x <= threshold` compared in `f64`; since inputs are `f32`,
//! that is lowered exactly to `x < t'` in `f32`, with `t'` the next float above the largest
//! `f32` not exceeding the threshold. With missing type None a NaN is compared as 0.0, so its
//! side is fixed at load. Categorical splits keep LightGBM's rule: a category in the bitset
//! goes left; NaN and negative values go right. Tree `i` adds to class
//! `i % num_tree_per_iteration`. Linear trees are refused. Single-threaded; runs once.

use super::ensemble::{MAX_GROUPS, ModelFormat, Objective, OutputKind, TreeEnsemble};
use super::error::{Result, TreeError};
use super::predict::CatRule;
use super::raw::{RawNode, RawTree, Split, categorical};
use super::transform::Transform;

/// Loads a LightGBM model from the text of its model file.
pub fn load_lightgbm(text: &str) -> Result<TreeEnsemble> {
    let mut lines = text.lines().enumerate().peekable();
    match lines.next() {
        Some((_, first)) if first.trim() == "tree" => {}
        Some(_) => {
            return Err(TreeError::invalid(
                "line 1",
                "not a LightGBM text model (expected `tree`)",
            ));
        }
        None => {
            return Err(TreeError::Truncated {
                what: "LightGBM model (file is empty)".into(),
                offset: 0,
            });
        }
    }
    // A complete file has the end-of-trees marker; without it nothing read is trustworthy.
    if !text.lines().any(|l| l.starts_with("end of trees")) {
        return Err(TreeError::Truncated {
            what: "LightGBM model (no `end of trees` line)".into(),
            offset: text.len(),
        });
    }
    // Header: up to the first `Tree=` line.
    let mut header = Vec::new();
    while let Some(&(n, line)) = lines.peek() {
        if line.starts_with("Tree=") || line.starts_with("end of trees") {
            break;
        }
        lines.next();
        if !line.trim().is_empty() {
            header.push((n + 1, line));
        }
    }
    let get = |key: &str| {
        header.iter().find_map(|&(n, l)| {
            l.strip_prefix(key)
                .and_then(|v| v.strip_prefix('='))
                .map(|v| (n, v.trim()))
        })
    };
    let flag = |key: &str| header.iter().any(|&(_, l)| l.trim() == key);
    let int = |key: &str| -> Result<i64> {
        let (n, v) =
            get(key).ok_or_else(|| TreeError::invalid("header", format!("missing `{key}`")))?;
        v.parse().map_err(|_| {
            TreeError::invalid(
                format!("line {n}"),
                format!("`{key}` is not an integer: {v:?}"),
            )
        })
    };
    let max_feature_idx = int("max_feature_idx")?;
    let per_iteration = int("num_tree_per_iteration")?;
    let num_class = get("num_class")
        .map(|_| int("num_class"))
        .transpose()?
        .unwrap_or(1);
    let groups = usize::try_from(per_iteration)
        .ok()
        .filter(|&g| g >= 1)
        .ok_or_else(|| TreeError::invalid("header", "num_tree_per_iteration must be at least 1"))?;
    if groups > MAX_GROUPS {
        return Err(TreeError::Unsupported(format!(
            "{groups} trees per iteration (at most {MAX_GROUPS})"
        )));
    }
    let num_features = usize::try_from(max_feature_idx + 1)
        .map_err(|_| TreeError::invalid("header", "negative max_feature_idx"))?;
    let objective = objective(get("objective").map_or("custom", |(_, v)| v), num_class)?;
    let expected_trees = get("tree_sizes").map(|(_, v)| v.split_whitespace().count());

    let mut trees = Vec::new();
    let mut ended = false;
    while let Some((n, line)) = lines.next() {
        if line.starts_with("end of trees") {
            ended = true;
            break;
        }
        let Some(id) = line.strip_prefix("Tree=") else {
            if line.trim().is_empty() {
                continue;
            }
            return Err(TreeError::invalid(
                format!("line {}", n + 1),
                format!("expected `Tree=` or `end of trees`, found {line:?}"),
            ));
        };
        let mut block = Vec::new();
        while let Some(&(m, l)) = lines.peek() {
            if l.trim().is_empty() || l.starts_with("Tree=") || l.starts_with("end of trees") {
                break;
            }
            block.push((m + 1, l));
            lines.next();
        }
        let group = (trees.len() % groups) as u32;
        trees.push(read_tree(
            &block,
            group,
            &format!("Tree={id} (line {})", n + 1),
        )?);
    }
    if !ended || expected_trees.is_some_and(|e| e != trees.len()) {
        return Err(TreeError::Truncated {
            what: format!(
                "LightGBM model: {} trees read{}",
                trees.len(),
                expected_trees.map_or(String::new(), |e| format!(" of {e}"))
            ),
            offset: text.len(),
        });
    }
    let iterations = trees.len() / groups;
    let model = TreeEnsemble::build(
        ModelFormat::LightGBM,
        objective,
        num_features,
        vec![0.0; groups],
        &trees,
        &|t| format!("Tree={t}"),
    )?;
    let model = match get("feature_names") {
        Some((_, names)) => {
            model.with_feature_names(names.split_whitespace().map(String::from).collect())
        }
        None => model,
    };
    Ok(if flag("average_output") {
        model.with_average_over(iterations)
    } else {
        model
    })
}

/// The `objective=` line, e.g. `binary sigmoid:1` or `multiclass num_class:3`.
fn objective(line: &str, num_class: i64) -> Result<Objective> {
    let mut words = line.split_whitespace();
    let name = words.next().unwrap_or("custom").to_string();
    let mut sigmoid = 1.0;
    let mut sqrt = false;
    for word in words {
        if let Some(v) = word.strip_prefix("sigmoid:") {
            sigmoid = v
                .parse()
                .map_err(|_| TreeError::invalid("objective", format!("bad sigmoid {v:?}")))?;
        } else if word == "sqrt" {
            sqrt = true;
        }
    }
    let (transform, output_kind) = match name.as_str() {
        "binary" => (
            Transform::Sigmoid { scale: sigmoid },
            OutputKind::Probability,
        ),
        "cross_entropy" | "xentropy" => {
            (Transform::Sigmoid { scale: 1.0 }, OutputKind::Probability)
        }
        "multiclass" | "softmax" => (Transform::Softmax, OutputKind::Probabilities),
        "multiclassova" | "multiclass_ova" | "ova" | "ovr" => (
            Transform::Sigmoid { scale: sigmoid },
            OutputKind::Probabilities,
        ),
        "regression"
        | "regression_l2"
        | "l2"
        | "mean_squared_error"
        | "mse"
        | "l2_root"
        | "root_mean_squared_error"
        | "rmse"
        | "regression_l1"
        | "l1"
        | "mean_absolute_error"
        | "mae"
        | "huber"
        | "fair"
        | "quantile"
        | "mape"
        | "mean_absolute_percentage_error" => (
            if sqrt {
                Transform::SignedSquare
            } else {
                Transform::Identity
            },
            OutputKind::Regression,
        ),
        "poisson" | "gamma" | "tweedie" => (Transform::Exp, OutputKind::Regression),
        "lambdarank" | "rank_xendcg" | "custom" | "none" => {
            (Transform::Identity, OutputKind::Margin)
        }
        _ => return Err(TreeError::UnknownObjective(name)),
    };
    if matches!(transform, Transform::Softmax) && num_class < 2 {
        return Err(TreeError::invalid(
            "header",
            format!("objective {name} with num_class {num_class}"),
        ));
    }
    Ok(Objective {
        name,
        transform,
        output_kind,
    })
}

/// One `Tree=` block: its `key=value` lines with their (1-based) line numbers.
fn read_tree(block: &[(usize, &str)], group: u32, what: &str) -> Result<RawTree> {
    let field = |key: &str| {
        block.iter().find_map(|&(n, l)| {
            l.strip_prefix(key)
                .and_then(|v| v.strip_prefix('='))
                .map(|v| (n, v))
        })
    };
    let list = |key: &str, len: usize| -> Result<Vec<&str>> {
        let (n, v) =
            field(key).ok_or_else(|| TreeError::invalid(what, format!("missing `{key}`")))?;
        let items: Vec<&str> = v.split_whitespace().collect();
        if items.len() != len {
            return Err(TreeError::invalid(
                format!("line {n}"),
                format!("`{key}` has {} values, expected {len}", items.len()),
            ));
        }
        Ok(items)
    };
    fn parse<T: std::str::FromStr>(items: &[&str], key: &str, what: &str) -> Result<Vec<T>> {
        items
            .iter()
            .map(|s| {
                s.parse()
                    .map_err(|_| TreeError::invalid(what, format!("bad value {s:?} in `{key}`")))
            })
            .collect()
    }
    if field("is_linear").is_some_and(|(_, v)| v.trim() == "1") {
        return Err(TreeError::Unsupported(
            "LightGBM linear trees (is_linear=1)".into(),
        ));
    }
    let (_, leaves) =
        field("num_leaves").ok_or_else(|| TreeError::invalid(what, "missing `num_leaves`"))?;
    let leaves: usize = leaves
        .trim()
        .parse()
        .ok()
        .filter(|&l| l >= 1)
        .ok_or_else(|| TreeError::invalid(what, format!("bad num_leaves {leaves:?}")))?;
    let leaf_values: Vec<f64> = parse(&list("leaf_value", leaves)?, "leaf_value", what)?;
    if leaves == 1 {
        return Ok(RawTree {
            nodes: vec![RawNode::Leaf(leaf_values[0])],
            group,
        });
    }
    let inner = leaves - 1;
    let features: Vec<u32> = parse(&list("split_feature", inner)?, "split_feature", what)?;
    let thresholds: Vec<f64> = parse(&list("threshold", inner)?, "threshold", what)?;
    let decisions: Vec<i16> = parse(&list("decision_type", inner)?, "decision_type", what)?;
    let left: Vec<i64> = parse(&list("left_child", inner)?, "left_child", what)?;
    let right: Vec<i64> = parse(&list("right_child", inner)?, "right_child", what)?;
    let num_cat: usize = field("num_cat").map_or(Ok(0), |(_, v)| {
        v.trim()
            .parse()
            .map_err(|_| TreeError::invalid(what, "bad num_cat"))
    })?;
    let (boundaries, cat_words): (Vec<usize>, Vec<u32>) = if num_cat > 0 {
        let boundaries = parse(
            &list("cat_boundaries", num_cat + 1)?,
            "cat_boundaries",
            what,
        )?;
        let (_, words) = field("cat_threshold")
            .ok_or_else(|| TreeError::invalid(what, "missing `cat_threshold`"))?;
        (
            boundaries,
            parse(
                &words.split_whitespace().collect::<Vec<_>>(),
                "cat_threshold",
                what,
            )?,
        )
    } else {
        (Vec::new(), Vec::new())
    };
    // Raw index: internal nodes first, then leaves.
    let child = |c: i64, node: usize| -> Result<u32> {
        let index = if c >= 0 {
            usize::try_from(c).ok().filter(|&c| c < inner)
        } else {
            usize::try_from(!c)
                .ok()
                .filter(|&l| l < leaves)
                .map(|l| inner + l)
        };
        index.map(|i| i as u32).ok_or_else(|| {
            TreeError::invalid(
                format!("{what} node {node}"),
                format!("child {c} out of range"),
            )
        })
    };
    let mut nodes = Vec::with_capacity(inner + leaves);
    for i in 0..inner {
        let decision = decisions[i];
        let default_left = decision & 2 != 0;
        let split = if decision & 1 != 0 {
            let idx = thresholds[i];
            let k = (idx >= 0.0 && idx.fract() == 0.0)
                .then_some(idx as usize)
                .filter(|&k| k < num_cat);
            let range = k.and_then(|k| cat_words.get(*boundaries.get(k)?..*boundaries.get(k + 1)?));
            let words = range.ok_or_else(|| {
                TreeError::invalid(
                    format!("{what} node {i}"),
                    format!("categorical threshold {idx} does not index cat_boundaries"),
                )
            })?;
            categorical(words.to_vec(), CatRule::LightgbmInSetLeft, false)
        } else {
            let t = thresholds[i];
            if t.is_nan() {
                return Err(TreeError::invalid(
                    format!("{what} node {i}"),
                    "threshold is NaN",
                ));
            }
            let threshold = strict_f32_threshold(t);
            match (decision >> 2) & 3 {
                0 => Split::Less {
                    threshold,
                    default_left: 0.0 <= t,
                },
                1 => Split::LessZeroMissing {
                    threshold,
                    default_left,
                },
                2 => Split::Less {
                    threshold,
                    default_left,
                },
                other => {
                    return Err(TreeError::invalid(
                        format!("{what} node {i}"),
                        format!("unknown missing type {other}"),
                    ));
                }
            }
        };
        nodes.push(RawNode::Split {
            feature: features[i],
            split,
            left: child(left[i], i)?,
            right: child(right[i], i)?,
        });
    }
    nodes.extend(leaf_values.into_iter().map(RawNode::Leaf));
    Ok(RawTree { nodes, group })
}

/// The `f32` `t'` such that, for every finite `f32` `x`, `x < t'` iff `f64::from(x) <= t`.
fn strict_f32_threshold(t: f64) -> f32 {
    let mut below = t as f32; // round to nearest
    if f64::from(below) > t {
        below = below.next_down();
    }
    below.next_up()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowered_threshold_is_exact() {
        for &t in &[
            0.1f64,
            -0.1,
            0.25,
            1e-40,
            -3.5,
            0.387_150_240_945_816,
            1e300,
            -1e300,
        ] {
            let s = strict_f32_threshold(t);
            let below = if f64::from(t as f32) > t {
                (t as f32).next_down()
            } else {
                t as f32
            };
            for x in [below.next_down(), below, below.next_up(), s] {
                if x.is_finite() {
                    assert_eq!(x < s, f64::from(x) <= t, "t={t} x={x}");
                }
            }
        }
    }

    #[test]
    fn objectives() {
        assert_eq!(
            objective("binary sigmoid:2", 1).unwrap().transform,
            Transform::Sigmoid { scale: 2.0 }
        );
        assert_eq!(
            objective("regression sqrt", 1).unwrap().transform,
            Transform::SignedSquare
        );
        assert_eq!(
            objective("multiclass num_class:3", 3).unwrap().output_kind,
            OutputKind::Probabilities
        );
        assert_eq!(
            objective("madeup", 1).unwrap_err(),
            TreeError::UnknownObjective("madeup".into())
        );
    }
}
