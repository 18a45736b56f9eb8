//! HTTP/1.1 transport (SageMaker invocations, v2 REST JSON and binary): one keep-alive
//! connection per client, made with hyper's connection API (no pool on the request path),
//! `TCP_NODELAY` set. The request's headers and body are built once; each request clones them
//! (the body is a reference-counted [`Bytes`]).

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::recorder::ErrorKind;
use crate::runner::Transport;

/// One prepared HTTP request, sent again and again.
#[derive(Debug, Clone)]
pub struct HttpTransport {
    /// `HOST:PORT` to connect to.
    pub authority: String,
    /// Path and query.
    pub uri: Uri,
    /// Headers (Host included).
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
    /// Text a successful answer must contain.
    pub expect: Option<Vec<u8>>,
}

/// Opens one HTTP/1.1 connection to `authority`; hyper's connection task runs on the runtime.
pub async fn connect(authority: &str) -> Result<SendRequest<Full<Bytes>>, ErrorKind> {
    let stream = TcpStream::connect(authority).await.map_err(|e| {
        tracing::debug!(%authority, error = %e, "connect failed");
        ErrorKind::Connect
    })?;
    let _ = stream.set_nodelay(true);
    let (sender, connection) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|_| ErrorKind::Connect)?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::trace!(error = %e, "connection ended");
        }
    });
    Ok(sender)
}

impl Transport for HttpTransport {
    type Conn = SendRequest<Full<Bytes>>;

    async fn connect(&self) -> Result<Self::Conn, ErrorKind> {
        connect(&self.authority).await
    }

    async fn call(&self, conn: &mut Self::Conn) -> Result<(), ErrorKind> {
        conn.ready().await.map_err(|_| ErrorKind::Io)?;
        let mut request = Request::new(Full::new(self.body.clone()));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = self.uri.clone();
        *request.headers_mut() = self.headers.clone();
        let response = conn.send_request(request).await.map_err(|e| {
            tracing::debug!(error = %e, "request failed");
            ErrorKind::Io
        })?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|_| ErrorKind::Io)?
            .to_bytes();
        if !status.is_success() {
            tracing::debug!(%status, body = %String::from_utf8_lossy(&body[..body.len().min(200)]), "error answer");
            return Err(ErrorKind::HttpStatus(status.as_u16()));
        }
        if let Some(expect) = &self.expect
            && !body.windows(expect.len()).any(|w| w == expect.as_slice())
        {
            return Err(ErrorKind::BodyMismatch);
        }
        Ok(())
    }
}

/// `GET {authority}{path}` on a fresh connection: status and body (for model metadata).
pub async fn get(authority: &str, path: &str) -> Result<(u16, Bytes), String> {
    let mut conn = connect(authority)
        .await
        .map_err(|_| format!("cannot connect to {authority}"))?;
    let request = Request::get(path)
        .header(http::header::HOST, authority)
        .body(Full::new(Bytes::new()))
        .map_err(|e| e.to_string())?;
    let response = conn
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, body))
}
