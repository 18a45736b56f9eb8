//! HTTP/1.1 transport (SageMaker invocations, v2 REST JSON and binary): one keep-alive
//! connection per client, made with hyper's connection API (no pool on the request path),
//! `TCP_NODELAY` set. The request's headers and body are built once; each request clones them
//! (the body is a reference-counted [`Bytes`]). With several servers (replicas), each new
//! connection goes to the next one, round-robin, with that server's `Host`.

use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Uri, header};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::recorder::ErrorKind;
use crate::runner::Transport;

/// One prepared HTTP request, sent again and again.
#[derive(Debug)]
pub struct HttpTransport {
    /// Per server (`HOST:PORT` to connect to), the headers sent to it (its `Host` included).
    pub servers: Vec<(String, HeaderMap)>,
    /// Path and query.
    pub uri: Uri,
    /// Body.
    pub body: Bytes,
    /// Text a successful answer must contain.
    pub expect: Option<Vec<u8>>,
    /// The server the next connection goes to.
    pub next: AtomicUsize,
}

impl HttpTransport {
    /// One request to every authority in `authorities`, with `headers` (whose `Host` is set
    /// per server).
    pub fn new(
        authorities: &[String],
        uri: Uri,
        headers: HeaderMap,
        body: Bytes,
        expect: Option<Vec<u8>>,
    ) -> Result<Self, String> {
        let servers = authorities
            .iter()
            .map(|a| {
                let mut h = headers.clone();
                let host = HeaderValue::from_str(a).map_err(|e| format!("--url {a}: {e}"))?;
                h.insert(header::HOST, host);
                Ok((a.clone(), h))
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Self {
            servers,
            uri,
            body,
            expect,
            next: AtomicUsize::new(0),
        })
    }
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
    /// The connection and the index of the server it goes to.
    type Conn = (SendRequest<Full<Bytes>>, usize);

    async fn connect(&self) -> Result<Self::Conn, ErrorKind> {
        let server = self.next.fetch_add(1, Ordering::Relaxed) % self.servers.len();
        Ok((connect(&self.servers[server].0).await?, server))
    }

    async fn call(&self, (conn, server): &mut Self::Conn) -> Result<(), ErrorKind> {
        conn.ready().await.map_err(|_| ErrorKind::Io)?;
        let mut request = Request::new(Full::new(self.body.clone()));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = self.uri.clone();
        *request.headers_mut() = self.servers[*server].1.clone();
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
