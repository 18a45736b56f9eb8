//! TLS on every listener: a CA and certificates made here with rcgen, a rustls client
//! speaking HTTP/1.1 to the data and control planes and tonic speaking gRPC over TLS, and
//! mTLS refusing a client without a certificate.

use crate::common;

use std::path::Path;
use std::sync::Arc;

use hyper_util::rt::TokioIo;
use pier_proto::inference as pb;
use pier_proto::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

struct Pki {
    ca: String,
    client_cert: String,
    client_key: String,
}

/// Writes ca.pem, server.pem, server.key under `dir`; returns the CA and a client pair.
fn make_pki(dir: &Path) -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "Pier test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let leaf = |names: Vec<String>, usage| {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(names).unwrap();
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &ca_cert, &ca_key).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let (server_cert, server_key) = leaf(
        vec!["localhost".into(), "127.0.0.1".into()],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let (client_cert, client_key) =
        leaf(vec!["client".into()], ExtendedKeyUsagePurpose::ClientAuth);
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
    std::fs::write(dir.join("server.pem"), server_cert).unwrap();
    std::fs::write(dir.join("server.key"), server_key).unwrap();
    Pki {
        ca: ca_cert.pem(),
        client_cert,
        client_key,
    }
}

fn client_config(pki: &Pki, with_cert: bool, alpn: &[u8]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(pki.ca.as_bytes()).unwrap())
        .unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    let mut config = if with_cert {
        builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(pki.client_cert.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(pki.client_key.as_bytes()).unwrap(),
            )
            .unwrap()
    } else {
        builder.with_no_client_auth()
    };
    config.alpn_protocols = vec![alpn.to_vec()];
    Arc::new(config)
}

/// One HTTP/1.1 request over TLS; the raw response, or the error.
async fn https(
    config: Arc<rustls::ClientConfig>,
    addr: std::net::SocketAddr,
    request: &str,
) -> std::io::Result<String> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = ServerName::try_from("localhost").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await?;
    tls.write_all(request.as_bytes()).await?;
    let mut out = Vec::new();
    tls.read_to_end(&mut out).await?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

async fn start(dir: &Path, mtls: bool) -> common::TestServer {
    let mut config = common::config(dir);
    config.grpc_addr = Some("127.0.0.1:0".parse().unwrap());
    config.tls = Some(pier_server::config::TlsConfig {
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
        client_ca: mtls.then(|| dir.join("ca.pem")),
    });
    config.auth.credentials = Some(Arc::new("[t]\npier_token = tls-token\n".parse().unwrap()));
    let server = common::TestServer::start_with(config).await;
    pier_server::control::demo::install(&server.server.as_ref().unwrap().state)
        .await
        .unwrap();
    server
}

const PING: &str = "GET /ping HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";

#[tokio::test]
async fn every_listener_speaks_tls() {
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(dir.path());
    let s = start(dir.path(), false).await;
    let config = client_config(&pki, false, b"http/1.1");
    let answer = https(config.clone(), s.http, PING).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let admin = "POST / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
                 X-Amz-Target: SageMaker.ListEndpoints\r\nAuthorization: Bearer tls-token\r\n\
                 Content-Type: application/x-amz-json-1.1\r\nContent-Length: 2\r\n\r\n{}";
    let answer = https(config, s.admin, admin).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"demo\""), "{answer}");
    // Cleartext on a TLS port gets no HTTP answer.
    let plain = s.client.get(format!("http://{}/ping", s.http)).send().await;
    assert!(plain.is_err(), "{plain:?}");

    // gRPC over TLS with a bearer token.
    let grpc = s.server.as_ref().unwrap().grpc_addr.unwrap();
    let tls = client_config(&pki, false, b"h2");
    let connector = tower::service_fn(move |_uri: http::Uri| {
        let tls = tls.clone();
        async move {
            let tcp = tokio::net::TcpStream::connect(grpc).await?;
            let name = ServerName::try_from("localhost").unwrap();
            let stream = tokio_rustls::TlsConnector::from(tls)
                .connect(name, tcp)
                .await?;
            Ok::<_, std::io::Error>(TokioIo::new(stream))
        }
    });
    let channel = tonic::transport::Endpoint::from_static("http://localhost")
        .connect_with_connector(connector)
        .await
        .unwrap();
    let mut client = GrpcInferenceServiceClient::new(channel);
    let mut request = tonic::Request::new(pb::ModelMetadataRequest {
        name: "demo".into(),
        version: String::new(),
    });
    request
        .metadata_mut()
        .insert("authorization", "Bearer tls-token".parse().unwrap());
    let meta = client.model_metadata(request).await.unwrap().into_inner();
    assert_eq!(meta.name, "demo");
    s.stop().await;
}

#[tokio::test]
async fn mutual_tls_needs_a_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(dir.path());
    let s = start(dir.path(), true).await;
    let answer = https(client_config(&pki, true, b"http/1.1"), s.http, PING)
        .await
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let refused = https(client_config(&pki, false, b"http/1.1"), s.http, PING).await;
    assert!(
        refused.as_ref().map_or(true, |a| !a.contains("200")),
        "{refused:?}"
    );
    s.stop().await;
}

#[tokio::test]
async fn bad_tls_files_are_named_at_start() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("server.pem"), "not a certificate").unwrap();
    std::fs::write(dir.path().join("server.key"), "nor a key").unwrap();
    let mut config = common::config(dir.path());
    config.tls = Some(pier_server::config::TlsConfig {
        cert: dir.path().join("server.pem"),
        key: dir.path().join("server.key"),
        client_ca: None,
    });
    let e = pier_server::start(config).await.unwrap_err();
    assert!(e.to_string().contains("server.pem"), "{e}");
}

#[tokio::test]
async fn a_silent_client_is_cut_off_at_the_handshake_timeout() {
    let dir = tempfile::tempdir().unwrap();
    make_pki(dir.path());
    let mut config = common::config(dir.path());
    config.grpc_addr = Some("127.0.0.1:0".parse().unwrap());
    config.listener.header_read_timeout = std::time::Duration::from_millis(300);
    config.tls = Some(pier_server::config::TlsConfig {
        cert: dir.path().join("server.pem"),
        key: dir.path().join("server.key"),
        client_ca: None,
    });
    let s = common::TestServer::start_with(config).await;
    let grpc = s.server.as_ref().unwrap().grpc_addr.unwrap();
    for addr in [s.http, s.admin, grpc] {
        let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let started = std::time::Instant::now();
        let mut buf = [0u8; 16];
        let read = tokio::time::timeout(std::time::Duration::from_secs(5), tcp.read(&mut buf))
            .await
            .expect("the server closes a silent connection");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
        assert!(
            started.elapsed() >= std::time::Duration::from_millis(250),
            "{addr}"
        );
    }
    s.stop().await;
}
