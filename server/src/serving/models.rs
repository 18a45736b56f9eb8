//! Loaded model versions, shared: a version used by several variants or endpoints is loaded
//! once, and released when the last snapshot and in-flight request holding it let go.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use pier_model_store::{ModelStore, VersionSelector};
use pier_runtimes::{DataType, LoadOptions, Model, Tensor, TensorData};

use crate::records::ArtifactRef;

/// A model version loaded and warmed.
#[derive(Debug)]
pub struct LoadedModel {
    /// Which artifact.
    pub artifact: ArtifactRef,
    /// The runnable model.
    pub model: Arc<dyn Model>,
}

/// Loaded versions by artifact, held weakly: the cache never keeps a version alive.
#[derive(Debug, Default)]
pub struct ModelCache {
    loaded: Mutex<HashMap<ArtifactRef, Weak<LoadedModel>>>,
}

impl ModelCache {
    /// The loaded version of `artifact`, loading and warming it if no one holds it. Blocks:
    /// call from `spawn_blocking` or a compute thread.
    pub fn get_or_load(
        &self,
        store: &ModelStore,
        artifact: &ArtifactRef,
    ) -> Result<Arc<LoadedModel>, String> {
        if let Some(m) = self
            .loaded
            .lock()
            .expect("cache lock")
            .get(artifact)
            .and_then(Weak::upgrade)
        {
            return Ok(m);
        }
        let opened = store
            .open_version(&artifact.name, VersionSelector::Exact(artifact.version))
            .map_err(|e| e.to_string())?;
        let model =
            pier_runtimes::load(&opened, &LoadOptions::default()).map_err(|e| e.to_string())?;
        warm_up(model.as_ref())
            .map_err(|e| format!("model {artifact} failed its warm-up request: {e}"))?;
        let loaded = Arc::new(LoadedModel {
            artifact: artifact.clone(),
            model,
        });
        let mut map = self.loaded.lock().expect("cache lock");
        map.retain(|_, w| w.strong_count() > 0);
        map.insert(artifact.clone(), Arc::downgrade(&loaded));
        Ok(loaded)
    }

    /// Number of versions loaded right now.
    pub fn live(&self) -> usize {
        self.loaded
            .lock()
            .expect("cache lock")
            .values()
            .filter(|w| w.strong_count() > 0)
            .count()
    }
}

/// Runs one request of zeros (batch 1) through the model, so a version that cannot predict
/// never takes traffic.
pub fn warm_up(model: &dyn Model) -> Result<(), String> {
    let inputs = model
        .signature()
        .inputs
        .iter()
        .map(|spec| {
            let shape: Vec<usize> = spec
                .shape
                .iter()
                .map(|&d| if d < 0 { 1 } else { d as usize })
                .collect();
            let n: usize = shape.iter().product();
            let data = match spec.dtype {
                DataType::Bool => TensorData::Bool(vec![false; n]),
                DataType::Uint8 => TensorData::Uint8(vec![0; n]),
                DataType::Int8 => TensorData::Int8(vec![0; n]),
                DataType::Int16 => TensorData::Int16(vec![0; n]),
                DataType::Int32 => TensorData::Int32(vec![0; n]),
                DataType::Int64 => TensorData::Int64(vec![0; n]),
                DataType::Fp32 => TensorData::Fp32(vec![0.0; n]),
                DataType::Fp64 => TensorData::Fp64(vec![0.0; n]),
                DataType::Bytes => TensorData::Bytes(vec![Vec::new(); n]),
            };
            Tensor::new(shape, data).map_err(|e| e.to_string())
        })
        .collect::<Result<Vec<_>, _>>()?;
    model.predict(inputs).map(|_| ()).map_err(|e| e.to_string())
}
