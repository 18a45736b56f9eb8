//! The serving snapshot: an immutable table endpoint → variants and control-plane Model →
//! pinned artifact, swapped whole. Everything the data plane routes by is here, so a request
//! never reads the database.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use http::HeaderValue;

use super::models::LoadedModel;
use super::weights::WeightedChoice;
use crate::error::ServeError;
use crate::records::ArtifactRef;

/// A control-plane Model as the data plane sees it (v2 requests may name one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelTarget {
    /// The artifact version the Model pins (its default version).
    pub artifact: ArtifactRef,
    /// Every store version of that artifact when the table was last published, ascending.
    pub versions: Vec<u64>,
}

/// One production variant in service.
#[derive(Clone, Debug)]
pub struct Variant {
    /// Variant name (shared with every answer that names it).
    pub name: VariantName,
    /// The Model (control-plane name) it serves.
    pub model_name: String,
    /// Its loaded version (for a multi-model variant: a placeholder that carries the
    /// variant's labels; the model that answers is picked per request by `TargetModel`).
    pub loaded: Arc<LoadedModel>,
    /// Set when the variant's Model is a multi-model one.
    pub multi: Option<Arc<super::MultiModelSet>>,
}

/// A variant's name, shared with every answer that names it, with the header value that
/// names it there (`X-Amzn-Invoked-Production-Variant`), built once when the endpoint goes
/// into service: building it per answer copied the name into a new buffer each time.
#[derive(Clone, Debug)]
pub struct VariantName {
    name: Arc<str>,
    /// `None` for a name a header cannot carry (SageMaker's names always can).
    header: Option<HeaderValue>,
}

impl VariantName {
    /// The header value naming the variant, when the name can be one.
    pub fn header(&self) -> Option<&HeaderValue> {
        self.header.as_ref()
    }
}

impl From<&str> for VariantName {
    fn from(name: &str) -> Self {
        Self {
            name: name.into(),
            header: HeaderValue::from_str(name).ok(),
        }
    }
}

impl Deref for VariantName {
    type Target = str;
    fn deref(&self) -> &str {
        &self.name
    }
}

impl fmt::Display for VariantName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
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
    /// Shadow variants: each gets a copy of its share of the requests.
    pub shadows: Vec<Shadow>,
    /// Data capture, when on.
    pub capture: Option<Arc<crate::capture::Capture>>,
}

/// A shadow variant in service.
#[derive(Clone, Debug)]
pub struct Shadow {
    /// The variant.
    pub variant: Variant,
    /// Share of requests copied to it, 0 to 1: its weight over the production variants'
    /// total weight, as SageMaker's shadow tests sample.
    pub share: f64,
}

impl EndpointServing {
    /// The variant named by `target`, or one chosen by weight with the sample `u` in `[0, 1)`.
    pub fn route(&self, target: Option<&str>, u: f64) -> Result<&Variant, ServeError> {
        self.pick(target, u).map(|i| &self.variants[i])
    }

    /// The position of the variant [`route`](Self::route) answers with.
    pub fn pick(&self, target: Option<&str>, u: f64) -> Result<usize, ServeError> {
        match target {
            Some(t) => self
                .variants
                .iter()
                .position(|v| &*v.name == t)
                .ok_or_else(|| ServeError::VariantNotFound {
                    endpoint: self.name.clone(),
                    variant: t.to_owned(),
                    available: self
                        .variants
                        .iter()
                        .map(|v| &*v.name)
                        .collect::<Vec<_>>()
                        .join(", "),
                }),
            None => Ok(self.choice.pick(u)),
        }
    }

    /// A copy whose variant at `position` serves `loaded` instead (same weights).
    pub fn with_variant(&self, position: usize, loaded: Arc<LoadedModel>) -> Self {
        let mut variants = self.variants.clone();
        variants[position].loaded = loaded;
        Self {
            name: self.name.clone(),
            config_name: self.config_name.clone(),
            variants,
            choice: self.choice.clone(),
            shadows: self.shadows.clone(),
            capture: self.capture.clone(),
        }
    }

    /// A copy with other weights (same loaded models).
    pub fn with_weights(&self, choice: WeightedChoice) -> Self {
        Self {
            name: self.name.clone(),
            config_name: self.config_name.clone(),
            variants: self.variants.clone(),
            choice,
            shadows: self.shadows.clone(),
            capture: self.capture.clone(),
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
    /// Control-plane Models by name, for v2 requests that name a Model.
    pub models: HashMap<String, Arc<ModelTarget>>,
    /// Models of the Triton repository (`--model-repository`), by name.
    pub repository: HashMap<String, Arc<crate::repository::RepositoryModel>>,
    /// Bumped by every published change; a control-plane change built outside the control
    /// lock checks it under the lock before it stores (see `Serving::generation`).
    pub generation: u64,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_variant_name_carries_the_header_that_names_it() {
        let name = VariantName::from("AllTraffic-2");
        assert_eq!(&*name, "AllTraffic-2");
        assert_eq!(name.to_string(), "AllTraffic-2");
        assert_eq!(name.header().unwrap(), "AllTraffic-2");
        // Clones share one buffer: an answer's header costs no copy of the name.
        let copy = name.clone();
        assert_eq!(
            copy.header().unwrap().as_bytes().as_ptr(),
            name.header().unwrap().as_bytes().as_ptr()
        );
        assert!(VariantName::from("line\nbreak").header().is_none());
    }
}
