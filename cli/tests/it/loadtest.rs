//! `pier loadtest` against a real `pier serve --demo` on loopback: every protocol, closed and
//! open loop, the JSON and HTML reports, a dead target and bad flags. Small request counts;
//! nothing asserts on timing.

use crate::common;

use std::path::Path;

use common::serve_demo;

/// `pier ARGS` with info logs off; a panic is a failure whatever the exit status.
fn pier(args: &[&str]) -> (bool, String, String) {
    let (ok, stdout, stderr) = common::pier_with_env(args, &[("PIER_LOG", "warn")]);
    assert!(!stderr.contains("panicked"), "{stderr}");
    (ok, stdout, stderr)
}

fn report(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn every_protocol_closed_and_open_loop_against_the_demo() {
    let dir = tempfile::tempdir().unwrap();
    let served = serve_demo(&dir.path().join("data"));
    let http = format!("http://{}", served.http);
    let grpc = format!("http://{}", served.grpc);
    let mut jsons = Vec::new();
    for protocol in ["sagemaker", "v2-json", "v2-binary", "v2-grpc"] {
        let url = if protocol == "v2-grpc" { &grpc } else { &http };
        for (mode, load) in [
            ("closed", ["--concurrency", "3"]),
            ("open", ["--rate", "200"]),
        ] {
            let json = dir.path().join(format!("{protocol}-{mode}.json"));
            let label = format!("{protocol} {mode}");
            let (ok, out, err) = pier(&[
                "loadtest",
                "--url",
                url,
                "--protocol",
                protocol,
                "--model",
                "demo",
                load[0],
                load[1],
                "--requests",
                "20",
                "--rows",
                "2",
                "--warmup",
                "0.1",
                "--label",
                &label,
                "--json",
                json.to_str().unwrap(),
                "--quiet",
            ]);
            assert!(ok, "{protocol} {mode}: {err}");
            assert!(
                out.contains("throughput") && out.contains("errors       none"),
                "{out}"
            );
            let r = report(&json);
            assert_eq!(r["requests"], 20, "{protocol} {mode}: {r}");
            assert_eq!(r["ok"], 20, "{protocol} {mode}: {r}");
            assert_eq!(r["errors"], serde_json::json!({}), "{protocol} {mode}");
            assert_eq!(r["mode"], mode);
            assert_eq!(r["protocol"], protocol);
            assert_eq!(r["rows_per_request"], 2);
            let l = &r["latency_us"];
            let (p50, p99, max) = (
                l["p50"].as_u64().unwrap(),
                l["p99"].as_u64().unwrap(),
                l["max"].as_u64().unwrap(),
            );
            assert!(0 < p50 && p50 <= p99 && p99 <= max, "{l}");
            assert!(r["throughput_rps"].as_f64().unwrap() > 0.0);
            assert!(!r["timeline"].as_array().unwrap().is_empty());
            assert!(!r["percentile_curve"].as_array().unwrap().is_empty());
            jsons.push(json);
        }
    }

    // One more run compared with two saved ones in its HTML page.
    let html = dir.path().join("run.html");
    let (ok, _, err) = pier(&[
        "loadtest",
        "--url",
        &http,
        "--model",
        "demo",
        "--protocol",
        "sagemaker",
        "--input-file",
        write(dir.path(), "body.csv", "5.1,3.5,1.4,0.2\n")
            .to_str()
            .unwrap(),
        "--requests",
        "10",
        "--expect-contains",
        "0",
        "--label",
        "from a file",
        "--html",
        html.to_str().unwrap(),
        "--compare",
        jsons[0].to_str().unwrap(),
        "--compare",
        jsons[7].to_str().unwrap(),
        "-q",
    ]);
    assert!(ok, "{err}");
    let page = std::fs::read_to_string(&html).unwrap();
    for label in ["from a file", "sagemaker closed", "v2-grpc open"] {
        assert!(page.contains(label), "{label} in the page");
    }
    assert_eq!(page.matches("<svg").count(), 3);

    // All eight saved runs in one page.
    let all = dir.path().join("all.html");
    let mut args = vec!["loadtest", "report", "--html", all.to_str().unwrap()];
    args.extend(jsons.iter().map(|p| p.to_str().unwrap()));
    let (ok, out, err) = pier(&args);
    assert!(ok, "{err}");
    assert_eq!(out.matches("throughput").count(), 8, "{out}");
    let page = std::fs::read_to_string(&all).unwrap();
    // A curve per run, p50 and p99 per run, a throughput line per run.
    assert_eq!(page.matches("<polyline").count(), 8 * 4);
    for p in ["v2-json open", "v2-binary closed", "v2-grpc closed"] {
        assert!(page.contains(p), "{p}");
    }
    drop(served);
}

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn a_dead_target_gives_errors_by_kind_not_a_hang() {
    let dir = tempfile::tempdir().unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}");
    let json = dir.path().join("dead.json");
    let (ok, out, err) = pier(&[
        "loadtest",
        "--url",
        &url,
        "--model",
        "demo",
        "--features",
        "4",
        "-c",
        "2",
        "-n",
        "6",
        "--timeout",
        "2",
        "--json",
        json.to_str().unwrap(),
        "-q",
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("connect 6"), "{out}");
    let r = report(&json);
    assert_eq!(
        (r["requests"].as_u64(), r["ok"].as_u64()),
        (Some(6), Some(0))
    );
    assert_eq!(r["errors"]["connect"], 6);

    let input = write(
        dir.path(),
        "in.json",
        r#"{"inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 4], "data": [5.1, 3.5, 1.4, 0.2]}]}"#,
    );
    let (ok, _, err) = pier(&[
        "loadtest",
        "--url",
        &url,
        "--model",
        "demo",
        "--protocol",
        "v2-grpc",
        "--rate",
        "50",
        "-n",
        "5",
        "--timeout",
        "2",
        "--input-file",
        input.to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
        "-q",
    ]);
    assert!(ok, "{err}");
    let r = report(&json);
    let failed: u64 = r["errors"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!((r["ok"].as_u64(), failed), (Some(0), 5), "{r}");

    // Generating a payload needs the metadata: a clear error, not a run of failures.
    let (ok, _, err) = pier(&[
        "loadtest",
        "--url",
        &url,
        "--model",
        "demo",
        "--protocol",
        "v2-json",
        "-n",
        "1",
    ]);
    assert!(
        !ok && err.contains("metadata") && err.contains("--input-file"),
        "{err}"
    );
}

#[test]
fn bad_flags_are_refused_with_a_reason() {
    let cases: &[(&[&str], &str)] = &[
        (&["--model", "demo"], "--url"),
        (
            &["--url", "http://127.0.0.1:1", "-m", "demo", "--rate", "0"],
            "--rate",
        ),
        (
            &[
                "--url",
                "http://127.0.0.1:1",
                "-m",
                "demo",
                "--rate",
                "5",
                "-c",
                "2",
            ],
            "cannot be used with",
        ),
        (
            &["--url", "http://127.0.0.1:1", "-m", "demo", "--duration=-1"],
            "positive number of seconds",
        ),
        (
            &[
                "--url",
                "http://127.0.0.1:1",
                "-m",
                "demo",
                "--duration",
                "1",
                "--requests",
                "3",
            ],
            "cannot be used with",
        ),
        (&["--url", "127.0.0.1:1", "-m", "demo"], "http://HOST:PORT"),
        (
            &[
                "--url",
                "http://127.0.0.1:1",
                "-m",
                "demo",
                "--compare",
                "x.json",
            ],
            "--html",
        ),
        (
            &[
                "--url",
                "http://127.0.0.1:1",
                "-m",
                "demo",
                "--connections",
                "4",
            ],
            "--rate",
        ),
        (
            &[
                "--url",
                "http://127.0.0.1:1",
                "-m",
                "demo",
                "--protocol",
                "v2-json",
                "--content-type",
                "a/b",
            ],
            "sagemaker only",
        ),
        (
            &["--url", "http://127.0.0.1:1", "-m", "demo", "-H", "novalue"],
            "Name: value",
        ),
        (
            &[
                "--url",
                "http://127.0.0.1:1",
                "-m",
                "demo",
                "--rate",
                "10",
                "--connections",
                "9",
                "--max-outstanding",
                "3",
            ],
            "--max-outstanding",
        ),
        (
            &["report", "--html", "x.html", "/nonexistent.json"],
            "nonexistent.json",
        ),
    ];
    for (args, want) in cases {
        let mut all = vec!["loadtest"];
        all.extend_from_slice(args);
        let (ok, _, err) = pier(&all);
        assert!(!ok, "{args:?} should fail");
        assert!(err.contains(want), "{args:?}: {err}");
    }
    let (ok, out, _) = pier(&["loadtest", "--help"]);
    assert!(ok);
    for flag in [
        "--concurrency",
        "--rate",
        "--warmup",
        "--duration",
        "--requests",
        "--timeout",
        "--json",
        "--html",
        "--compare",
        "--quiet",
        "--max-outstanding",
        "--input-file",
    ] {
        assert!(out.contains(flag), "{flag} in --help");
    }
}

/// The sum of `pier_requests_total{outcome="ok"}` samples at `http`'s `/metrics`.
fn ok_requests(http: &str) -> f64 {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(http).unwrap();
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {http}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    text.lines()
        .filter(|l| l.starts_with("pier_requests_total{") && l.contains("outcome=\"ok\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn several_urls_spread_connections_over_replicas() {
    let dir = tempfile::tempdir().unwrap();
    let a = serve_demo(&dir.path().join("a"));
    let b = serve_demo(&dir.path().join("b"));
    for (protocol, urls) in [
        ("sagemaker", [&a.http, &b.http]),
        ("v2-grpc", [&a.grpc, &b.grpc]),
    ] {
        let before = (ok_requests(&a.http), ok_requests(&b.http));
        let json = dir.path().join(format!("{protocol}.json"));
        let (ua, ub) = (format!("http://{}", urls[0]), format!("http://{}", urls[1]));
        let (ok, _, err) = pier(&[
            "loadtest",
            "--url",
            &ua,
            "--url",
            &ub,
            "--protocol",
            protocol,
            "--model",
            "demo",
            "--concurrency",
            "4",
            "--grpc-clients-per-channel",
            "1",
            "--requests",
            "200",
            "--json",
            json.to_str().unwrap(),
            "--quiet",
        ]);
        assert!(ok, "{protocol}: {err}");
        let r = report(&json);
        assert_eq!(r["ok"], 200, "{protocol}: {r}");
        assert_eq!(r["target"], format!("{ua},{ub}"));
        let after = (ok_requests(&a.http), ok_requests(&b.http));
        let (da, db) = (after.0 - before.0, after.1 - before.1);
        // Two of the four connections go to each server; each served a real share.
        assert!(
            da >= 20.0 && db >= 20.0,
            "{protocol}: a served {da}, b {db}"
        );
        assert!(da + db >= 200.0, "{protocol}: a served {da}, b {db}");
    }
}
