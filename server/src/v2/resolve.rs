//! Resolving a v2 model name and version: an endpoint (its variants are its versions) or a
//! control-plane Model (the store versions of its artifact), with on-demand loading,
//! readiness, metadata, and the repository operations (index, load, unload).
//!
//! Concurrency: one snapshot load per call; database and store reads are async or on a
//! blocking thread; the pin map's mutex is only held for map operations.

use std::sync::Arc;

use pier_model_store::VersionSelector;
use pier_runtimes::Signature;

use super::V2;
use crate::db::Table;
use crate::error::{ApiError, ServeError};
use crate::records::{ArtifactRef, ModelRecord};
use crate::serving::{EndpointServing, LoadedModel};

/// A name and version resolved to a loaded model.
#[derive(Debug)]
pub struct Resolved {
    /// The version string that answers (variant position for endpoints, store version for
    /// models).
    pub version: String,
    /// The endpoint variant, when the name is an endpoint.
    pub variant: Option<String>,
    /// The loaded, warmed model.
    pub loaded: Arc<LoadedModel>,
}

/// What metadata and ModelConfig report about a name and version.
#[derive(Debug)]
pub struct Described {
    /// Every version of the name.
    pub versions: Vec<String>,
    /// The version described.
    pub version: String,
    /// Manifest runtime kind (`onnx`, …).
    pub runtime: String,
    /// Inputs and outputs.
    pub signature: Signature,
    /// Loaded, warmed and able to answer.
    pub ready: bool,
    /// True for an endpoint.
    pub endpoint: bool,
}

fn internal(e: impl Into<ApiError>) -> ServeError {
    let e: ApiError = e.into();
    ServeError::Internal(e.to_string())
}

fn not_found(name: &str) -> ServeError {
    ServeError::ModelNotFound(format!(
        "model {name:?} is not found: it is neither an endpoint nor a model (CreateEndpoint / CreateModel)"
    ))
}

/// The variant of `endpoint` that a version string names: `1`-based position or name.
fn variant_index(endpoint: &EndpointServing, version: &str) -> Result<usize, ServeError> {
    let by_position = version
        .parse::<usize>()
        .ok()
        .filter(|n| (1..=endpoint.variants.len()).contains(n))
        .map(|n| n - 1);
    by_position
        .or_else(|| endpoint.variants.iter().position(|v| v.name == version))
        .ok_or_else(|| {
            ServeError::ModelNotFound(format!(
                "version {version:?} of endpoint {:?} is not found; its versions are 1..={} (variants {})",
                endpoint.name,
                endpoint.variants.len(),
                endpoint.variants.iter().map(|v| v.name.as_str()).collect::<Vec<_>>().join(", ")
            ))
        })
}

impl V2 {
    async fn model_record(&self, name: &str) -> Result<Option<ModelRecord>, ServeError> {
        self.app
            .db
            .get::<ModelRecord>(Table::Models, name)
            .await
            .map_err(internal)
    }

    /// The artifact a Model's `version` names (default: the one the Model pins).
    async fn artifact_of(
        &self,
        record: &ModelRecord,
        version: Option<&str>,
    ) -> Result<(ArtifactRef, Vec<u64>), ServeError> {
        let store = self.app.store.clone();
        let name = record.pier_artifact.name.clone();
        let versions = tokio::task::spawn_blocking(move || store.list_versions(&name))
            .await
            .map_err(|e| ServeError::Internal(e.to_string()))?
            .map_err(|e| ServeError::Internal(e.to_string()))?;
        let version = match version {
            None => record.pier_artifact.version,
            Some(v) => v
                .parse::<u64>()
                .ok()
                .filter(|v| versions.contains(v))
                .ok_or_else(|| {
                    ServeError::ModelNotFound(format!(
                        "version {v:?} of model {:?} is not found; its versions are {versions:?}",
                        record.model_name
                    ))
                })?,
        };
        let artifact = ArtifactRef {
            name: record.pier_artifact.name.clone(),
            version,
        };
        Ok((artifact, versions))
    }

    /// The loaded copy of `artifact`, if an endpoint or an earlier load holds one.
    fn find_loaded(&self, artifact: &ArtifactRef) -> Option<Arc<LoadedModel>> {
        if let Some(m) = self.pinned.lock().expect("pin lock").get(artifact) {
            return Some(m.clone());
        }
        let snapshot = self.app.serving.snapshot();
        snapshot
            .endpoints
            .values()
            .flat_map(|e| e.variants.iter())
            .find(|v| &v.loaded.artifact == artifact)
            .map(|v| v.loaded.clone())
    }

    /// Loads (and warms) `artifact` unless loaded, and keeps it loaded.
    async fn load_artifact(&self, artifact: &ArtifactRef) -> Result<Arc<LoadedModel>, ServeError> {
        if let Some(m) = self.find_loaded(artifact) {
            return Ok(m);
        }
        let (store, app, a) = (self.app.store.clone(), self.app.clone(), artifact.clone());
        let loaded = tokio::task::spawn_blocking(move || app.serving.cache.get_or_load(&store, &a))
            .await
            .map_err(|e| ServeError::Internal(e.to_string()))?
            .map_err(|e| ServeError::Internal(format!("loading {artifact}: {e}")))?;
        tracing::info!(%artifact, "v2: model loaded on demand");
        self.pinned
            .lock()
            .expect("pin lock")
            .insert(artifact.clone(), loaded.clone());
        Ok(loaded)
    }

    /// Resolves a name and version to a loaded model, loading a Model on first use.
    pub async fn resolve(&self, name: &str, version: Option<&str>) -> Result<Resolved, ServeError> {
        let snapshot = self.app.serving.snapshot();
        if let Some(endpoint) = snapshot.endpoints.get(name) {
            let index = match version {
                Some(v) => variant_index(endpoint, v)?,
                None => endpoint.choice.pick(fastrand::f64()),
            };
            let variant = &endpoint.variants[index];
            return Ok(Resolved {
                version: (index + 1).to_string(),
                variant: Some(variant.name.clone()),
                loaded: variant.loaded.clone(),
            });
        }
        if snapshot.creating.contains(name) {
            return Err(ServeError::NotReady(name.to_owned()));
        }
        drop(snapshot);
        let record = self
            .model_record(name)
            .await?
            .ok_or_else(|| not_found(name))?;
        let (artifact, _) = self.artifact_of(&record, version).await?;
        let loaded = self.load_artifact(&artifact).await?;
        Ok(Resolved {
            version: artifact.version.to_string(),
            variant: None,
            loaded,
        })
    }

    /// Metadata of a name and version, without loading anything.
    pub async fn describe(
        &self,
        name: &str,
        version: Option<&str>,
    ) -> Result<Described, ServeError> {
        let snapshot = self.app.serving.snapshot();
        let (artifact, versions, ready, endpoint, version) =
            if let Some(e) = snapshot.endpoints.get(name) {
                let index = version.map_or(Ok(0), |v| variant_index(e, v))?;
                let versions = (1..=e.variants.len()).map(|n| n.to_string()).collect();
                (
                    e.variants[index].loaded.artifact.clone(),
                    versions,
                    true,
                    true,
                    (index + 1).to_string(),
                )
            } else if snapshot.creating.contains(name) {
                return Err(ServeError::NotReady(name.to_owned()));
            } else {
                drop(snapshot);
                let record = self
                    .model_record(name)
                    .await?
                    .ok_or_else(|| not_found(name))?;
                let (artifact, versions) = self.artifact_of(&record, version).await?;
                let ready = self.find_loaded(&artifact).is_some();
                let version = artifact.version.to_string();
                (
                    artifact,
                    versions.iter().map(u64::to_string).collect(),
                    ready,
                    false,
                    version,
                )
            };
        let store = self.app.store.clone();
        let manifest = tokio::task::spawn_blocking(move || {
            store
                .open_version(&artifact.name, VersionSelector::Exact(artifact.version))
                .map(|a| a.manifest().clone())
        })
        .await
        .map_err(|e| ServeError::Internal(e.to_string()))?
        .map_err(|e| ServeError::Internal(e.to_string()))?;
        let signature = Signature::from_manifest(&manifest.signature)
            .map_err(|e| ServeError::Internal(e.to_string()))?;
        Ok(Described {
            versions,
            version,
            runtime: manifest.runtime,
            signature,
            ready,
            endpoint,
        })
    }

    /// Whether a name (and version) is loaded, warmed and able to answer.
    pub async fn ready(&self, name: &str, version: Option<&str>) -> Result<bool, ServeError> {
        match self.describe(name, version).await {
            Ok(d) => Ok(d.ready),
            Err(ServeError::NotReady(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Every endpoint and Model with its state, as Triton's repository index reports it:
    /// `(name, version, state, reason)`.
    pub async fn index(&self) -> Result<Vec<(String, String, &'static str, String)>, ServeError> {
        let snapshot = self.app.serving.snapshot();
        let mut out = Vec::new();
        for (name, e) in &snapshot.endpoints {
            for (i, v) in e.variants.iter().enumerate() {
                out.push((
                    name.clone(),
                    (i + 1).to_string(),
                    "READY",
                    format!("endpoint variant {}", v.name),
                ));
            }
        }
        for name in &snapshot.creating {
            out.push((
                name.clone(),
                String::new(),
                "LOADING",
                "endpoint is being created".into(),
            ));
        }
        for name in &snapshot.failed {
            out.push((
                name.clone(),
                String::new(),
                "UNAVAILABLE",
                "endpoint creation failed".into(),
            ));
        }
        drop(snapshot);
        for record in self
            .app
            .db
            .list::<ModelRecord>(Table::Models)
            .await
            .map_err(internal)?
        {
            let a = &record.pier_artifact;
            let (state, reason) = if self.find_loaded(a).is_some() {
                ("READY", format!("artifact {a}"))
            } else {
                (
                    "UNAVAILABLE",
                    format!("artifact {a}: not loaded; loads on first use or RepositoryModelLoad"),
                )
            };
            out.push((record.model_name, a.version.to_string(), state, reason));
        }
        out.sort();
        Ok(out)
    }

    /// Triton's load: an endpoint must be in service; a Model's pinned version is loaded,
    /// warmed and kept loaded.
    pub async fn load(&self, name: &str) -> Result<(), ServeError> {
        self.resolve(name, None).await.map(|_| ())
    }

    /// Triton's unload: releases a Model loaded on demand. Endpoints are managed by the
    /// control plane, and a Model an endpoint serves stays loaded: both are refused.
    pub async fn unload(&self, name: &str) -> Result<(), ServeError> {
        let snapshot = self.app.serving.snapshot();
        if snapshot.endpoints.contains_key(name) || snapshot.creating.contains(name) {
            return Err(ServeError::Conflict(format!(
                "{name:?} is an endpoint, managed by the control plane: use DeleteEndpoint to stop serving it"
            )));
        }
        drop(snapshot);
        let record = self
            .model_record(name)
            .await?
            .ok_or_else(|| not_found(name))?;
        let artifact_name = record.pier_artifact.name.clone();
        self.pinned
            .lock()
            .expect("pin lock")
            .retain(|a, _| a.name != artifact_name);
        let snapshot = self.app.serving.snapshot();
        if let Some((e, v)) = snapshot
            .endpoints
            .values()
            .flat_map(|e| e.variants.iter().map(move |v| (e, v)))
            .find(|(_, v)| v.loaded.artifact == record.pier_artifact)
        {
            return Err(ServeError::Conflict(format!(
                "model {name:?} stays loaded: endpoint {:?} serves it (variant {:?})",
                e.name, v.name
            )));
        }
        Ok(())
    }
}
