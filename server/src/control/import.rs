//! Resolving CreateModel's `ModelDataUrl` to a pinned artifact: a store reference
//! (`pier://NAME[/VERSION]`), a local file / folder (`/path`, `file:///path`), or an
//! `s3://…/model.tar.gz` (a training job's `S3ModelArtifacts`: downloaded first by
//! [`fetch_s3`] into a scratch folder of the call's own) that is imported into the store as a
//! new version of the model's name. Native images (`xgboost`,
//! `lightgbm`, the built-in algorithms) get their signature and properties (feature and class
//! counts, objective) from loading the file; SageMaker's extension-less `xgboost-model` is
//! read by content.
//!
//! Local imports are bounded (see [`crate::config::ImportConfig`]): only regular files under
//! the import roots, within a byte, file-count and time limit, cancelled when the caller goes
//! (the handler's drop sets the [`Cancel`] flag that the blocking copy checks between
//! chunks), and inspected as a model of the named runtime before anything is published. A
//! `model.tar.gz` unpacks into staging under the same limits.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use pier_model_store::{Budget, Cancel, LocalSource, ManifestDraft, ModelStore, VersionSelector};

use crate::config::ImportConfig;
use crate::error::ApiError;
use crate::records::ArtifactRef;

/// One CreateModel import.
pub struct Import<'a> {
    /// The store.
    pub store: &'a ModelStore,
    /// Roots and limits.
    pub config: &'a ImportConfig,
    /// Where the control plane listens (local imports are off beyond loopback without roots).
    pub admin_addr: SocketAddr,
    /// Set when the caller has gone.
    pub cancel: Cancel,
    /// The Model's name (and the store name of an import).
    pub model_name: &'a str,
    /// The runtime.
    pub image: &'a str,
}

/// [`Import::image`] for a SageMaker framework image (`sagemaker-scikit-learn`, …,
/// `pier-script`): the runtime is what the model's files show
/// ([`pier_jobs::script::detect`]), and a model Pier cannot serve is refused with the reason.
pub const DETECT: &str = "(detect)";

/// What `ModelDataUrl` resolved to.
pub struct Resolved {
    /// The pinned artifact.
    pub artifact: ArtifactRef,
    /// Its runtime.
    pub runtime: String,
    /// Whether this call published it (so a failed CreateModel removes it again).
    pub imported: bool,
}

/// Resolves `url`. Blocking.
pub fn resolve(job: &Import<'_>, url: &str) -> Result<Resolved, ApiError> {
    if let Some(reference) = url.strip_prefix("pier://") {
        let (artifact, runtime) = resolve_store_ref(job.store, job.image, reference)?;
        return Ok(Resolved {
            artifact,
            runtime,
            imported: false,
        });
    }
    if url.starts_with("s3://") {
        // The caller fetches it first ([`fetch_s3`]) and calls [`import_fetched`].
        return Err(ApiError::internal(
            "an s3:// ModelDataUrl is fetched before resolve",
        ));
    }
    if url.starts_with("http://") || url.starts_with("https://") {
        return Err(ApiError::validation(format!(
            "ModelDataUrl {url:?} is not supported: use s3://BUCKET/KEY/model.tar.gz, \
             pier://NAME[/VERSION] or a local path"
        )));
    }
    let path = PathBuf::from(url.strip_prefix("file://").unwrap_or(url));
    let (artifact, runtime) = import_path(job, url, &path)?;
    Ok(Resolved {
        artifact,
        runtime,
        imported: true,
    })
}

fn resolve_store_ref(
    store: &ModelStore,
    image: &str,
    reference: &str,
) -> Result<(ArtifactRef, String), ApiError> {
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
    let artifact = store.open_version(name, version).map_err(|e| {
        let context = format!("ModelDataUrl pier://{reference}");
        if e.is_unavailable() {
            ApiError::from_store(&context, e)
        } else {
            ApiError::validation(format!("{context}: {e}"))
        }
    })?;
    let manifest = artifact.manifest();
    let shown = format!("pier://{}/{}", manifest.name, manifest.version);
    // A script job's model Pier cannot serve (a pickle) is stored with the reason.
    if let Some(reason) = manifest
        .properties
        .get("unservable")
        .and_then(|r| r.as_str())
    {
        return Err(ApiError::validation(format!(
            "ModelDataUrl {shown} cannot be served: {reason}"
        )));
    }
    if image != DETECT {
        check_runtime(image, &manifest.runtime, &shown)?;
    }
    Ok((
        ArtifactRef {
            name: manifest.name.clone(),
            version: manifest.version,
        },
        manifest.runtime.clone(),
    ))
}

fn check_runtime(image: &str, runtime: &str, what: &str) -> Result<(), ApiError> {
    if image != runtime {
        return Err(ApiError::validation(format!(
            "PrimaryContainer.Image is {image:?} but {what} is a {runtime:?} artifact"
        )));
    }
    Ok(())
}

/// Imports a local file, a folder of files or a model archive as a new version: the path
/// is checked against the import roots, copied into staging within the import's limits and
/// cancel flag, and inspected as a model of `image` before it is published.
fn import_path(
    job: &Import<'_>,
    url: &str,
    path: &Path,
) -> Result<(ArtifactRef, String), ApiError> {
    let context = format!("ModelDataUrl {url}");
    let store_err = |e| ApiError::from_store(&context, e);
    let limits = job.config.limits();
    let policy = job.config.policy(job.admin_addr).map_err(store_err)?;
    let source = LocalSource::scan(path, &policy, &limits).map_err(store_err)?;
    import_source(job, url, &source, &path.display().to_string())
}

/// Downloads an `s3://…/model.tar.gz` `ModelDataUrl` into `scratch` (a folder of this call's
/// own), within the import's byte limit; S3 is reached as `s3` says (the job runner's
/// settings: the AWS environment variables, `AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL`, keys,
/// region), so training jobs and CreateModel read the same store.
pub async fn fetch_s3(
    config: &ImportConfig,
    s3: &pier_jobs::channels::S3Config,
    url: &str,
    scratch: &Path,
) -> Result<LocalSource, ApiError> {
    pier_jobs::output::fetch_model_data(
        url,
        scratch,
        &pier_model_store::ImportPolicy::anywhere(),
        &config.limits(),
        s3,
    )
    .await
    .map_err(|e| output_err(url, e))
}

/// Imports an archive [`fetch_s3`] downloaded, as a local import. Blocking.
pub fn import_fetched(
    job: &Import<'_>,
    url: &str,
    source: &LocalSource,
) -> Result<Resolved, ApiError> {
    let (artifact, runtime) = import_source(job, url, source, url)?;
    Ok(Resolved {
        artifact,
        runtime,
        imported: true,
    })
}

fn output_err(url: &str, e: pier_jobs::output::OutputError) -> ApiError {
    let context = format!("ModelDataUrl {url}");
    match e {
        pier_jobs::output::OutputError::Store(e) => ApiError::from_store(&context, e),
        other => ApiError::validation(format!("{context}: {other}")),
    }
}

/// Unpacks (or copies) `source` into staging with the store's archive rules, inspects it as a
/// model of `job.image` and publishes it; `origin` goes into the provenance.
pub(crate) fn import_source(
    job: &Import<'_>,
    url: &str,
    source: &LocalSource,
    origin: &str,
) -> Result<(ArtifactRef, String), ApiError> {
    let context = format!("ModelDataUrl {url}");
    let store_err = |e| ApiError::from_store(&context, e);
    let mut budget = Budget::new(job.config.limits(), job.cancel.clone());
    let mut staging = pier_jobs::output::stage_model_data(job.store, source, &mut budget)
        .map_err(|e| output_err(url, e))?;
    let names: Vec<String> = staging.files().iter().map(|f| f.name.clone()).collect();
    let (image, primary) = if job.image == DETECT {
        use pier_jobs::script::detect::{Detected, detect, head};
        let read_head = |n: &str| staging.file_path(n).map(|p| head(&p)).unwrap_or_default();
        match detect(&names, None, &read_head) {
            Detected::Servable { runtime, primary } => (runtime, Some(primary)),
            Detected::Unservable { reason } => {
                return Err(ApiError::validation(format!(
                    "{context} cannot be served: {reason}"
                )));
            }
        }
    } else {
        (job.image.to_owned(), primary_file(&names, job.image))
    };
    let image = image.as_str();
    let Some(primary) = primary else {
        return Err(ApiError::validation(format!(
            "{context}: it holds no model files"
        )));
    };
    staging.make_primary(&primary);
    let staged = staging.file_path(&primary).expect("a staged file");
    // Errors name the file as the client knows it, never the staging folder.
    let bad_model = |e: pier_runtimes::RuntimeError| {
        let message = e
            .to_string()
            .replace(&staged.display().to_string(), &primary);
        ApiError::validation(format!(
            "{context}: {primary} is not a valid {image} model: {message}"
        ))
    };
    let (signature, properties) = match image {
        "onnx" => {
            let signature = pier_runtimes::onnx::OnnxGraph::read(&staged, &primary)
                .and_then(|g| g.declared_signature())
                .map_err(bad_model)?;
            // Any bytes parse as some protobuf message (an empty file is an empty model):
            // a model must at least declare what it takes and gives.
            if signature.inputs.is_empty() || signature.outputs.is_empty() {
                return Err(ApiError::validation(format!(
                    "{context}: {primary} is not a valid onnx model: it declares no graph inputs or outputs"
                )));
            }
            (signature.to_manifest(), Default::default())
        }
        native if pier_runtimes::native::serves(native) => {
            let info = pier_runtimes::native::inspect(native, &staged).map_err(bad_model)?;
            (info.signature.to_manifest(), info.properties)
        }
        other => {
            return Err(ApiError::validation(format!(
                "{context}: Pier cannot check a {other:?} model"
            )));
        }
    };
    budget.check().map_err(store_err)?;
    let draft = ManifestDraft {
        runtime: image.to_owned(),
        signature,
        properties,
        provenance: [("source".to_string(), serde_json::json!(origin))].into(),
    };
    let manifest = staging.publish(job.model_name, draft).map_err(store_err)?;
    Ok((
        ArtifactRef {
            name: manifest.name,
            version: manifest.version,
        },
        image.to_owned(),
    ))
}

/// The file the runtime loads: the first (by name) with the runtime's extension, else the
/// first file.
fn primary_file(names: &[String], image: &str) -> Option<String> {
    let mut sorted: Vec<&String> = names.iter().collect();
    sorted.sort();
    let extension = primary_extension(image);
    sorted
        .iter()
        .find(|n| {
            Path::new(n.as_str())
                .extension()
                .is_some_and(|e| Some(e.to_string_lossy().as_ref()) == extension)
        })
        .or(sorted.first())
        .map(|n| (*n).clone())
}

fn primary_extension(image: &str) -> Option<&'static str> {
    match image {
        "onnx" => Some("onnx"),
        "xgboost" => Some("json"),
        "lightgbm" => Some("txt"),
        _ => None,
    }
}
