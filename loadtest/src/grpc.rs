//! gRPC transport (v2 `ModelInfer`): tonic channels (HTTP/2), one per
//! `grpc_clients_per_channel` clients (default 8), made when the run starts and handed out
//! round-robin, so many clients share a connection as tritonclient's channel cache does. The
//! request message is encoded once; a pass-through codec sends those bytes as they are and
//! hands back the answer's bytes undecoded, so the client spends no time on protobuf.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes};
use http::uri::PathAndQuery;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tonic::transport::{Channel, Endpoint};

use crate::recorder::ErrorKind;
use crate::runner::Transport;

const MODEL_INFER: &str = "/inference.GRPCInferenceService/ModelInfer";

/// The prepared `ModelInfer` call.
#[derive(Debug)]
pub struct GrpcTransport {
    channels: Vec<Channel>,
    next: AtomicUsize,
    request: Bytes,
    metadata: MetadataMap,
    expect: Option<Vec<u8>>,
}

impl GrpcTransport {
    /// `channels` lazily connected channels, spread round-robin over `urls` (replicas),
    /// sending `request` (an encoded `ModelInferRequest`) with `headers` as metadata.
    pub fn new(
        urls: &[&str],
        channels: usize,
        timeout: Duration,
        request: Bytes,
        headers: &[(String, String)],
        expect: Option<Vec<u8>>,
    ) -> Result<Self, String> {
        let endpoints = urls
            .iter()
            .map(|url| endpoint(url, timeout))
            .collect::<Result<Vec<_>, String>>()?;
        if endpoints.is_empty() {
            return Err("--url: no server given".into());
        }
        let mut metadata = MetadataMap::new();
        for (k, v) in headers {
            let key = MetadataKey::from_bytes(k.to_ascii_lowercase().as_bytes())
                .map_err(|e| format!("--header {k}: {e}"))?;
            let value =
                MetadataValue::try_from(v.as_str()).map_err(|e| format!("--header {k}: {e}"))?;
            metadata.insert(key, value);
        }
        Ok(Self {
            channels: (0..channels.max(endpoints.len()))
                .map(|i| endpoints[i % endpoints.len()].connect_lazy())
                .collect(),
            next: AtomicUsize::new(0),
            request,
            metadata,
            expect,
        })
    }
}

/// A tonic endpoint for `url` with `TCP_NODELAY` and a connect timeout.
pub fn endpoint(url: &str, timeout: Duration) -> Result<Endpoint, String> {
    Ok(Endpoint::from_shared(url.to_owned())
        .map_err(|e| format!("--url {url}: {e}"))?
        .tcp_nodelay(true)
        .connect_timeout(timeout))
}

impl Transport for GrpcTransport {
    type Conn = tonic::client::Grpc<Channel>;

    async fn connect(&self) -> Result<Self::Conn, ErrorKind> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.channels.len();
        Ok(tonic::client::Grpc::new(self.channels[i].clone()))
    }

    async fn call(&self, conn: &mut Self::Conn) -> Result<(), ErrorKind> {
        conn.ready().await.map_err(|e| {
            tracing::debug!(error = %e, "gRPC channel not ready");
            ErrorKind::Connect
        })?;
        let mut request = tonic::Request::new(self.request.clone());
        *request.metadata_mut() = self.metadata.clone();
        let path = PathAndQuery::from_static(MODEL_INFER);
        match conn.unary(request, path, RawCodec).await {
            Ok(response) => {
                let body = response.into_inner();
                if let Some(expect) = &self.expect
                    && !body.windows(expect.len()).any(|w| w == expect.as_slice())
                {
                    return Err(ErrorKind::BodyMismatch);
                }
                Ok(())
            }
            Err(status) => {
                tracing::debug!(code = ?status.code(), message = status.message(), "gRPC error");
                Err(ErrorKind::Grpc(status.code()))
            }
        }
    }
}

/// Sends pre-encoded message bytes; returns the answer's message bytes.
#[derive(Debug, Clone, Copy, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }
    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = tonic::Status;
    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, tonic::Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}
