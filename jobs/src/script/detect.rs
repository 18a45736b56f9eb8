//! What a script left in `model/`: which of its files Pier serves, and with which runtime.
//!
//! By content and name: an `.onnx` file → `onnx`; XGBoost's JSON (`{"learner": …}`), UBJSON
//! (`.ubj`) or SageMaker's `xgboost-model` → `xgboost`; LightGBM's text model (`tree` on its
//! first line) → `lightgbm`. `PIER_RUNTIME` names the runtime instead. Files Pier cannot
//! serve (Python pickles: `.pkl`, `.joblib`, or content starting with pickle's opcode; PyTorch
//! `.pt`; TensorFlow SavedModels) are reported with what to export instead, so the job can
//! still store them and CreateModel can say why it refuses them.
//!
//! [`inspect`] loads the chosen file as its runtime would (the signature and properties go into
//! the manifest), so nothing published fails to load later.

use std::path::Path;

use pier_model_store::ManifestSignature;

/// What `model/` holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Detected {
    /// A model Pier serves: its runtime and the file to load (relative name).
    Servable {
        /// `onnx`, `xgboost` or `lightgbm`.
        runtime: String,
        /// The file.
        primary: String,
    },
    /// Nothing Pier serves: why, and what to export instead.
    Unservable {
        /// The message (names the file and the fix).
        reason: String,
    },
}

/// Decides from the files' names and first bytes (`files`: relative names; `read_head(name)`
/// gives up to 4 KiB of a file). `runtime` is `PIER_RUNTIME`, if set.
pub fn detect(
    files: &[String],
    runtime: Option<&str>,
    read_head: &dyn Fn(&str) -> Vec<u8>,
) -> Detected {
    let mut sorted: Vec<&String> = files.iter().collect();
    sorted.sort();
    let ext = |n: &str| {
        Path::new(n)
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default()
    };
    let base = |n: &str| {
        Path::new(n)
            .file_name()
            .map(|e| e.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    if let Some(runtime) = runtime {
        let wanted: &[&str] = match runtime {
            "onnx" => &["onnx"],
            "xgboost" => &["json", "ubj"],
            "lightgbm" => &["txt"],
            _ => &[],
        };
        let chosen = sorted
            .iter()
            .find(|n| wanted.contains(&ext(n).as_str()))
            .or(if sorted.len() == 1 {
                sorted.first()
            } else {
                None
            });
        return match chosen {
            Some(n) => Detected::Servable {
                runtime: runtime.to_owned(),
                primary: (*n).clone(),
            },
            None => Detected::Unservable {
                reason: format!(
                    "PIER_RUNTIME is {runtime} but model/ holds no {} file among {}",
                    wanted.join(" or ."),
                    list(&sorted)
                ),
            },
        };
    }
    if let Some(n) = sorted.iter().find(|n| ext(n) == "onnx") {
        return servable("onnx", n);
    }
    for n in &sorted {
        let head = read_head(n);
        let text = String::from_utf8_lossy(&head);
        let e = ext(n);
        if e == "ubj" || (e == "json" && text.contains("\"learner\"")) {
            return servable("xgboost", n);
        }
        if base(n) == "xgboost-model" {
            return servable("xgboost", n);
        }
        if text.lines().next().is_some_and(|l| l.trim() == "tree") && text.contains("version=") {
            return servable("lightgbm", n);
        }
    }
    let pickled = sorted.iter().find(|n| {
        matches!(ext(n).as_str(), "pkl" | "pickle" | "joblib" | "sav")
            || read_head(n).first() == Some(&0x80)
    });
    if let Some(n) = pickled {
        return Detected::Unservable {
            reason: format!(
                "model/{n} is a Python pickle, which Pier does not serve (loading a pickle runs \
                 arbitrary code, and it needs the Python that made it); export the model to \
                 SM_MODEL_DIR as ONNX instead (skl2onnx.to_onnx for scikit-learn, \
                 booster.save_model(\"model.json\") for XGBoost, booster.save_model(\"model.txt\") \
                 for LightGBM)"
            ),
        };
    }
    if let Some(n) = sorted
        .iter()
        .find(|n| matches!(ext(n).as_str(), "pt" | "pth"))
    {
        return Detected::Unservable {
            reason: format!(
                "model/{n} is a PyTorch checkpoint, which Pier does not serve; export it to \
                 SM_MODEL_DIR as ONNX (torch.onnx.export) instead"
            ),
        };
    }
    if let Some(n) = sorted
        .iter()
        .find(|n| base(n) == "saved_model.pb" || ext(n) == "h5" || ext(n) == "keras")
    {
        return Detected::Unservable {
            reason: format!(
                "model/{n} is a TensorFlow/Keras model, which Pier does not serve; export it to \
                 SM_MODEL_DIR as ONNX (tf2onnx) instead"
            ),
        };
    }
    Detected::Unservable {
        reason: format!(
            "model/ holds no model Pier serves ({}); write an ONNX file (.onnx), an XGBoost \
             JSON or UBJSON model or a LightGBM text model there, or name the runtime with the \
             job's Environment PIER_RUNTIME",
            list(&sorted)
        ),
    }
}

fn servable(runtime: &str, name: &str) -> Detected {
    Detected::Servable {
        runtime: runtime.to_owned(),
        primary: name.to_owned(),
    }
}

fn list(names: &[&String]) -> String {
    if names.is_empty() {
        return "no files".into();
    }
    let shown: Vec<&str> = names.iter().take(10).map(|s| s.as_str()).collect();
    let more = names.len().saturating_sub(10);
    if more > 0 {
        format!("{} and {more} more", shown.join(", "))
    } else {
        shown.join(", ")
    }
}

/// Reads up to 4 KiB of `path`.
pub fn head(path: &Path) -> Vec<u8> {
    let mut buf = Vec::new();
    if let Ok(f) = std::fs::File::open(path) {
        let _ = std::io::Read::read_to_end(&mut std::io::Read::take(f, 4096), &mut buf);
    }
    buf
}

/// Loads `path` as `runtime` would: its signature and properties, or why it does not load.
pub fn inspect(
    runtime: &str,
    path: &Path,
    name: &str,
) -> Result<
    (
        ManifestSignature,
        std::collections::BTreeMap<String, serde_json::Value>,
    ),
    String,
> {
    let shown = |e: pier_runtimes::RuntimeError| {
        e.to_string()
            .replace(&path.display().to_string(), &format!("model/{name}"))
    };
    match runtime {
        "onnx" => {
            let signature = pier_runtimes::onnx::OnnxGraph::read(path, name)
                .and_then(|g| g.declared_signature())
                .map_err(shown)?;
            if signature.inputs.is_empty() || signature.outputs.is_empty() {
                return Err(format!(
                    "model/{name} is not a valid onnx model: it declares no graph inputs or outputs"
                ));
            }
            Ok((signature.to_manifest(), Default::default()))
        }
        native if pier_runtimes::native::serves(native) => {
            let info = pier_runtimes::native::inspect(native, path).map_err(shown)?;
            Ok((info.signature.to_manifest(), info.properties))
        }
        other => Err(format!("Pier does not serve {other:?} models")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn runtimes_from_names_and_content() {
        let heads = |name: &str| -> Vec<u8> {
            match name {
                "model.json" => br#"{"learner": {"attributes": {}}}"#.to_vec(),
                "model.txt" => b"tree\nversion=v4\nnum_class=1\n".to_vec(),
                "model" => vec![0x80, 0x04, 0x95],
                _ => b"hello".to_vec(),
            }
        };
        type Case<'a> = (&'a [&'a str], Option<&'a str>, Option<(&'a str, &'a str)>);
        let cases: [Case; 8] = [
            (
                &["notes.txt", "model.onnx"],
                None,
                Some(("onnx", "model.onnx")),
            ),
            (&["model.json"], None, Some(("xgboost", "model.json"))),
            (
                &["sub/xgboost-model"],
                None,
                Some(("xgboost", "sub/xgboost-model")),
            ),
            (&["model.txt"], None, Some(("lightgbm", "model.txt"))),
            (
                &["weights.bin"],
                Some("onnx"),
                Some(("onnx", "weights.bin")),
            ),
            (&["model.joblib"], None, None),
            (&["model"], None, None),
            (&["readme.md", "other.md"], Some("onnx"), None),
        ];
        for (files, runtime, want) in cases {
            let got = detect(&names(files), runtime, &heads);
            match want {
                Some((r, p)) => assert_eq!(
                    got,
                    Detected::Servable {
                        runtime: r.into(),
                        primary: p.into()
                    },
                    "{files:?}"
                ),
                None => assert!(
                    matches!(got, Detected::Unservable { .. }),
                    "{files:?}: {got:?}"
                ),
            }
        }
        let Detected::Unservable { reason } = detect(&names(&["model.joblib"]), None, &heads)
        else {
            panic!()
        };
        assert!(
            reason.contains("pickle") && reason.contains("skl2onnx"),
            "{reason}"
        );
    }
}
