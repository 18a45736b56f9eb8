//! Bad requests get the right status and a message naming the problem; the server stays up.

use crate::common;

use common::{IRIS_CSV, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::config(dir.path());
    config.limits.max_body_bytes = 64 * 1024;
    let server = TestServer::start_with(config).await;
    server.create_model("m", "iris-logreg").await;
    server.create_config("c", &[("main", "m", 1.0)]).await;
    server.create_endpoint("e", "c").await;

    // (what, content type, body, extra headers, expected status, text the message must contain)
    type Case<'a> = (
        &'a str,
        &'a str,
        Vec<u8>,
        Vec<(&'a str, &'a str)>,
        u16,
        &'a str,
    );
    let cases: Vec<Case> = vec![
        (
            "malformed JSON",
            "application/json",
            b"{\"instances\": [[1,2".to_vec(),
            vec![],
            400,
            "invalid JSON",
        ),
        (
            "JSON of the wrong shape",
            "application/json",
            b"{\"rows\": []}".to_vec(),
            vec![],
            400,
            "\"rows\"",
        ),
        (
            "a non-number in CSV",
            "text/csv",
            b"5.1,3.5,x,0.2\n".to_vec(),
            vec![],
            400,
            "line 1, column 3",
        ),
        (
            "wrong feature count",
            "text/csv",
            b"5.1,3.5,1.4\n".to_vec(),
            vec![],
            400,
            "the model takes 4",
        ),
        (
            "ragged rows",
            "application/json",
            b"[[1,2,3,4],[1,2,3]]".to_vec(),
            vec![],
            400,
            "record 2",
        ),
        (
            "empty body",
            "text/csv",
            Vec::new(),
            vec![],
            400,
            "no records",
        ),
        (
            "unsupported content type",
            "image/png",
            b"x".to_vec(),
            vec![],
            400,
            "image/png",
        ),
        (
            "unsupported Accept",
            "text/csv",
            IRIS_CSV.into(),
            vec![("Accept", "application/x-protobuf")],
            400,
            "application/x-protobuf",
        ),
        (
            "unknown variant",
            "text/csv",
            IRIS_CSV.into(),
            vec![("X-Amzn-SageMaker-Target-Variant", "ghost")],
            400,
            "ghost",
        ),
        (
            "oversize body",
            "text/csv",
            vec![b'1'; 100 * 1024],
            vec![],
            413,
            "65536-byte limit",
        ),
    ];
    for (what, content_type, body, headers, status, needle) in cases {
        let r = server.invoke("e", content_type, body, &headers).await;
        assert_eq!(r.status, status, "{what}: {}", r.body);
        let json = r.json();
        let message = json["Message"].as_str().unwrap();
        assert!(
            message.contains(needle),
            "{what}: {message:?} should mention {needle:?}"
        );
        assert_eq!(json["ErrorCode"], "ValidationError", "{what}");
    }

    let r = server.invoke("nope", "text/csv", IRIS_CSV, &[]).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["Message"], "Endpoint nope not found.");

    // Still serving, and each response says which variant answered.
    let r = server
        .invoke("e", "text/csv", IRIS_CSV, &[("Accept", "application/json")])
        .await;
    assert_eq!(
        (r.status, r.variant.as_deref()),
        (200, Some("main")),
        "{}",
        r.body
    );
    assert_eq!(r.content_type.as_deref(), Some("application/json"));
    assert_eq!(r.json()["predictions"].as_array().unwrap().len(), 2);
    // The container contract: /invocations serves the only endpoint.
    let r = server
        .client
        .post(format!("http://{}/invocations", server.http))
        .header("Content-Type", "text/csv")
        .body(IRIS_CSV)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap().lines().count(), 2);
    server.stop().await;
}
