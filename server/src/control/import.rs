//! Resolving CreateModel's `ModelDataUrl` to a pinned artifact: a store reference
//! (`pier://NAME[/VERSION]`) or a local file / folder (`/path`, `file:///path`) that is
//! imported into the store as a new version of the model's name. Native images (`xgboost`,
//! `lightgbm`, the built-in algorithms) get their signature and properties (feature and class
//! counts, objective) from loading the file; SageMaker's extension-less `xgboost-model` is
//! read by content.

use std::path::{Path, PathBuf};

use pier_model_store::{ArtifactFile, ManifestDraft, ModelStore, VersionSelector};

use crate::error::ApiError;
use crate::records::ArtifactRef;

/// Resolves `url` for a model named `model_name` served by runtime `image`. Blocking.
pub fn resolve(
    store: &ModelStore,
    model_name: &str,
    image: &str,
    url: &str,
) -> Result<ArtifactRef, ApiError> {
    if let Some(reference) = url.strip_prefix("pier://") {
        return resolve_store_ref(store, image, reference);
    }
    if url.starts_with("s3://") || url.starts_with("http://") || url.starts_with("https://") {
        return Err(ApiError::validation(format!(
            "ModelDataUrl {url:?} is not supported: use pier://NAME[/VERSION] or a local path"
        )));
    }
    let path = PathBuf::from(url.strip_prefix("file://").unwrap_or(url));
    import_path(store, model_name, image, &path)
}

fn resolve_store_ref(
    store: &ModelStore,
    image: &str,
    reference: &str,
) -> Result<ArtifactRef, ApiError> {
    let (name, version) = match reference.split_once('/') {
        Some((n, v)) => {
            let v = v.parse::<u64>().map_err(|_| {
                ApiError::validation(format!(
                    "ModelDataUrl pier://{reference}: the version must be a number"
                ))
            })?;
            (n, VersionSelector::Exact(v))
        }
        None => (reference, VersionSelector::Latest),
    };
    let artifact = store
        .open_version(name, version)
        .map_err(|e| ApiError::validation(format!("ModelDataUrl pier://{reference}: {e}")))?;
    let manifest = artifact.manifest();
    check_runtime(
        image,
        &manifest.runtime,
        &format!("pier://{}/{}", manifest.name, manifest.version),
    )?;
    Ok(ArtifactRef {
        name: manifest.name.clone(),
        version: manifest.version,
    })
}

fn check_runtime(image: &str, runtime: &str, what: &str) -> Result<(), ApiError> {
    if image != runtime {
        return Err(ApiError::validation(format!(
            "PrimaryContainer.Image is {image:?} but {what} is a {runtime:?} artifact"
        )));
    }
    Ok(())
}

/// Imports a local file, or every file of a local folder, as a new version.
fn import_path(
    store: &ModelStore,
    model_name: &str,
    image: &str,
    path: &Path,
) -> Result<ArtifactRef, ApiError> {
    let meta = std::fs::metadata(path)
        .map_err(|e| ApiError::validation(format!("ModelDataUrl {}: {e}", path.display())))?;
    let mut files: Vec<PathBuf> = if meta.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|e| ApiError::validation(format!("ModelDataUrl {}: {e}", path.display())))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.is_file()
                    && !p
                        .file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with('.'))
            })
            .collect();
        files.sort();
        files
    } else {
        vec![path.to_path_buf()]
    };
    let extension = primary_extension(image);
    if let Some(i) = files.iter().position(|f| {
        f.extension()
            .is_some_and(|e| Some(e.to_string_lossy().as_ref()) == extension)
    }) {
        let primary = files.remove(i);
        files.insert(0, primary);
    }
    let Some(primary) = files.first().cloned() else {
        return Err(ApiError::validation(format!(
            "ModelDataUrl {}: the folder has no files",
            path.display()
        )));
    };
    if primary.extension().is_some_and(|e| e == "gz" || e == "tar") {
        return Err(ApiError::validation(format!(
            "ModelDataUrl {}: tar archives are not supported yet; point at the extracted model file or folder",
            primary.display()
        )));
    }
    let bad_model = |e: pier_runtimes::RuntimeError| {
        ApiError::validation(format!("ModelDataUrl {}: {e}", primary.display()))
    };
    let (signature, properties) = match image {
        "onnx" => (
            pier_runtimes::onnx::inspect_signature(&primary)
                .map_err(bad_model)?
                .to_manifest(),
            Default::default(),
        ),
        native if pier_runtimes::native::serves(native) => {
            let info = pier_runtimes::native::inspect(native, &primary).map_err(bad_model)?;
            (info.signature.to_manifest(), info.properties)
        }
        _ => Default::default(),
    };
    let artifact_files = files
        .iter()
        .map(|f| {
            ArtifactFile::from_path(
                f.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                f,
            )
        })
        .collect();
    let draft = ManifestDraft {
        runtime: image.to_owned(),
        signature,
        properties,
        provenance: [(
            "source".to_string(),
            serde_json::json!(path.display().to_string()),
        )]
        .into(),
    };
    let manifest = store
        .publish(model_name, artifact_files, draft)
        .map_err(|e| ApiError::validation(format!("cannot import {}: {e}", path.display())))?;
    Ok(ArtifactRef {
        name: manifest.name,
        version: manifest.version,
    })
}

fn primary_extension(image: &str) -> Option<&'static str> {
    match image {
        "onnx" => Some("onnx"),
        "xgboost" => Some("json"),
        "lightgbm" => Some("txt"),
        _ => None,
    }
}
