//! The `pier` binary as a user runs it: `serve --demo` (the README's first command), the
//! endpoint and model subcommands, and a clean shutdown on SIGTERM.

use crate::common;

use common::{pier, serve_demo};

#[test]
fn demo_serves_and_the_cli_drives_it() {
    let dir = tempfile::tempdir().unwrap();
    let served = serve_demo(dir.path());
    assert!(
        served.banner.starts_with("pier: serving http="),
        "{}",
        served.banner
    );
    assert!(
        served.banner.contains("/endpoints/demo/invocations"),
        "the banner shows how to call it"
    );
    let admin_url = format!("http://{}", served.admin);

    let client = reqwest::blocking::Client::new();
    let r = client
        .post(format!("http://{}/endpoints/demo/invocations", served.http))
        .header("Content-Type", "text/csv")
        .body("5.1,3.5,1.4,0.2\n")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let variant = r.headers()["x-amzn-invoked-production-variant"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(variant == "logreg" || variant == "mlp", "{variant}");
    assert!(r.text().unwrap().starts_with("0,"), "setosa is class 0");

    let (ok, out, err) = pier(&["endpoints", "list", "--admin-url", &admin_url]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "demo\tInService");
    let (ok, _, err) = pier(&[
        "endpoints",
        "update-weights",
        "demo",
        "logreg=0",
        "mlp=1",
        "--admin-url",
        &admin_url,
    ]);
    assert!(ok, "{err}");
    let (ok, out, err) = pier(&["endpoints", "describe", "demo", "--admin-url", &admin_url]);
    assert!(ok, "{err}");
    let described: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(described["ProductionVariants"][0]["CurrentWeight"], 0.0);
    let (ok, _, err) = pier(&[
        "endpoints",
        "update-weights",
        "demo",
        "logreg=x",
        "--admin-url",
        &admin_url,
    ]);
    assert!(!ok && err.contains("not a number"), "{err}");
    let (ok, _, err) = pier(&["endpoints", "describe", "ghost", "--admin-url", &admin_url]);
    assert!(!ok && err.contains("Could not find endpoint"), "{err}");
    served.stop();

    // A second start on the same data folder keeps the demo (and its new weights).
    let served = serve_demo(dir.path());
    let (ok, out, _) = pier(&[
        "endpoints",
        "describe",
        "demo",
        "--admin-url",
        &format!("http://{}", served.admin),
    ]);
    assert!(ok);
    let described: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(described["ProductionVariants"][1]["CurrentWeight"], 1.0);
    served.stop();
}

#[test]
fn models_push_and_list_use_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let model = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../fixtures/onnx/mlp/model.onnx"
    );
    let (ok, out, err) = pier(&[
        "models",
        "push",
        "mlp",
        model,
        "--runtime",
        "onnx",
        "--data-dir",
        data,
    ]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "pier://mlp/1");
    let (ok, out, _) = pier(&["models", "push", "mlp", model, "--data-dir", data]);
    assert!(ok);
    assert_eq!(out.trim(), "pier://mlp/2");
    let (ok, out, _) = pier(&["models", "list", "--data-dir", data]);
    assert!(ok);
    assert_eq!(out.trim(), "mlp\tversions 1, 2");
    let (ok, _, err) = pier(&["models", "push", "bad_name", model, "--data-dir", data]);
    assert!(!ok && err.contains("invalid model name"), "{err}");
}
