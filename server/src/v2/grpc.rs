//! Open Inference Protocol v2 over gRPC: `inference.GRPCInferenceService` with typed
//! `contents` and `raw_input_contents` in, `raw_output_contents` out (as Triton answers),
//! and Triton's ModelConfig, ModelStatistics and repository RPCs. Errors become statuses
//! through `From<ServeError> for tonic::Status` in `crate::error`.
//!
//! Concurrency: tonic runs each call as a task; they share the [`DataPlane`] and infer
//! through the invocation core ([`DataPlane::invoke`]), which decodes the tensors where it
//! decides (on the task when small, else in the compute-pool job that predicts). Message
//! size limits both ways equal the HTTP body limit
//! ([`crate::config::Limits::max_body_bytes`]).

use futures::StreamExt;
use pier_proto::inference as pb;
use pier_proto::inference::grpc_inference_service_server::{
    GrpcInferenceService, GrpcInferenceServiceServer,
};
use tonic::codec::CompressionEncoding;
use tonic::{Request, Response, Status, Streaming};

use prost::Message;

use super::{EXTENSIONS, NamedTensor, SERVER_NAME, model_config, tensors};
use crate::error::ServeError;
use crate::layers::Deadline;
use crate::serving::invoke::Request as Call;
use crate::serving::{Decoded, LoadedModel, Target};
use crate::state::DataPlane;

/// The gRPC service over shared v2 state.
#[derive(Debug, Clone)]
pub struct Service {
    v2: DataPlane,
}

/// The tonic service, with message limits set to `max_message_bytes` both ways. Requests
/// compressed with gzip or deflate (tritonclient's `compression_algorithm`) are accepted;
/// the limit bounds the decompressed message (a compression bomb is RESOURCE_EXHAUSTED).
/// Responses are not compressed: on the loopback and LAN links inference runs on, the CPU
/// costs more than the bytes.
pub fn service(data: DataPlane, max_message_bytes: usize) -> GrpcInferenceServiceServer<Service> {
    GrpcInferenceServiceServer::new(Service { v2: data })
        .accept_compressed(CompressionEncoding::Gzip)
        .accept_compressed(CompressionEncoding::Deflate)
        .max_decoding_message_size(max_message_bytes)
        .max_encoding_message_size(max_message_bytes)
}

/// Requests of one ModelStreamInfer stream predicted at once; responses keep request order.
const STREAM_WINDOW: usize = 64;

type InferStream = std::pin::Pin<
    Box<dyn futures::Stream<Item = Result<pb::ModelStreamInferResponse, Status>> + Send>,
>;

fn version(v: &str) -> Option<&str> {
    (!v.is_empty()).then_some(v)
}

fn string_param(s: impl Into<String>) -> pb::InferParameter {
    pb::InferParameter {
        parameter_choice: Some(pb::infer_parameter::ParameterChoice::StringParam(s.into())),
    }
}

/// A ModelInfer request's inputs and their data, taken out of the message to decode once
/// the model is routed.
struct Inputs {
    inputs: Vec<pb::model_infer_request::InferInputTensor>,
    raw: Vec<Vec<u8>>,
}

impl Inputs {
    fn take(req: &mut pb::ModelInferRequest) -> Self {
        Self {
            inputs: std::mem::take(&mut req.inputs),
            raw: std::mem::take(&mut req.raw_input_contents),
        }
    }

    /// Bytes of tensor data the request carries (where the core decodes them depends on it).
    fn len(&self) -> usize {
        let raw: usize = self.raw.iter().map(Vec::len).sum();
        let typed: usize = self
            .inputs
            .iter()
            .filter_map(|i| i.contents.as_ref())
            .map(Message::encoded_len)
            .sum();
        raw + typed
    }

    /// Decodes the inputs.
    fn decode(self) -> Result<Vec<NamedTensor>, ServeError> {
        let Self { inputs, raw } = self;
        if !raw.is_empty() && raw.len() != inputs.len() {
            return Err(ServeError::Validation(format!(
                "raw_input_contents has {} entries but there are {} inputs; give one per input, in order",
                raw.len(),
                inputs.len()
            )));
        }
        inputs
            .iter()
            .enumerate()
            .map(|(i, input)| {
                let name = &input.name;
                let dtype = tensors::datatype(name, &input.datatype)?;
                let tensor = match (raw.get(i), &input.contents) {
                    (Some(_), Some(_)) => {
                        return Err(ServeError::Validation(format!(
                            "input {name:?} has both contents and raw_input_contents; use one"
                        )));
                    }
                    (Some(bytes), None) => tensors::from_raw(name, dtype, &input.shape, bytes)?,
                    (None, Some(c)) => tensors::from_contents(name, dtype, &input.shape, c)?,
                    (None, None) => {
                        return Err(ServeError::Validation(format!(
                            "input {name:?} has no data (neither contents nor raw_input_contents)"
                        )));
                    }
                };
                Ok(NamedTensor {
                    name: name.clone(),
                    tensor,
                })
            })
            .collect()
    }
}

fn tensor_meta(
    specs: &[pier_runtimes::TensorSpec],
) -> Vec<pb::model_metadata_response::TensorMetadata> {
    specs
        .iter()
        .map(|s| pb::model_metadata_response::TensorMetadata {
            name: s.name.clone(),
            datatype: s.dtype.as_str().to_owned(),
            shape: s.shape.clone(),
        })
        .collect()
}

impl Service {
    /// One inference, for ModelInfer and each message of ModelStreamInfer.
    async fn infer_one(
        &self,
        mut req: pb::ModelInferRequest,
        deadline: Deadline,
    ) -> Result<pb::ModelInferResponse, Status> {
        let inputs = Inputs::take(&mut req);
        let requested: Option<Vec<String>> =
            (!req.outputs.is_empty()).then(|| req.outputs.iter().map(|o| o.name.clone()).collect());
        let call = Call {
            body_len: inputs.len(),
            decode: move |_: &LoadedModel| {
                Ok(Decoded {
                    inputs: inputs.decode()?,
                    outputs: requested,
                    extra: (),
                })
            },
        };
        let target = Target::V2 {
            name: &req.model_name,
            version: version(&req.model_version),
        };
        let done = self.v2.invoke(target, deadline.0, Ok(call)).await?;
        let mut parameters = std::collections::HashMap::from([(
            "pier_artifact".to_owned(),
            string_param(
                done.loaded
                    .artifact_id
                    .to_str()
                    .unwrap_or_default()
                    .to_owned(),
            ),
        )]);
        if let Some(v) = &done.variant {
            parameters.insert("pier_variant".to_owned(), string_param(v.to_string()));
        }
        let outputs = done
            .outputs
            .iter()
            .map(|o| pb::model_infer_response::InferOutputTensor {
                name: o.name.clone(),
                datatype: o.tensor.dtype().as_str().to_owned(),
                shape: tensors::wire_shape(&o.tensor),
                ..Default::default()
            })
            .collect();
        let raw_output_contents = done
            .outputs
            .iter()
            .map(|o| tensors::to_raw(&o.tensor))
            .collect();
        Ok(pb::ModelInferResponse {
            model_name: req.model_name,
            model_version: done.version.into_owned(),
            id: req.id,
            parameters,
            outputs,
            raw_output_contents,
        })
    }
}

#[tonic::async_trait]
impl GrpcInferenceService for Service {
    async fn server_live(
        &self,
        _: Request<pb::ServerLiveRequest>,
    ) -> Result<Response<pb::ServerLiveResponse>, Status> {
        Ok(Response::new(pb::ServerLiveResponse { live: true }))
    }

    async fn server_ready(
        &self,
        _: Request<pb::ServerReadyRequest>,
    ) -> Result<Response<pb::ServerReadyResponse>, Status> {
        let ready = self.v2.server_ready();
        Ok(Response::new(pb::ServerReadyResponse { ready }))
    }

    async fn model_ready(
        &self,
        r: Request<pb::ModelReadyRequest>,
    ) -> Result<Response<pb::ModelReadyResponse>, Status> {
        let r = r.into_inner();
        // An unknown model is not ready (as REST answers), not an error.
        let ready = match self.v2.ready(&r.name, version(&r.version)).await {
            Ok(ready) => ready,
            Err(ServeError::ModelNotFound(_) | ServeError::EndpointNotFound(_)) => false,
            Err(e) => return Err(e.into()),
        };
        Ok(Response::new(pb::ModelReadyResponse { ready }))
    }

    async fn server_metadata(
        &self,
        _: Request<pb::ServerMetadataRequest>,
    ) -> Result<Response<pb::ServerMetadataResponse>, Status> {
        Ok(Response::new(pb::ServerMetadataResponse {
            name: SERVER_NAME.to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            extensions: EXTENSIONS.iter().map(|e| (*e).to_owned()).collect(),
        }))
    }

    async fn model_metadata(
        &self,
        r: Request<pb::ModelMetadataRequest>,
    ) -> Result<Response<pb::ModelMetadataResponse>, Status> {
        let r = r.into_inner();
        let d = self.v2.describe(&r.name, version(&r.version)).await?;
        Ok(Response::new(pb::ModelMetadataResponse {
            name: r.name,
            versions: d.versions.clone(),
            platform: model_config::platform(&d.runtime),
            inputs: tensor_meta(&d.signature.inputs),
            outputs: tensor_meta(&d.signature.outputs),
        }))
    }

    async fn model_infer(
        &self,
        r: Request<pb::ModelInferRequest>,
    ) -> Result<Response<pb::ModelInferResponse>, Status> {
        let deadline = Deadline::of(r.extensions());
        Ok(Response::new(
            self.infer_one(r.into_inner(), deadline).await?,
        ))
    }

    type ModelStreamInferStream = InferStream;

    async fn model_stream_infer(
        &self,
        r: Request<Streaming<pb::ModelInferRequest>>,
    ) -> Result<Response<InferStream>, Status> {
        let service = self.clone();
        // Each message gets the whole request timeout from its own start (the layer's
        // deadline is the stream's opening).
        let deadline = Deadline(None);
        let responses = r
            .into_inner()
            .map(move |message| {
                let service = service.clone();
                async move {
                    // A message that does not decode ends the stream with its status; a
                    // request that fails is answered in its place and the stream goes on.
                    let req = message?;
                    let echo = pb::ModelInferResponse {
                        model_name: req.model_name.clone(),
                        model_version: req.model_version.clone(),
                        id: req.id.clone(),
                        ..Default::default()
                    };
                    Ok(match service.infer_one(req, deadline).await {
                        Ok(response) => pb::ModelStreamInferResponse {
                            error_message: String::new(),
                            infer_response: Some(response),
                        },
                        Err(status) => pb::ModelStreamInferResponse {
                            error_message: status.message().to_owned(),
                            infer_response: Some(echo),
                        },
                    })
                }
            })
            .buffered(STREAM_WINDOW);
        Ok(Response::new(Box::pin(responses)))
    }

    async fn model_config(
        &self,
        r: Request<pb::ModelConfigRequest>,
    ) -> Result<Response<pb::ModelConfigResponse>, Status> {
        let r = r.into_inner();
        let d = self.v2.describe(&r.name, version(&r.version)).await?;
        Ok(Response::new(pb::ModelConfigResponse {
            config: Some(model_config::model_config(&r.name, &d)),
        }))
    }

    async fn model_statistics(
        &self,
        r: Request<pb::ModelStatisticsRequest>,
    ) -> Result<Response<pb::ModelStatisticsResponse>, Status> {
        let r = r.into_inner();
        let stats = self.v2.statistics(&r.name, version(&r.version)).await?;
        Ok(Response::new(pb::ModelStatisticsResponse {
            model_stats: stats.iter().map(model_config::statistics).collect(),
        }))
    }

    async fn repository_index(
        &self,
        r: Request<pb::RepositoryIndexRequest>,
    ) -> Result<Response<pb::RepositoryIndexResponse>, Status> {
        let only_ready = r.into_inner().ready;
        let models = self
            .v2
            .index()
            .into_iter()
            .filter(|(_, _, state, _)| !only_ready || *state == "READY")
            .map(
                |(name, version, state, reason)| pb::repository_index_response::ModelIndex {
                    name,
                    version,
                    state: state.to_owned(),
                    reason,
                },
            )
            .collect();
        Ok(Response::new(pb::RepositoryIndexResponse { models }))
    }

    async fn repository_model_load(
        &self,
        r: Request<pb::RepositoryModelLoadRequest>,
    ) -> Result<Response<pb::RepositoryModelLoadResponse>, Status> {
        self.v2.load(&r.into_inner().model_name).await?;
        Ok(Response::new(pb::RepositoryModelLoadResponse {}))
    }

    async fn repository_model_unload(
        &self,
        r: Request<pb::RepositoryModelUnloadRequest>,
    ) -> Result<Response<pb::RepositoryModelUnloadResponse>, Status> {
        self.v2.unload(&r.into_inner().model_name)?;
        Ok(Response::new(pb::RepositoryModelUnloadResponse {}))
    }
}
