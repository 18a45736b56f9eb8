//! Authentication end to end: a real Pier with `--credentials`, requests signed by a small
//! SigV4 signer written here from AWS's description (independent of the server's verifier),
//! bearer tokens over HTTP and gRPC, and each refusal's AWS error code.

use crate::common;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use common::TestServer;
use hmac::{Hmac, Mac};
use pier_proto::inference as pb;
use pier_proto::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const CREDENTIALS: &str = "\
[ops]
aws_access_key_id = AKIAOPS
aws_secret_access_key = ops/secret+key
pier_token = ops-token

[app]
aws_access_key_id = AKIAAPP
aws_secret_access_key = app-secret
pier_planes = invoke
pier_token = app-token
";

async fn server(metrics_auth: bool) -> (tempfile::TempDir, TestServer) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::config(dir.path());
    config.grpc_addr = Some("127.0.0.1:0".parse().unwrap());
    config.auth.credentials = Some(Arc::new(CREDENTIALS.parse().unwrap()));
    config.auth.metrics_auth = metrics_auth;
    let server = TestServer::start_with(config).await;
    pier_server::control::demo::install(&server.server.as_ref().unwrap().state)
        .await
        .unwrap();
    (dir, server)
}

fn hmac(key: &[u8], data: &str) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(data.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

fn amz_date(secs: u64) -> String {
    // Days to a civil date (proleptic Gregorian), for the test's own clock.
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Signs like botocore: host, x-amz-date and the given headers; the payload hash of `body`.
/// Returns the headers to send (Authorization included).
fn sign(
    key: &str,
    secret: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    at: u64,
) -> Vec<(String, String)> {
    let date = amz_date(at);
    let mut all: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
        .collect();
    all.push(("host".into(), host.into()));
    all.push(("x-amz-date".into(), date.clone()));
    all.sort();
    let canonical_headers: String = all.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    let signed: Vec<&str> = all.iter().map(|(k, _)| k.as_str()).collect();
    let signed = signed.join(";");
    let canonical = format!(
        "POST\n{path}\n\n{canonical_headers}\n{signed}\n{}",
        hex::encode(Sha256::digest(body))
    );
    let scope = format!("{}/us-west-2/sagemaker/aws4_request", &date[..8]);
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{date}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    let k = hmac(format!("AWS4{secret}").as_bytes(), &date[..8]);
    let k = hmac(&k, "us-west-2");
    let k = hmac(&k, "sagemaker");
    let k = hmac(&k, "aws4_request");
    let signature = hex::encode(hmac(&k, &to_sign));
    all.retain(|(k, _)| k != "host");
    all.push((
        "authorization".into(),
        format!("AWS4-HMAC-SHA256 Credential={key}/{scope}, SignedHeaders={signed}, Signature={signature}"),
    ));
    all
}

/// A control-plane call signed with `key`/`secret` at `at`; `tamper` changes the body after
/// signing. Returns (status, body).
async fn admin_call(
    s: &TestServer,
    key: &str,
    secret: &str,
    at: u64,
    body: &str,
    tamper: bool,
) -> (u16, Value, Option<String>) {
    let host = s.admin.to_string();
    let headers = [
        ("content-type", "application/x-amz-json-1.1"),
        ("x-amz-target", "SageMaker.ListEndpoints"),
    ];
    let signed = sign(key, secret, &host, "/", &headers, body.as_bytes(), at);
    let mut req = s.client.post(format!("http://{host}/"));
    for (k, v) in &signed {
        req = req.header(k, v);
    }
    let sent = if tamper {
        format!("{body} ")
    } else {
        body.to_owned()
    };
    let r = req.body(sent).send().await.unwrap();
    let status = r.status().as_u16();
    let kind = r
        .headers()
        .get("x-amzn-errortype")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, r.json().await.unwrap(), kind)
}

#[tokio::test]
async fn control_plane_signatures() {
    let (_dir, s) = server(false).await;
    let (status, body, _) = admin_call(&s, "AKIAOPS", "ops/secret+key", now(), "{}", false).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["Endpoints"][0]["EndpointName"], "demo");

    let cases = [
        (
            "AKIAOPS",
            "wrong",
            now(),
            false,
            "InvalidSignatureException",
            "The request signature we calculated does not match",
        ),
        (
            "AKIAOPS",
            "ops/secret+key",
            now() - 3600,
            false,
            "InvalidSignatureException",
            "Signature expired",
        ),
        (
            "AKIAOPS",
            "ops/secret+key",
            now() + 3600,
            false,
            "InvalidSignatureException",
            "Signature not yet current",
        ),
        (
            "AKIAOPS",
            "ops/secret+key",
            now(),
            true,
            "InvalidSignatureException",
            "The request signature we calculated",
        ),
        (
            "AKIANOBODY",
            "x",
            now(),
            false,
            "UnrecognizedClientException",
            "security token",
        ),
        (
            "AKIAAPP",
            "app-secret",
            now(),
            false,
            "AccessDeniedException",
            "not authorized",
        ),
    ];
    for (key, secret, at, tamper, code, message) in cases {
        let (status, body, kind) = admin_call(&s, key, secret, at, "{}", tamper).await;
        assert_eq!(status, 403, "{key} {secret}: {body}");
        assert_eq!(body["__type"], code, "{body}");
        assert_eq!(kind.as_deref(), Some(code));
        assert!(
            body["message"].as_str().unwrap().contains(message),
            "{body}"
        );
    }

    // No signature at all.
    let (status, body) = s.api("ListEndpoints", json!({})).await;
    assert_eq!(
        (status, body["__type"].as_str()),
        (403, Some("MissingAuthenticationToken"))
    );
    // Bearer tokens: ops may administer, app may not; an unknown token is unrecognized.
    for (token, want) in [("ops-token", 200), ("app-token", 403), ("nope", 403)] {
        let r = s
            .client
            .post(format!("http://{}/", s.admin))
            .header("x-amz-target", "SageMaker.ListEndpoints")
            .header("content-type", "application/x-amz-json-1.1")
            .bearer_auth(token)
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), want, "{token}");
    }
    s.stop().await;
}

#[tokio::test]
async fn data_plane_signatures_tokens_and_open_paths() {
    let (_dir, s) = server(false).await;
    let host = s.http.to_string();
    let path = "/endpoints/demo/invocations";
    let body = common::IRIS_CSV.as_bytes();
    let invoke = |key: &'static str, secret: &'static str, tamper: bool| {
        let headers = [("content-type", "text/csv"), ("accept", "application/json")];
        let signed = sign(key, secret, &host, path, &headers, body, now());
        let mut req = s.client.post(format!("http://{host}{path}"));
        for (k, v) in &signed {
            req = req.header(k, v);
        }
        let sent = if tamper {
            b"1,2,3,4\n".to_vec()
        } else {
            body.to_vec()
        };
        req.body(sent).send()
    };
    // Both keys may invoke.
    for key in [("AKIAOPS", "ops/secret+key"), ("AKIAAPP", "app-secret")] {
        let r = invoke(key.0, key.1, false).await.unwrap();
        assert_eq!(
            r.status().as_u16(),
            200,
            "{key:?}: {}",
            r.text().await.unwrap()
        );
    }
    let r = invoke("AKIAAPP", "app-secret", true).await.unwrap();
    assert_eq!(r.status().as_u16(), 403);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["ErrorCode"], "InvalidSignatureException", "{e}");
    let r = invoke("AKIAAPP", "bad", false).await.unwrap();
    assert_eq!(r.status().as_u16(), 403);

    // No credentials: refused in the runtime shape; v2 in its own shape.
    let r = s.invoke("demo", "text/csv", common::IRIS_CSV, &[]).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["ErrorCode"], "MissingAuthenticationToken");
    let r = s
        .client
        .get(format!("http://{host}/v2/models/demo"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    let e: Value = r.json().await.unwrap();
    assert!(
        e["error"]
            .as_str()
            .unwrap()
            .contains("Authentication Token"),
        "{e}"
    );
    // Bearer tokens.
    let r = s
        .invoke(
            "demo",
            "text/csv",
            common::IRIS_CSV,
            &[("authorization", "Bearer app-token")],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = s
        .invoke(
            "demo",
            "text/csv",
            common::IRIS_CSV,
            &[("authorization", "Bearer guess")],
        )
        .await;
    assert_eq!(
        (r.status, r.json()["ErrorCode"].as_str()),
        (403, Some("UnrecognizedClientException"))
    );
    // Health and scraping stay open.
    for open in ["/ping", "/v2/health/live", "/v2/health/ready", "/metrics"] {
        let r = s
            .client
            .get(format!("http://{host}{open}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "{open}");
    }
    s.stop().await;
}

#[tokio::test]
async fn metrics_auth_and_grpc_tokens() {
    let (_dir, s) = server(true).await;
    let metrics = format!("http://{}/metrics", s.http);
    let r = s.client.get(&metrics).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 403);
    let r = s
        .client
        .get(&metrics)
        .bearer_auth("app-token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);

    let addr = s.server.as_ref().unwrap().grpc_addr.unwrap();
    let mut client = GrpcInferenceServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    // Health is open.
    client.server_live(pb::ServerLiveRequest {}).await.unwrap();
    let metadata = |token: Option<&str>| {
        let mut request = tonic::Request::new(pb::ModelMetadataRequest {
            name: "demo".into(),
            version: String::new(),
        });
        if let Some(token) = token {
            request
                .metadata_mut()
                .insert("authorization", format!("Bearer {token}").parse().unwrap());
        }
        request
    };
    let e = client.model_metadata(metadata(None)).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e}");
    let e = client
        .model_metadata(metadata(Some("nope")))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e}");
    let ok = client
        .model_metadata(metadata(Some("app-token")))
        .await
        .unwrap();
    assert_eq!(ok.into_inner().name, "demo");
    s.stop().await;
}

#[tokio::test]
async fn admin_beyond_loopback_needs_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::config(dir.path());
    config.admin_addr = "0.0.0.0:0".parse().unwrap();
    let e = pier_server::start(config.clone()).await.unwrap_err();
    assert!(
        matches!(e, pier_server::StartError::InsecureAdmin(_)),
        "{e}"
    );
    assert!(e.to_string().contains("--insecure-admin"), "{e}");
    config.auth.insecure_admin = true;
    let running = pier_server::start(config).await.unwrap();
    running.shutdown().await;
}

/// Where authentication sits in the data plane's stack: after the early body limit (an
/// over-limit body is a 413 before any signature is looked at), before decompression (a
/// gzip body is signed as sent), and around every route, the fallback included.
#[tokio::test]
async fn signatures_sit_between_the_body_limit_and_decompression() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::config(dir.path());
    config.auth.credentials = Some(Arc::new(CREDENTIALS.parse().unwrap()));
    config.limits.max_body_bytes = 4096;
    let s = TestServer::start_with(config).await;
    pier_server::control::demo::install(&s.server.as_ref().unwrap().state)
        .await
        .unwrap();
    let host = s.http.to_string();
    let path = "/endpoints/demo/invocations";
    let post = |headers: Vec<(String, String)>, body: Vec<u8>| {
        let mut req = s.client.post(format!("http://{host}{path}"));
        for (k, v) in &headers {
            req = req.header(k, v);
        }
        req.body(body).send()
    };

    // A gzip body signed over its compressed bytes: checked as sent, then decoded. Both
    // requests go to one variant (the demo splits traffic between two models).
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(common::IRIS_CSV.as_bytes()).unwrap();
    let gz = gz.finish().unwrap();
    let headers = [
        ("content-type", "text/csv"),
        ("content-encoding", "gzip"),
        ("accept", "application/json"),
        ("x-amzn-sagemaker-target-variant", "mlp"),
    ];
    let signed = sign("AKIAAPP", "app-secret", &host, path, &headers, &gz, now());
    let r = post(signed, gz.clone()).await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let zipped: Value = r.json().await.unwrap();
    let plain = s
        .invoke(
            "demo",
            "text/csv",
            common::IRIS_CSV,
            &[
                ("authorization", "Bearer app-token"),
                ("accept", "application/json"),
                ("x-amzn-sagemaker-target-variant", "mlp"),
            ],
        )
        .await;
    assert_eq!(plain.status, 200, "{}", plain.body);
    assert_eq!(zipped, plain.json());
    // Signed over the decoded bytes instead: not what was sent.
    let headers = [("content-type", "text/csv"), ("content-encoding", "gzip")];
    let signed = sign(
        "AKIAAPP",
        "app-secret",
        &host,
        path,
        &headers,
        common::IRIS_CSV.as_bytes(),
        now(),
    );
    let r = post(signed, gz).await.unwrap();
    assert_eq!(r.status().as_u16(), 403);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["ErrorCode"], "InvalidSignatureException", "{e}");

    // Over the limit with any signature at all: 413, the body never read.
    let big = vec![b'1'; 8192];
    let signed = sign("AKIAAPP", "wrong", &host, path, &[], &big, now());
    let r = post(signed, big).await.unwrap();
    assert_eq!(r.status().as_u16(), 413, "{}", r.text().await.unwrap());

    // Routes nobody defined are behind the check too.
    let r = s
        .client
        .get(format!("http://{host}/no/such/route"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["ErrorCode"], "MissingAuthenticationToken", "{e}");
    s.stop().await;
}
