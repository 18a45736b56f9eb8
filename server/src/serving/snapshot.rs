//! The serving snapshot: an immutable table endpoint → variants, swapped whole.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::models::LoadedModel;
use super::weights::WeightedChoice;
use crate::error::ServeError;

/// One production variant in service.
#[derive(Clone, Debug)]
pub struct Variant {
    /// Variant name.
    pub name: String,
    /// The Model (control-plane name) it serves.
    pub model_name: String,
    /// Its loaded version.
    pub loaded: Arc<LoadedModel>,
}

/// An endpoint in service: its variants and their weights.
#[derive(Debug)]
pub struct EndpointServing {
    /// Endpoint name.
    pub name: String,
    /// The config in service.
    pub config_name: String,
    /// Variants, in config order.
    pub variants: Vec<Variant>,
    /// Weights, validated.
    pub choice: WeightedChoice,
}

impl EndpointServing {
    /// The variant named by `target`, or one chosen by weight with the sample `u` in `[0, 1)`.
    pub fn route(&self, target: Option<&str>, u: f64) -> Result<&Variant, ServeError> {
        match target {
            Some(t) => self.variants.iter().find(|v| v.name == t).ok_or_else(|| {
                ServeError::VariantNotFound {
                    endpoint: self.name.clone(),
                    variant: t.to_owned(),
                    available: self
                        .variants
                        .iter()
                        .map(|v| v.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                }
            }),
            None => Ok(&self.variants[self.choice.pick(u)]),
        }
    }

    /// A copy with other weights (same loaded models).
    pub fn with_weights(&self, choice: WeightedChoice) -> Self {
        Self {
            name: self.name.clone(),
            config_name: self.config_name.clone(),
            variants: self.variants.clone(),
            choice,
        }
    }
}

/// Everything the data plane needs to route a request, loaded once per request.
#[derive(Debug, Default, Clone)]
pub struct ServingSnapshot {
    /// Endpoints in service.
    pub endpoints: HashMap<String, Arc<EndpointServing>>,
    /// Endpoints being created: known, not yet serving (answered with 429).
    pub creating: HashSet<String>,
    /// Endpoints whose creation failed: known, never serving until updated or deleted.
    pub failed: HashSet<String>,
}

impl ServingSnapshot {
    /// The endpoint to serve `name`.
    pub fn endpoint(&self, name: &str) -> Result<&Arc<EndpointServing>, ServeError> {
        self.endpoints.get(name).ok_or_else(|| {
            if self.creating.contains(name) {
                ServeError::NotReady(name.to_owned())
            } else {
                ServeError::EndpointNotFound(name.to_owned())
            }
        })
    }

    /// True when the endpoint `name` is in service.
    pub fn endpoint_ready(&self, name: &str) -> bool {
        self.endpoints.contains_key(name)
    }

    /// Every endpoint name known here: in service, being created or failed.
    pub fn names(&self) -> HashSet<String> {
        self.endpoints
            .keys()
            .chain(&self.creating)
            .chain(&self.failed)
            .cloned()
            .collect()
    }
}
