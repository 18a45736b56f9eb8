//! The GBDT artifact: an XGBoost JSON model file, as `Booster.save_model("x.json")` writes it
//! (schema of XGBoost 2.1: `version`, `learner.learner_model_param` with `base_score`,
//! `num_class`, `num_feature`; `learner.objective`; `learner.gradient_booster` `gbtree` with
//! `trees[]` holding `left_children`, `right_children`, `parents`, `split_indices`,
//! `split_conditions` (leaf values at leaves), `default_left`, `base_weights`,
//! `loss_changes`, `sum_hessian`, `split_type`, `tree_param`), plus a reader for the same
//! files (also accepting XGBoost 3's bracketed `base_score` vectors) so that Pier serves what
//! it trains. Stateless conversion functions.

use serde_json::{Value, json};

use super::tree::{LEAF, Node, Tree};
use super::{GbdtModel, Objective};
use crate::builtin::error::{Result, TrainError};

/// The XGBoost version the written files claim to come from.
const WRITTEN_VERSION: [u32; 3] = [2, 1, 0];

fn tree_json(t: &Tree, id: usize, n_features: usize) -> Value {
    let nodes = &t.nodes;
    let child = |c: u32| if c == LEAF { -1i64 } else { i64::from(c) };
    json!({
        "base_weights": nodes.iter().map(|n| n.weight).collect::<Vec<_>>(),
        "categories": [],
        "categories_nodes": [],
        "categories_segments": [],
        "categories_sizes": [],
        "default_left": nodes.iter().map(|n| u8::from(n.default_left)).collect::<Vec<_>>(),
        "id": id,
        "left_children": nodes.iter().map(|n| child(n.left)).collect::<Vec<_>>(),
        "loss_changes": nodes.iter().map(|n| n.loss_change).collect::<Vec<_>>(),
        "parents": nodes.iter().map(|n| if n.parent == LEAF { 2147483647i64 } else { i64::from(n.parent) }).collect::<Vec<_>>(),
        "right_children": nodes.iter().map(|n| child(n.right)).collect::<Vec<_>>(),
        "split_conditions": nodes.iter().map(|n| n.threshold).collect::<Vec<_>>(),
        "split_indices": nodes.iter().map(|n| n.feature).collect::<Vec<_>>(),
        "split_type": vec![0u8; nodes.len()],
        "sum_hessian": nodes.iter().map(|n| n.sum_hessian).collect::<Vec<_>>(),
        "tree_param": {
            "num_deleted": "0",
            "num_feature": n_features.to_string(),
            "num_nodes": nodes.len().to_string(),
            "size_leaf_vector": "1"
        }
    })
}

impl GbdtModel {
    /// The model as an XGBoost JSON model file.
    pub fn to_xgboost_json(&self) -> Vec<u8> {
        let trees: Vec<Value> = self
            .trees
            .iter()
            .enumerate()
            .map(|(i, t)| tree_json(t, i, self.n_features))
            .collect();
        let rounds = self.trees.len() / self.n_groups.max(1);
        let indptr: Vec<usize> = (0..=rounds).map(|r| r * self.n_groups).collect();
        let objective = match self.objective {
            Objective::Softprob => {
                json!({"name": "multi:softprob", "softmax_multiclass_param": {"num_class": self.n_groups.to_string()}})
            }
            o => {
                json!({"name": o.name(), "reg_loss_param": {"scale_pos_weight": format!("{}", self.scale_pos_weight)}})
            }
        };
        let num_class = if self.objective == Objective::Softprob {
            self.n_groups
        } else {
            0
        };
        let doc = json!({
            "learner": {
                "attributes": {},
                "feature_names": [],
                "feature_types": [],
                "gradient_booster": {
                    "model": {
                        "gbtree_model_param": {"num_parallel_tree": "1", "num_trees": self.trees.len().to_string()},
                        "iteration_indptr": indptr,
                        "tree_info": self.tree_group,
                        "trees": trees
                    },
                    "name": "gbtree"
                },
                "learner_model_param": {
                    "base_score": format!("{:E}", self.base_score),
                    "boost_from_average": "1",
                    "num_class": num_class.to_string(),
                    "num_feature": self.n_features.to_string(),
                    "num_target": "1"
                },
                "objective": objective
            },
            "version": WRITTEN_VERSION
        });
        serde_json::to_vec(&doc).unwrap_or_default()
    }

    /// Reads an XGBoost JSON model file of a `gbtree` with one of the supported objectives.
    pub fn from_xgboost_json(bytes: &[u8]) -> Result<Self> {
        let bad = |m: &str| TrainError::Artifact(format!("XGBoost JSON: {m}"));
        let doc: Value =
            serde_json::from_slice(bytes).map_err(|e| bad(&format!("not JSON: {e}")))?;
        let learner = doc.get("learner").ok_or_else(|| bad("no `learner`"))?;
        let param = learner
            .get("learner_model_param")
            .ok_or_else(|| bad("no `learner_model_param`"))?;
        let pstr = |k: &str| {
            param
                .get(k)
                .and_then(Value::as_str)
                .ok_or_else(|| bad(&format!("no `learner_model_param.{k}`")))
        };
        let n_features: usize = pstr("num_feature")?
            .parse()
            .map_err(|_| bad("bad `num_feature`"))?;
        let num_class: usize = pstr("num_class")?
            .parse()
            .map_err(|_| bad("bad `num_class`"))?;
        let base: Vec<f32> = pstr("base_score")?
            .trim_matches(|c| c == '[' || c == ']')
            .split(',')
            .map(|s| s.trim().parse::<f32>())
            .collect::<std::result::Result<_, _>>()
            .map_err(|_| bad("bad `base_score`"))?;
        let obj_name = learner
            .pointer("/objective/name")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("no `objective.name`"))?;
        let objective = match obj_name {
            "reg:squarederror" | "reg:linear" => Objective::SquaredError,
            "binary:logistic" => Objective::Logistic,
            "multi:softprob" => Objective::Softprob,
            o => return Err(bad(&format!("objective `{o}` is not supported"))),
        };
        let n_groups = if objective == Objective::Softprob {
            num_class.max(1)
        } else {
            1
        };
        if n_features == 0 || base.is_empty() || !(base.len() == 1 || base.len() == n_groups) {
            return Err(bad(
                "inconsistent `num_feature`, `num_class` or `base_score`",
            ));
        }
        let to_margin = |b: f32| match objective {
            Objective::Logistic => (f64::from(b) / (1.0 - f64::from(b))).ln() as f32,
            _ => b,
        };
        let base_margin: Vec<f32> = (0..n_groups)
            .map(|g| to_margin(base[g.min(base.len() - 1)]))
            .collect();
        if base_margin.iter().any(|m| !m.is_finite()) {
            return Err(bad("`base_score` out of range for the objective"));
        }
        let model = learner
            .pointer("/gradient_booster/model")
            .ok_or_else(|| bad("no `gradient_booster.model` (only gbtree is supported)"))?;
        let trees_json = model
            .get("trees")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("no `trees`"))?;
        let tree_info = model
            .get("tree_info")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("no `tree_info`"))?;
        if tree_info.len() != trees_json.len() {
            return Err(bad("`tree_info` and `trees` differ in length"));
        }
        let mut trees = Vec::with_capacity(trees_json.len());
        let mut tree_group = Vec::with_capacity(trees_json.len());
        for (i, (t, g)) in trees_json.iter().zip(tree_info).enumerate() {
            let g = g
                .as_u64()
                .map(|g| g as usize)
                .filter(|&g| g < n_groups)
                .ok_or_else(|| bad(&format!("tree {i}: bad `tree_info`")))?;
            let tree = read_tree(t).map_err(|m| bad(&format!("tree {i}: {m}")))?;
            tree.validate(n_features)
                .map_err(|m| bad(&format!("tree {i}: {m}")))?;
            trees.push(tree);
            tree_group.push(g);
        }
        let scale_pos_weight = learner
            .pointer("/objective/reg_loss_param/scale_pos_weight")
            .and_then(Value::as_str)
            .and_then(|v| v.parse().ok())
            .unwrap_or(1.0);
        Ok(GbdtModel {
            scale_pos_weight,
            objective,
            n_features,
            n_groups,
            base_score: base[0],
            base_margin,
            trees,
            tree_group,
        })
    }
}

fn read_tree(t: &Value) -> std::result::Result<Tree, String> {
    let arr = |k: &str| {
        t.get(k)
            .and_then(Value::as_array)
            .ok_or_else(|| format!("no `{k}`"))
    };
    let ints = |k: &str| -> std::result::Result<Vec<i64>, String> {
        arr(k)?
            .iter()
            .map(|v| {
                v.as_i64()
                    .or_else(|| v.as_bool().map(i64::from))
                    .ok_or_else(|| format!("`{k}` holds a non-integer"))
            })
            .collect()
    };
    let floats = |k: &str| -> std::result::Result<Vec<f32>, String> {
        arr(k)?
            .iter()
            .map(|v| {
                v.as_f64()
                    .map(|f| f as f32)
                    .ok_or_else(|| format!("`{k}` holds a non-number"))
            })
            .collect()
    };
    let left = ints("left_children")?;
    let right = ints("right_children")?;
    let feat = ints("split_indices")?;
    let cond = floats("split_conditions")?;
    let dl = ints("default_left")?;
    let n = left.len();
    if [right.len(), feat.len(), cond.len(), dl.len()]
        .iter()
        .any(|&l| l != n)
    {
        return Err("node arrays differ in length".into());
    }
    if let Some(types) = t.get("split_type").and_then(Value::as_array)
        && types.iter().any(|v| v.as_i64() != Some(0))
    {
        return Err("categorical splits are not supported".into());
    }
    let weights = floats("base_weights").unwrap_or_else(|_| vec![0.0; n]);
    let idx = |c: i64| -> std::result::Result<u32, String> {
        if c == -1 {
            Ok(LEAF)
        } else if c > 0 && (c as usize) < n {
            Ok(c as u32)
        } else {
            Err(format!("child index {c} out of range"))
        }
    };
    let mut nodes = Vec::with_capacity(n);
    for i in 0..n {
        let (l, r) = (idx(left[i])?, idx(right[i])?);
        if (l == LEAF) != (r == LEAF) {
            return Err(format!("node {i} has one child"));
        }
        nodes.push(Node {
            feature: u32::try_from(feat[i]).map_err(|_| format!("node {i}: bad split index"))?,
            bin: 0,
            threshold: cond[i],
            default_left: dl[i] != 0,
            left: l,
            right: r,
            parent: LEAF,
            weight: weights.get(i).copied().unwrap_or(0.0),
            loss_change: 0.0,
            sum_hessian: 0.0,
        });
    }
    Ok(Tree { nodes })
}
