//! What v2 reports about a name and version without inferring: metadata and ModelConfig,
//! readiness, statistics, and Triton's repository operations (index, load, unload). Names
//! resolve as the invocation core resolves them ([`crate::serving::invoke`]): an endpoint
//! in service, else a control-plane Model from the serving snapshot.
//!
//! Concurrency: one snapshot load per call; the artifact's manifest is read on a blocking
//! thread; the on-demand map's mutex is held for map operations only. Nothing here reads
//! the database.

use pier_model_store::VersionSelector;
use pier_runtimes::Signature;

use crate::error::ServeError;
use crate::serving::invoke::{model_version, not_found, repository_version, variant_index};
use crate::serving::{ModelStats, Target};
use crate::state::DataPlane;

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
    /// Most rows one request may carry (the server's row limit).
    pub max_batch_size: usize,
    /// True for an endpoint.
    pub endpoint: bool,
    /// The Triton repository model, when the name is one (its config is reported).
    pub repository: Option<std::sync::Arc<crate::repository::RepositoryModel>>,
}

/// One row of Triton's repository index: name, version, state, reason.
pub type IndexEntry = (String, String, &'static str, String);

impl DataPlane {
    /// Metadata of a name and version, without loading anything.
    pub async fn describe(
        &self,
        name: &str,
        version: Option<&str>,
    ) -> Result<Described, ServeError> {
        let snapshot = self.serving.snapshot();
        let (artifact, versions, ready, endpoint, version) =
            if let Some(e) = snapshot.endpoints.get(name) {
                let index = version.map_or(Ok(0), |v| variant_index(e, v))?;
                crate::serving::invoke::refuse_multi_model(e, index)?;
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
            } else if let Some(r) = snapshot.repository.get(name) {
                let (v, loaded) = repository_version(r, version)?;
                return Ok(Described {
                    versions: r.versions.keys().map(u64::to_string).collect(),
                    version: v.to_string(),
                    runtime: "onnx".into(),
                    signature: loaded.model.signature().clone(),
                    ready: true,
                    max_batch_size: r.config.max_batch_size,
                    endpoint: false,
                    repository: Some(r.clone()),
                });
            } else {
                let model = snapshot.models.get(name).ok_or_else(|| not_found(name))?;
                let artifact = model_version(name, model, version)?;
                let ready = self.serving.find_loaded(&artifact).is_some();
                let version = artifact.version.to_string();
                let versions = model.versions.iter().map(u64::to_string).collect();
                (artifact, versions, ready, false, version)
            };
        drop(snapshot);
        let store = self.store.clone();
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
            max_batch_size: self.config.limits.max_request_rows,
            endpoint,
            repository: None,
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

    /// Statistics of `name` (every version it has) or, for an empty name, of every model
    /// used so far.
    pub async fn statistics(
        &self,
        name: &str,
        version: Option<&str>,
    ) -> Result<Vec<ModelStats>, ServeError> {
        if name.is_empty() {
            return Ok(self.serving.stats.all());
        }
        let described = self.describe(name, version).await?;
        let versions = match version {
            Some(_) => vec![described.version.clone()],
            None => described.versions.clone(),
        };
        Ok(versions
            .iter()
            .map(|v| self.serving.stats.get(name, v))
            .collect())
    }

    /// Every endpoint and Model with its state, as Triton's repository index reports it.
    pub fn index(&self) -> Vec<IndexEntry> {
        let snapshot = self.serving.snapshot();
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
        for (name, r) in &snapshot.repository {
            for v in r.versions.keys() {
                out.push((
                    name.clone(),
                    v.to_string(),
                    "READY",
                    "model repository".into(),
                ));
            }
        }
        for (name, model) in &snapshot.models {
            let a = &model.artifact;
            let (state, reason) = if self.serving.find_loaded(a).is_some() {
                ("READY", format!("artifact {a}"))
            } else {
                (
                    "UNAVAILABLE",
                    format!("artifact {a}: not loaded; loads on first use or RepositoryModelLoad"),
                )
            };
            out.push((name.clone(), a.version.to_string(), state, reason));
        }
        out.sort();
        out
    }

    /// Triton's load: an endpoint must be in service; a Model's pinned version is loaded,
    /// warmed and kept loaded. A failed load answers with its reason.
    pub async fn load(&self, name: &str) -> Result<(), ServeError> {
        self.route(&Target::V2 {
            name,
            version: None,
        })
        .await
        .map(|_| ())
    }

    /// Triton's unload: releases a Model loaded on demand. Endpoints are managed by the
    /// control plane, and a Model an endpoint serves stays loaded: both are refused.
    pub fn unload(&self, name: &str) -> Result<(), ServeError> {
        let snapshot = self.serving.snapshot();
        if snapshot.repository.contains_key(name) {
            return Err(ServeError::Conflict(format!(
                "{name:?} is a model of the repository given to --model-repository; it serves while Pier runs"
            )));
        }
        if snapshot.endpoints.contains_key(name) || snapshot.creating.contains(name) {
            return Err(ServeError::Conflict(format!(
                "{name:?} is an endpoint, managed by the control plane: use DeleteEndpoint to stop serving it"
            )));
        }
        let model = snapshot.models.get(name).ok_or_else(|| not_found(name))?;
        let artifact_name = &model.artifact.name;
        self.serving
            .on_demand
            .lock()
            .expect("on-demand lock")
            .retain(|a, _| &a.name != artifact_name);
        if let Some((e, v)) = snapshot
            .endpoints
            .values()
            .flat_map(|e| e.variants.iter().map(move |v| (e, v)))
            .find(|(_, v)| v.loaded.artifact == model.artifact)
        {
            return Err(ServeError::Conflict(format!(
                "model {name:?} stays loaded: endpoint {:?} serves it (variant {:?})",
                e.name, v.name
            )));
        }
        Ok(())
    }
}
