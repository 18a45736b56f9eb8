//! One model from a folder, as KServe's storage initializer leaves it under `/mnt/models`
//! (`pier serve --model-dir DIR --model-name NAME [--runtime R]`): Pier as a KServe
//! `ServingRuntime` (`deploy/kserve/`).
//!
//! [`find`] picks the folder's model file by KServe's conventions: `*.onnx` for `onnx`;
//! `*.bst`, `*.json`, `*.ubj` (and SageMaker's `xgboost-model`) for `xgboost`; `*.txt` and
//! `*.bst` for `lightgbm` (KServe's lgbserver and MLServer name LightGBM models `model.bst`).
//! Without `--runtime` the format is read from the name and, where the name is ambiguous
//! (`.bst`, `.json`, `.txt`), from the first bytes. Exactly one model file must be there, as
//! KServe's own servers require; MLServer's `model-settings.json` and hidden entries are
//! ignored, and a folder holding nothing but one sub-folder (an unpacked archive) is looked into.
//!
//! [`install`] then deploys it through the control plane's own API, in process: CreateModel
//! `NAME` (the file imported into the store, checked to load as its runtime, within
//! `--max-model-bytes`), CreateEndpointConfig and CreateEndpoint `NAME` with one variant
//! ([`VARIANT`]), and waits until the endpoint is in service. So the model serves exactly as an
//! endpoint does: v2 REST and gRPC under `NAME`, SageMaker's `/invocations`, batching and
//! backend options from `PIER_*` variables (the Model's `Environment`), metrics. The server
//! is started with `NAME` as its default endpoint, so `/ping`, `/v2/health/ready` and gRPC
//! ServerReady answer ready only once the model has loaded and answered its warm-up request,
//! while `/v2/health/live` answers from the start (a slow load does not fail liveness).
//!
//! Concurrency: `install` is one task, run after the listeners are up; file reads are on a
//! blocking thread, and the deploy goes through the control plane's lock like any client's.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::body::Body;
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::state::AppState;

/// The variant the model serves as (SageMaker's default variant name).
pub const VARIANT: &str = "AllTraffic";

/// Runtimes whose files [`find`] recognises by name and content.
pub const DETECTED: &[&str] = &["onnx", "xgboost", "lightgbm"];

/// Names that are never the model (MLServer's settings files).
const IGNORED: &[&str] = &["model-settings.json", "settings.json"];

/// What `--model-dir`, `--model-name` and `--runtime` say.
#[derive(Clone, Debug)]
pub struct ModelDir {
    /// The folder (KServe: `/mnt/models`).
    pub dir: PathBuf,
    /// The v2 model name (KServe: the InferenceService's name).
    pub name: String,
    /// The runtime (`onnx`, `xgboost`, `lightgbm`, a built-in algorithm's); `None`: from the
    /// file.
    pub runtime: Option<String>,
    /// The Model's `Environment` (`PIER_BACKEND`, `PIER_MAX_BATCH_SIZE`, ...).
    pub environment: BTreeMap<String, String>,
}

/// Whether `--runtime` may name `runtime`.
pub fn known_runtime(runtime: &str) -> bool {
    DETECTED.contains(&runtime) || pier_runtimes::native::BUILTIN_RUNTIMES.contains(&runtime)
}

/// The model file of `dir` and its runtime. Blocking (reads the folder and first bytes).
pub fn find(dir: &Path, runtime: Option<&str>) -> Result<(String, PathBuf), String> {
    if let Some(r) = runtime
        && !known_runtime(r)
    {
        return Err(format!(
            "unknown runtime {r:?}; Pier serves {} and {}",
            DETECTED.join(", "),
            pier_runtimes::native::BUILTIN_RUNTIMES.join(", ")
        ));
    }
    let mut folder = dir.to_path_buf();
    let (mut files, folders) = entries(&folder)?;
    if files.is_empty()
        && let [only] = folders.as_slice()
    {
        folder = only.clone();
        files = entries(&folder)?.0;
    }
    let mut found: Vec<(String, String)> = Vec::new();
    for name in &files {
        if let Some(r) = kind(&folder.join(name), name, runtime) {
            found.push((r, name.clone()));
        }
    }
    let shown = folder.display();
    match found.as_slice() {
        [(r, name)] => Ok((r.clone(), folder.join(name))),
        [] => Err(format!(
            "{shown} holds no {} model file (files: {}); expected {}",
            runtime.unwrap_or("ONNX, XGBoost or LightGBM"),
            list(&files),
            expected(runtime)
        )),
        several => Err(format!(
            "{shown} holds several model files ({}); only one is allowed: remove the others{}",
            several
                .iter()
                .map(|(r, n)| format!("{n} ({r})"))
                .collect::<Vec<_>>()
                .join(", "),
            if runtime.is_none() {
                ", or name the format with --runtime"
            } else {
                ""
            }
        )),
    }
}

/// The folder's visible regular files (links followed) and sub-folders, sorted.
fn entries(dir: &Path) -> Result<(Vec<String>, Vec<PathBuf>), String> {
    let read = std::fs::read_dir(dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    let (mut files, mut folders) = (Vec::new(), Vec::new());
    for entry in read.filter_map(Result::ok) {
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if name.starts_with('.') {
            continue;
        }
        match std::fs::metadata(entry.path()) {
            Ok(m) if m.is_file() => files.push(name),
            Ok(m) if m.is_dir() => folders.push(entry.path()),
            _ => {}
        }
    }
    files.sort();
    folders.sort();
    Ok((files, folders))
}

/// The runtime `name` is a model file of, if it is one (of `wanted`, when given).
fn kind(path: &Path, name: &str, wanted: Option<&str>) -> Option<String> {
    if IGNORED.contains(&name) {
        return None;
    }
    let ext = Path::new(name)
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let xgboost = matches!(ext.as_str(), "bst" | "json" | "ubj") || name == "xgboost-model";
    let lightgbm = matches!(ext.as_str(), "txt" | "bst");
    let found = match wanted {
        Some("onnx") => ext == "onnx",
        Some("xgboost") => xgboost,
        Some("lightgbm") => lightgbm,
        // A built-in algorithm's model has no conventional name: any file.
        Some(_) => true,
        None => {
            let head = pier_jobs::script::detect::head(path);
            let text = String::from_utf8_lossy(&head);
            let lightgbm_text = text.lines().next().is_some_and(|l| l.trim() == "tree");
            return match ext.as_str() {
                "onnx" => Some("onnx".into()),
                "ubj" => Some("xgboost".into()),
                _ if name == "xgboost-model" => Some("xgboost".into()),
                "json" if text.contains("\"learner\"") => Some("xgboost".into()),
                "txt" if lightgbm_text => Some("lightgbm".into()),
                "bst" if lightgbm_text => Some("lightgbm".into()),
                "bst" => Some("xgboost".into()),
                _ => None,
            };
        }
    };
    found.then(|| wanted.unwrap_or_default().to_owned())
}

fn expected(runtime: Option<&str>) -> &'static str {
    match runtime {
        Some("onnx") => "a .onnx file",
        Some("xgboost") => "a .bst, .json or .ubj file (XGBoost JSON or UBJSON)",
        Some("lightgbm") => "a .txt or .bst file (LightGBM text)",
        Some(_) => "one file",
        None => {
            "one of model.onnx, an XGBoost model (.bst, .json, .ubj) or a LightGBM text model (.txt, .bst)"
        }
    }
}

fn list(files: &[String]) -> String {
    if files.is_empty() {
        "none".into()
    } else {
        files.join(", ")
    }
}

/// Finds the model file, deploys it as Model and endpoint `NAME` through the control API and
/// returns once the endpoint is in service; an error names what failed (the file, the load,
/// the warm-up).
pub async fn install(app: &AppState, model: &ModelDir) -> Result<(), String> {
    let (dir, wanted) = (model.dir.clone(), model.runtime.clone());
    let (runtime, file) = tokio::task::spawn_blocking(move || find(&dir, wanted.as_deref()))
        .await
        .map_err(|e| format!("the folder reader stopped: {e}"))??;
    tracing::info!(model = %model.name, %runtime, file = %file.display(), "serving the model of --model-dir");
    let control = crate::control::routes(app.clone());
    let name = model.name.as_str();
    call(
        &control,
        "CreateModel",
        json!({
            "ModelName": name,
            "PrimaryContainer": {
                "Image": runtime,
                "ModelDataUrl": file.display().to_string(),
                "Environment": model.environment,
            },
        }),
    )
    .await?;
    call(
        &control,
        "CreateEndpointConfig",
        json!({
            "EndpointConfigName": name,
            "ProductionVariants": [{
                "VariantName": VARIANT,
                "ModelName": name,
                "InitialInstanceCount": 1,
                "InitialVariantWeight": 1.0,
            }],
        }),
    )
    .await?;
    call(
        &control,
        "CreateEndpoint",
        json!({"EndpointName": name, "EndpointConfigName": name}),
    )
    .await?;
    loop {
        let d = call(&control, "DescribeEndpoint", json!({"EndpointName": name})).await?;
        match d["EndpointStatus"].as_str() {
            Some("InService") => {
                tracing::info!(model = %name, "the model of --model-dir is in service");
                return Ok(());
            }
            Some("Failed") => {
                return Err(format!(
                    "{} did not load: {}",
                    file.display(),
                    d["FailureReason"].as_str().unwrap_or("no reason given")
                ));
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// One control-plane action through its router, as a client would call it.
async fn call(control: &axum::Router, action: &str, body: Value) -> Result<Value, String> {
    let request = http::Request::post("/")
        .header("x-amz-target", format!("SageMaker.{action}"))
        .header("content-type", "application/x-amz-json-1.1")
        .body(Body::from(body.to_string()))
        .map_err(|e| format!("{action}: {e}"))?;
    let response = control
        .clone()
        .oneshot(request)
        .await
        .map_err(|e| format!("{action}: {e}"))?;
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .map_err(|e| format!("{action}: {e}"))?;
    let answer: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    if !status.is_success() {
        let message = answer["message"]
            .as_str()
            .or(answer["Message"].as_str())
            .map_or_else(
                || String::from_utf8_lossy(&bytes).into_owned(),
                str::to_owned,
            );
        return Err(format!("{action}: {message}"));
    }
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(files: &[(&str, &[u8])]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, bytes) in files {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, bytes).unwrap();
        }
        dir
    }

    const LGB: &[u8] = b"tree\nversion=v4\nnum_class=1\n";
    const XGB: &[u8] = br#"{"learner": {"attributes": {}}, "version": [2, 0, 0]}"#;

    #[test]
    fn kserve_layouts_are_recognised() {
        for (files, runtime, file) in [
            (vec![("model.onnx", &b"x"[..])], "onnx", "model.onnx"),
            (
                vec![("model.bst", XGB), ("model-settings.json", b"{}")],
                "xgboost",
                "model.bst",
            ),
            (vec![("model.json", XGB)], "xgboost", "model.json"),
            (vec![("model.ubj", b"{")], "xgboost", "model.ubj"),
            (vec![("xgboost-model", b"x")], "xgboost", "xgboost-model"),
            (vec![("model.bst", LGB)], "lightgbm", "model.bst"),
            (
                vec![("model.txt", LGB), ("README.txt", b"hello")],
                "lightgbm",
                "model.txt",
            ),
            (
                vec![("iris/model.onnx", b"x"), (".hidden", b"x")],
                "onnx",
                "iris/model.onnx",
            ),
        ] {
            let dir = folder(&files);
            let (r, path) = find(dir.path(), None).unwrap();
            assert_eq!((r.as_str(), path), (runtime, dir.path().join(file)));
        }
        // Named: the runtime decides which names count.
        let dir = folder(&[("model.bst", b"anything"), ("notes.onnx", b"x")]);
        let (r, path) = find(dir.path(), Some("lightgbm")).unwrap();
        assert_eq!(
            (r.as_str(), path),
            ("lightgbm", dir.path().join("model.bst"))
        );
    }

    #[test]
    fn no_model_or_several_are_refused_by_name() {
        let dir = folder(&[("README.md", b"x")]);
        let e = find(dir.path(), None).unwrap_err();
        assert!(e.contains("holds no") && e.contains("README.md"), "{e}");
        let dir = folder(&[]);
        let e = find(dir.path(), Some("onnx")).unwrap_err();
        assert!(e.contains("files: none") && e.contains(".onnx"), "{e}");
        let dir = folder(&[("a.onnx", b"x"), ("b.json", XGB)]);
        let e = find(dir.path(), None).unwrap_err();
        assert!(
            e.contains("several model files") && e.contains("a.onnx (onnx)"),
            "{e}"
        );
        assert!(
            e.contains("b.json (xgboost)") && e.contains("--runtime"),
            "{e}"
        );
        let e = find(dir.path(), Some("tensorflow")).unwrap_err();
        assert!(e.contains("unknown runtime \"tensorflow\""), "{e}");
        let e = find(&dir.path().join("absent"), None).unwrap_err();
        assert!(e.contains("cannot list"), "{e}");
    }
}
