//! The `pier` binary as a user runs it: `serve --demo` (the README's first command), the
//! endpoint and model subcommands, and a clean shutdown on SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

const PIER: &str = env!("CARGO_BIN_EXE_pier");

struct Served {
    child: Child,
    http: String,
    admin: String,
    banner: String,
}

fn serve_demo(data: &std::path::Path) -> Served {
    let mut child = Command::new(PIER)
        .args([
            "serve",
            "--demo",
            "--http",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(data)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().expect("pier printed nothing").unwrap();
    let field = |k: &str| {
        first
            .split_whitespace()
            .find_map(|p| p.strip_prefix(k))
            .unwrap()
            .to_owned()
    };
    let (http, admin) = (field("http="), field("admin="));
    // Read the rest of the banner so the child never blocks on a full pipe.
    let mut banner = first;
    for line in lines.by_ref() {
        let line = line.unwrap();
        banner.push('\n');
        banner.push_str(&line);
        if line.starts_with("Stop with") {
            break;
        }
    }
    Served {
        child,
        http,
        admin,
        banner,
    }
}

fn pier(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(PIER).args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn stop(mut s: Served) {
    let pid = s.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    assert!(
        s.child.wait().unwrap().success(),
        "pier exits 0 after SIGTERM"
    );
}

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
    assert!(!ok && err.contains("ResourceNotFound"), "{err}");
    stop(served);

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
    stop(served);
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
