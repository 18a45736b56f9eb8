//! The cost of authentication per request (`pier serve --credentials`): SigV4 verification
//! of a boto3-shaped `InvokeEndpoint` (host, x-amz-date, content-type, accept signed; the
//! body hashed) for a 32-byte CSV body, 64 KiB and 1 MiB, and a bearer-token lookup.
//! The signature is made here, as botocore makes it, once per run (the date must be within
//! the 15-minute skew).
//!
//! `cargo bench -p pier-benches --bench auth`

use std::hint::black_box;
use std::time::{SystemTime, UNIX_EPOCH};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use hmac::{Hmac, Mac};
use pier_server::auth::{Credentials, sigv4};
use sha2::{Digest, Sha256};

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
        let request = sigv4::Request {
            method: "POST",
            path: "/endpoints/demo/invocations",
            query: "",
            authority: None,
            headers: &headers,
            body: &body,
        };
        assert!(sigv4::verify(&credentials, &request, now).is_ok());
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(label), &request, |b, r| {
            b.iter(|| sigv4::verify(&credentials, black_box(r), now).is_ok())
        });
    }
    group.finish();
    c.bench_function("auth_bearer_lookup", |b| {
        b.iter(|| credentials.token(black_box("app-token")).is_some())
    });
}

criterion_group! {
    name = benches;
    config = pier_benches::criterion();
    targets = bench
}
criterion_main!(benches);
