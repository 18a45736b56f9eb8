//! The cost of authentication per request (`pier serve --credentials`):
//!
//! - `auth_sigv4_verify`: SigV4 verification of a boto3-shaped `InvokeEndpoint` (host,
//!   x-amz-date, content-type, accept signed; the body hashed) for a 32-byte CSV body,
//!   64 KiB and 1 MiB;
//! - `auth_bearer_lookup`: a bearer-token lookup;
//! - `auth_layer`: the whole layer the data plane puts on each route (`AuthLayer`), around a
//!   stand-in handler that reads the body as the real one does, against that handler alone
//!   (`none`, the no-auth baseline of the same run), for a bearer token and a SigV4
//!   signature with the 32-byte body. The difference is what authentication adds to a
//!   request; each iteration builds its request (same for all three).
//!
//! The signature is made here, as botocore makes it, once per run (the date must be within
//! the 15-minute skew).
//!
//! `cargo bench --workspace --bench auth`

use std::convert::Infallible;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use hmac::{Hmac, Mac};
use pier_server::auth::{AuthLayer, Authenticator, Credentials, Plane, sigv4};
use sha2::{Digest, Sha256};
use tower::{Layer, Service, ServiceExt};

const LIMIT: usize = 6 << 20;

const CREDENTIALS: &str = "[app]\naws_access_key_id = AKIAAPP\naws_secret_access_key = app-secret\npier_token = app-token\n";

fn hmac(key: &[u8], data: &str) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    mac.update(data.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// The headers botocore sends for `body`, Authorization included.
fn signed_headers(body: &[u8], date: &str) -> http::HeaderMap {
    let headers = [
        ("accept", "application/json"),
        ("content-type", "text/csv"),
        ("host", "127.0.0.1:8080"),
        ("x-amz-date", date),
    ];
    let canonical_headers: String = headers.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    let signed = "accept;content-type;host;x-amz-date";
    let canonical = format!(
        "POST\n/endpoints/demo/invocations\n\n{canonical_headers}\n{signed}\n{}",
        hex::encode(Sha256::digest(body))
    );
    let scope = format!("{}/us-west-2/sagemaker/aws4_request", &date[..8]);
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{date}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    let mut key = hmac(b"AWS4app-secret", &date[..8]);
    for part in ["us-west-2", "sagemaker", "aws4_request"] {
        key = hmac(&key, part);
    }
    let signature = hex::encode(hmac(&key, &to_sign));
    let mut map = http::HeaderMap::new();
    for (k, v) in headers {
        map.insert(k, v.parse().expect("valid header"));
    }
    let authorization = format!(
        "AWS4-HMAC-SHA256 Credential=AKIAAPP/{scope}, SignedHeaders={signed}, Signature={signature}"
    );
    map.insert(
        "authorization",
        authorization.parse().expect("valid header"),
    );
    map.insert(
        "user-agent",
        "Boto3/1.34 md/Botocore#1.34 ua/2.0 os/linux lang/python#3.11"
            .parse()
            .expect("valid header"),
    );
    map
}

fn bench(c: &mut Criterion) {
    let credentials: Credentials = CREDENTIALS.parse().expect("valid credentials");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let date = sigv4::format_amz_date(now);
    let mut group = c.benchmark_group("auth_sigv4_verify");
    for (label, body) in [
        ("32B", b"5.1,3.5,1.4,0.2\n6.7,3.0,5.2,2.3\n".to_vec()),
        ("64KiB", vec![b'1'; 64 << 10]),
        ("1MiB", vec![b'1'; 1 << 20]),
    ] {
        let headers = signed_headers(&body, &date);
        // The body is hashed in each iteration, as the server hashes it per request.
        let verify = |body: &[u8]| {
            let request = sigv4::Request {
                method: "POST",
                path: "/endpoints/demo/invocations",
                query: "",
                authority: None,
                headers: &headers,
                body_sha256: sigv4::sha256(body),
            };
            sigv4::verify(&credentials, &request, now).is_ok()
        };
        assert!(verify(&body));
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(label), &body, |b, body| {
            b.iter(|| verify(black_box(body)))
        });
    }
    group.finish();
    c.bench_function("auth_bearer_lookup", |b| {
        b.iter(|| credentials.token(black_box("app-token")).is_some())
    });
    layer(c, credentials, &date);
}

/// A stand-in for the invocation handler: reads the body whole, answers 200.
async fn handler(request: Request) -> Result<Response, Infallible> {
    let bytes = axum::body::to_bytes(request.into_body(), LIMIT).await;
    Ok(bytes
        .map_or(500, |b| 200 + b.len() % 2)
        .to_string()
        .into_response())
}

fn layer(c: &mut Criterion, credentials: Credentials, date: &str) {
    let body = b"5.1,3.5,1.4,0.2\n6.7,3.0,5.2,2.3\n".to_vec();
    let signed = signed_headers(&body, date);
    let mut bearer = http::HeaderMap::new();
    for name in ["accept", "content-type", "host", "user-agent"] {
        bearer.insert(name, signed[name].clone());
    }
    bearer.insert(
        "authorization",
        "Bearer app-token".parse().expect("valid header"),
    );
    let mut plain = bearer.clone();
    plain.remove("authorization");
    let auth = Arc::new(Authenticator::new(
        Arc::new(credentials),
        Plane::Invoke,
        false,
        LIMIT,
    ));
    let bare = tower::service_fn(handler);
    let checked = AuthLayer::new(auth).layer(tower::service_fn(handler));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a tokio runtime");
    let request = |headers: &http::HeaderMap| {
        let mut request = Request::new(Body::from(body.clone()));
        *request.method_mut() = http::Method::POST;
        *request.uri_mut() = "/endpoints/demo/invocations".parse().expect("valid path");
        *request.headers_mut() = headers.clone();
        request
    };
    let mut group = c.benchmark_group("auth_layer");
    let mut run =
        |name: &str, headers: &http::HeaderMap, service: &mut dyn FnMut(Request) -> Response| {
            assert_eq!(service(request(headers)).status(), 200, "{name}");
            group.bench_function(name, |b| b.iter(|| service(request(headers)).status()));
        };
    run("none", &plain, &mut |r| {
        runtime.block_on(bare.oneshot(r)).expect("infallible")
    });
    for (name, headers) in [("bearer", &bearer), ("sigv4", &signed)] {
        run(name, headers, &mut |r| {
            let mut service = checked.clone();
            runtime.block_on(async {
                service.ready().await.expect("infallible");
                service.call(r).await.expect("infallible")
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = pier_benches::criterion();
    targets = bench
}
criterion_main!(benches);
