//! The zero-work gRPC limit: a tonic server of `inference.GRPCInferenceService` with Pier's
//! gRPC listener settings that answers every `ModelInfer` with one fixed response, doing no
//! work between the decoded request and the answer. Pier's gRPC data plane is measured
//! against it (`benches/peers/run.sh`, server `limit-grpc`): what Pier loses to it is what
//! its own path costs (layers, routing, tensors, the compute pool, the model).
//!
//! Settings as `pier serve`'s gRPC listener (`server/src/server.rs`, `server/src/listener.rs`):
//! a multi-thread tokio runtime with default workers (one per core), tonic's server with at
//! most 256 concurrent streams a connection, a 64 KiB header list, HTTP/2 keep-alive pings
//! every 30 s, TCP_NODELAY on every accepted connection, mimalloc (`pier_alloc`) as the global
//! allocator. The request is decoded whole by tonic (as any server must), then dropped.
//!
//! usage: `grpc_limit ADDR [RESPONSE.pb]` — prints `listening on ADDR` (the bound address;
//! port 0 picks one) and serves until killed. RESPONSE.pb is a serialized
//! `ModelInferResponse` (`benches/peers/run.sh` saves Pier's own answer to the same request,
//! so both send the same message); without it the answer is one FP32 `[1, 2]` output.
//! Health RPCs answer live / ready; the metadata, config, statistics and repository RPCs
//! answer UNIMPLEMENTED (a load generator must bring its own request, e.g.
//! `pier loadtest --input-file`).
//!
//! Concurrency: tokio's worker threads; no shared state but the immutable response.

use std::time::Duration;

use pier_proto::inference as pb;
use pier_proto::inference::grpc_inference_service_server::{
    GrpcInferenceService, GrpcInferenceServiceServer,
};
use prost::Message;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status, Streaming};

/// The allocator `pier` runs with (`cli/src/main.rs`), so the two differ only in their work.
#[global_allocator]
static ALLOCATOR: pier_alloc::Allocator = pier_alloc::Allocator;

/// Answers with clones of one response.
struct Limit {
    response: pb::ModelInferResponse,
}

type InferStream = std::pin::Pin<
    Box<dyn futures::Stream<Item = Result<pb::ModelStreamInferResponse, Status>> + Send>,
>;

fn none<T>(what: &str) -> Result<Response<T>, Status> {
    Err(Status::unimplemented(format!(
        "{what}: the zero-work limit serves ModelInfer only"
    )))
}

#[tonic::async_trait]
impl GrpcInferenceService for Limit {
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
        Ok(Response::new(pb::ServerReadyResponse { ready: true }))
    }

    async fn model_ready(
        &self,
        _: Request<pb::ModelReadyRequest>,
    ) -> Result<Response<pb::ModelReadyResponse>, Status> {
        Ok(Response::new(pb::ModelReadyResponse { ready: true }))
    }

    async fn server_metadata(
        &self,
        _: Request<pb::ServerMetadataRequest>,
    ) -> Result<Response<pb::ServerMetadataResponse>, Status> {
        Ok(Response::new(pb::ServerMetadataResponse {
            name: "grpc_limit".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            extensions: Vec::new(),
        }))
    }

    async fn model_metadata(
        &self,
        _: Request<pb::ModelMetadataRequest>,
    ) -> Result<Response<pb::ModelMetadataResponse>, Status> {
        none("ModelMetadata")
    }

    async fn model_infer(
        &self,
        _request: Request<pb::ModelInferRequest>,
    ) -> Result<Response<pb::ModelInferResponse>, Status> {
        Ok(Response::new(self.response.clone()))
    }

    type ModelStreamInferStream = InferStream;

    async fn model_stream_infer(
        &self,
        _: Request<Streaming<pb::ModelInferRequest>>,
    ) -> Result<Response<InferStream>, Status> {
        none("ModelStreamInfer")
    }

    async fn model_config(
        &self,
        _: Request<pb::ModelConfigRequest>,
    ) -> Result<Response<pb::ModelConfigResponse>, Status> {
        none("ModelConfig")
    }

    async fn model_statistics(
        &self,
        _: Request<pb::ModelStatisticsRequest>,
    ) -> Result<Response<pb::ModelStatisticsResponse>, Status> {
        none("ModelStatistics")
    }

    async fn repository_index(
        &self,
        _: Request<pb::RepositoryIndexRequest>,
    ) -> Result<Response<pb::RepositoryIndexResponse>, Status> {
        none("RepositoryIndex")
    }

    async fn repository_model_load(
        &self,
        _: Request<pb::RepositoryModelLoadRequest>,
    ) -> Result<Response<pb::RepositoryModelLoadResponse>, Status> {
        none("RepositoryModelLoad")
    }

    async fn repository_model_unload(
        &self,
        _: Request<pb::RepositoryModelUnloadRequest>,
    ) -> Result<Response<pb::RepositoryModelUnloadResponse>, Status> {
        none("RepositoryModelUnload")
    }
}

/// The answer without a RESPONSE.pb: `y` FP32 `[1, 2]`, raw contents.
fn default_response() -> pb::ModelInferResponse {
    pb::ModelInferResponse {
        model_name: "limit".to_owned(),
        model_version: "1".to_owned(),
        outputs: vec![pb::model_infer_response::InferOutputTensor {
            name: "y".to_owned(),
            datatype: "FP32".to_owned(),
            shape: vec![1, 2],
            ..Default::default()
        }],
        raw_output_contents: vec![[0.5f32, 0.5].iter().flat_map(|v| v.to_le_bytes()).collect()],
        ..Default::default()
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:0".into());
    let response = match args.next() {
        Some(path) => {
            let bytes = std::fs::read(&path).map_err(|e| format!("{path}: {e}"))?;
            pb::ModelInferResponse::decode(bytes.as_slice())
                .map_err(|e| format!("{path} is not a ModelInferResponse: {e}"))?
        }
        None => default_response(),
    };

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&addr).await?;
        println!("listening on {}", listener.local_addr()?);
        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
        tonic::transport::Server::builder()
            .max_concurrent_streams(Some(256))
            .http2_max_header_list_size(Some(64 * 1024))
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .http2_keepalive_timeout(Some(Duration::from_secs(30)))
            .add_service(GrpcInferenceServiceServer::new(Limit { response }))
            .serve_with_incoming(incoming)
            .await?;
        Ok(())
    })
}
