//! `pier serve --demo`: bundled iris models behind an endpoint `demo` whose two variants
//! split traffic 70/30 — a logistic regression and an MLP, A/B tested.
//!
//! Idempotent: on a data folder that already has the demo, nothing is changed.

use pier_model_store::{ArtifactFile, ManifestDraft, ManifestSignature};

use super::{configs, endpoints, models};
use crate::db::Table;
use crate::error::ApiError;
use crate::records::{ContainerDefinition, EndpointRecord, ProductionVariant};
use crate::state::AppState;

/// Name of the demo endpoint.
pub const DEMO_ENDPOINT: &str = "demo";

struct Bundled {
    model: &'static str,
    variant: &'static str,
    weight: f64,
    onnx: &'static [u8],
    signature: &'static str,
}

const BUNDLED: [Bundled; 2] = [
    Bundled {
        model: "demo-iris-logreg",
        variant: "logreg",
        weight: 70.0,
        onnx: include_bytes!("../../../fixtures/onnx/iris-logreg/model.onnx"),
        signature: include_str!("../../../fixtures/onnx/iris-logreg/signature.json"),
    },
    Bundled {
        model: "demo-iris-mlp",
        variant: "mlp",
        weight: 30.0,
        onnx: include_bytes!("../../../fixtures/onnx/iris-mlp/model.onnx"),
        signature: include_str!("../../../fixtures/onnx/iris-mlp/signature.json"),
    },
];

/// Publishes the bundled models and creates the `demo` endpoint, unless it exists. Returns
/// once the endpoint is in service (or failed).
pub async fn install(app: &AppState) -> Result<(), ApiError> {
    if app
        .db
        .get::<EndpointRecord>(Table::Endpoints, DEMO_ENDPOINT)
        .await?
        .is_some()
    {
        return Ok(());
    }
    let mut variants = Vec::new();
    for b in &BUNDLED {
        if app
            .db
            .get::<crate::records::ModelRecord>(Table::Models, b.model)
            .await?
            .is_none()
        {
            let signature: ManifestSignature =
                serde_json::from_str(b.signature).map_err(ApiError::internal)?;
            let draft = ManifestDraft {
                runtime: "onnx".into(),
                signature,
                provenance: [(
                    "source".to_string(),
                    serde_json::json!("bundled demo model"),
                )]
                .into(),
                ..Default::default()
            };
            let store = app.store.clone();
            let (name, bytes) = (b.model, b.onnx);
            let manifest = tokio::task::spawn_blocking(move || {
                store.publish(
                    name,
                    vec![ArtifactFile::from_bytes("model.onnx", bytes.to_vec())],
                    draft,
                )
            })
            .await
            .map_err(ApiError::internal)?
            .map_err(ApiError::internal)?;
            let request = models::CreateModel::new(
                b.model,
                ContainerDefinition {
                    image: "onnx".into(),
                    model_data_url: Some(format!("pier://{}/{}", manifest.name, manifest.version)),
                    ..Default::default()
                },
            );
            models::create(app, request).await?;
        }
        variants.push(ProductionVariant {
            variant_name: b.variant.into(),
            model_name: b.model.into(),
            initial_variant_weight: Some(b.weight),
            initial_instance_count: Some(1),
            ..Default::default()
        });
    }
    let config_name = "demo-config";
    if app
        .db
        .get::<crate::records::EndpointConfigRecord>(Table::EndpointConfigs, config_name)
        .await?
        .is_none()
    {
        configs::create(
            app,
            configs::CreateEndpointConfig::new(config_name, variants),
        )
        .await?;
    }
    endpoints::create(
        app,
        endpoints::CreateEndpoint::new(DEMO_ENDPOINT, config_name),
    )
    .await?;
    // Wait for the background load so the caller can print "ready".
    loop {
        let record: Option<EndpointRecord> = app.db.get(Table::Endpoints, DEMO_ENDPOINT).await?;
        match record {
            Some(r) if r.endpoint_status == crate::records::EndpointStatus::Creating => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Some(r) if r.endpoint_status == crate::records::EndpointStatus::Failed => {
                return Err(ApiError::validation(format!(
                    "the demo endpoint failed to load: {}",
                    r.failure_reason.unwrap_or_default()
                )));
            }
            _ => return Ok(()),
        }
    }
}
