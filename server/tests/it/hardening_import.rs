//! CreateModel against hostile and failing imports (issue 12, defects 2, 8 and 9): devices,
//! FIFOs, folders of junk, size and root limits, archives, a client that goes away, a full
//! disk, a failing database, and a second server on the same data folder.

use crate::common;

use std::fs;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{IRIS_CSV, TestServer, config, fixture};
use pier_model_store::{DiskFullAfter, FaultInjector};
use serde_json::{Value, json};

fn create_model_body(name: &str, url: &str) -> Value {
    json!({"ModelName": name, "PrimaryContainer": {"Image": "onnx", "ModelDataUrl": url}})
}

fn staging(server: &TestServer) -> Vec<String> {
    fs::read_dir(server.data.join("store/.staging"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

fn versions(server: &TestServer, name: &str) -> Vec<u64> {
    let state = &server.server.as_ref().unwrap().state;
    state.store.list_versions(name).unwrap()
}

async fn refused(server: &TestServer, name: &str, url: &str) -> String {
    let (status, answer) = server
        .api("CreateModel", create_model_body(name, url))
        .await;
    assert_eq!(status, 400, "{url}: {answer}");
    assert_eq!(answer["__type"], "ValidationException", "{answer}");
    answer["message"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn devices_fifos_and_the_root_folder_are_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let fifo = dir.path().join("pipe");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let started = Instant::now();
    for url in [
        "/dev/zero".to_string(),
        "file:///dev/urandom".to_string(),
        "/proc/self/environ".to_string(),
        fifo.display().to_string(),
    ] {
        refused(&server, "m", &url).await;
    }
    let message = refused(&server, "m", "/").await;
    assert!(message.contains("filesystem root"), "{message}");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(staging(&server).is_empty());
    assert!(versions(&server, "m").is_empty());
    server.stop().await;
}

#[tokio::test]
async fn junk_folders_are_refused_at_create_model_and_nothing_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let many = dir.path().join("many");
    fs::create_dir(&many).unwrap();
    for i in 0..10_000 {
        fs::write(many.join(format!("f{i:05}")), b"").unwrap();
    }
    let message = refused(&server, "junk", many.to_str().unwrap()).await;
    assert!(message.contains("1000 files"), "{message}");

    let few = dir.path().join("few");
    fs::create_dir(&few).unwrap();
    for i in 0..5 {
        fs::write(few.join(format!("f{i}")), b"").unwrap();
    }
    let message = refused(&server, "junk", few.to_str().unwrap()).await;
    assert!(message.contains("is not a valid onnx model"), "{message}");
    assert!(
        !message.contains(".staging"),
        "no store path leaks: {message}"
    );
    assert!(versions(&server, "junk").is_empty());
    assert!(staging(&server).is_empty());
    server.stop().await;
}

#[tokio::test]
async fn size_limit_import_roots_and_remote_admin() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("models");
    fs::create_dir(&root).unwrap();
    fs::copy(fixture("iris-logreg"), root.join("model.onnx")).unwrap();
    std::os::unix::fs::symlink(fixture("iris-mlp"), root.join("escape.onnx")).unwrap();
    let mut cfg = config(&dir.path().join("data"));
    cfg.import.roots = vec![root.clone()];
    cfg.import.max_model_bytes = 100_000;
    let server = TestServer::start_with(cfg).await;
    server
        .ok(
            "CreateModel",
            create_model_body("inside", root.join("model.onnx").to_str().unwrap()),
        )
        .await;
    for url in [
        fixture("iris-mlp").display().to_string(),
        root.join("escape.onnx").display().to_string(),
        format!("{}/../../etc/passwd", root.display()),
    ] {
        let message = refused(&server, "outside", &url).await;
        assert!(message.contains("outside the import roots"), "{message}");
    }
    let big = root.join("big.onnx");
    fs::write(&big, vec![0u8; 200_000]).unwrap();
    let message = refused(&server, "big", big.to_str().unwrap()).await;
    assert!(message.contains("limit of 100000 bytes"), "{message}");
    server.stop().await;

    // A control plane beyond loopback with no roots imports no local path.
    let mut cfg = config(&dir.path().join("data2"));
    cfg.admin_addr = "0.0.0.0:0".parse().unwrap();
    // Without credentials, only --insecure-admin allows the control plane beyond loopback.
    cfg.auth.insecure_admin = true;
    let server = TestServer::start_with(cfg).await;
    let message = refused(&server, "m", fixture("iris-logreg").to_str().unwrap()).await;
    assert!(message.contains("--import-root"), "{message}");
    server.stop().await;
}

#[tokio::test]
async fn a_model_tar_gz_is_imported_and_served() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("model.tar.gz");
    {
        let gz = flate2::write::GzEncoder::new(
            fs::File::create(&archive).unwrap(),
            flate2::Compression::default(),
        );
        let mut tar = tar::Builder::new(gz);
        tar.append_path_with_name(fixture("iris-logreg"), "model.onnx")
            .unwrap();
        tar.append_path_with_name(fixture("iris-mlp"), "code/other.onnx")
            .unwrap();
        tar.into_inner().unwrap().finish().unwrap();
    }
    let server = TestServer::start(&dir.path().join("data")).await;
    server
        .ok(
            "CreateModel",
            create_model_body("packed", &format!("file://{}", archive.display())),
        )
        .await;
    server.create_config("c", &[("v", "packed", 1.0)]).await;
    server.create_endpoint("e", "c").await;
    let r = server.invoke("e", "text/csv", IRIS_CSV, &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    server.stop().await;
}

/// Slows every chunk down and counts them.
#[derive(Debug, Default)]
struct Slow(AtomicU64);

impl FaultInjector for Slow {
    fn before_write(&self, _file: &str, _offset: u64, _len: usize) -> std::io::Result<()> {
        self.0.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(20));
        Ok(())
    }
}

#[tokio::test]
async fn an_import_stops_when_its_client_goes_away() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("data")).await;
    let big = dir.path().join("big.onnx");
    fs::write(&big, vec![1u8; 16 << 20]).unwrap(); // 256 chunks, ~5 s at 20 ms each
    let slow = Arc::new(Slow::default());
    let state = server.server.as_ref().unwrap().state.clone();
    state.store.set_fault_injector(Some(slow.clone()));

    let sent = server
        .client
        .post(format!("http://{}/", server.admin))
        .header("X-Amz-Target", "SageMaker.CreateModel")
        .timeout(Duration::from_millis(500))
        .body(create_model_body("gone", big.to_str().unwrap()).to_string())
        .send()
        .await;
    assert!(sent.is_err(), "the client gave up first");
    assert!(slow.0.load(Ordering::SeqCst) > 0, "the import had started");

    let deadline = Instant::now() + Duration::from_secs(3);
    while !staging(&server).is_empty() {
        assert!(
            Instant::now() < deadline,
            "the import goes on after its client left ({} chunks)",
            slow.0.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let chunks = slow.0.load(Ordering::SeqCst);
    assert!(chunks < 200, "copied {chunks} of 256 chunks");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(slow.0.load(Ordering::SeqCst), chunks, "copying stopped");
    assert!(versions(&server, "gone").is_empty());
    state.store.set_fault_injector(None);
    server.stop().await;
}

#[tokio::test]
async fn a_full_disk_is_a_500_naming_the_cause_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    server.create_model("before", "iris-logreg").await;
    server.create_config("c", &[("v", "before", 1.0)]).await;
    server.create_endpoint("e", "c").await;

    let state = server.server.as_ref().unwrap().state.clone();
    state
        .store
        .set_fault_injector(Some(Arc::new(DiskFullAfter::new(100))));
    let url = format!("file://{}", fixture("iris-mlp").display());
    let (status, answer) = server
        .api("CreateModel", create_model_body("full", &url))
        .await;
    assert_eq!(status, 500, "{answer}");
    assert_eq!(answer["__type"], "InternalFailure", "{answer}");
    let message = answer["message"].as_str().unwrap();
    assert!(
        message.contains("no space left on device while writing model.onnx"),
        "{message}"
    );
    assert!(
        !message.contains(".staging"),
        "no store path leaks: {message}"
    );
    assert!(versions(&server, "full").is_empty());
    assert!(!server.data.join("store/full/1").exists());
    assert!(staging(&server).is_empty());
    // The server keeps serving, and imports work again once there is space.
    let r = server.invoke("e", "text/csv", IRIS_CSV, &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    state.store.set_fault_injector(None);
    server
        .ok("CreateModel", create_model_body("full", &url))
        .await;
    assert_eq!(versions(&server, "full"), vec![1]);
    server.stop().await;
}

#[tokio::test]
async fn a_failed_database_write_is_a_500_naming_the_operation_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    server.create_model("kept", "iris-logreg").await;
    let state = server.server.as_ref().unwrap().state.clone();
    state.db.fail_next_writes(1);
    let url = format!("file://{}", fixture("iris-mlp").display());
    let (status, answer) = server
        .api("CreateModel", create_model_body("lost", &url))
        .await;
    assert_eq!(status, 500, "{answer}");
    assert_eq!(answer["__type"], "InternalFailure", "{answer}");
    let message = answer["message"].as_str().unwrap();
    assert_eq!(
        message, "database insert of models record \"lost\" failed: no space left on device",
        "{answer}"
    );
    assert!(
        versions(&server, "lost").is_empty(),
        "the import of a failed CreateModel is removed"
    );
    drop(state);
    server.stop().await;

    let server = TestServer::start(dir.path()).await;
    let models = server.ok("ListModels", json!({})).await;
    let names: Vec<&str> = models["Models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["ModelName"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["kept"]);
    server
        .ok("DescribeModel", json!({"ModelName": "kept"}))
        .await;
    server
        .ok("CreateModel", create_model_body("lost", &url))
        .await;
    server.stop().await;
}

#[tokio::test]
async fn a_second_server_on_the_same_data_folder_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let first = TestServer::start(dir.path()).await;
    let err = pier_server::start(config(dir.path()))
        .await
        .expect_err("a second server must not start");
    let message = err.to_string();
    assert!(
        message.contains(&dir.path().display().to_string()),
        "{message}"
    );
    assert!(
        message.contains(&format!("pid {}", std::process::id())),
        "{message}"
    );
    assert!(message.contains("another pier serve"), "{message}");
    // The first one is unharmed, and once it stops the folder can be served again.
    first.create_model("m", "iris-logreg").await;
    first.stop().await;
    let again = TestServer::start(dir.path()).await;
    again.ok("DescribeModel", json!({"ModelName": "m"})).await;
    again.stop().await;
}

#[tokio::test]
async fn a_server_start_sweeps_staging_left_by_dead_writers() {
    let dir = tempfile::tempdir().unwrap();
    let staging_dir = dir.path().join("store/.staging");
    // A writer that is gone (no such pid), and one alive (this process).
    let dead = staging_dir.join(format!("{}.1-1-0", u32::MAX - 5));
    let live = staging_dir.join(format!("{}.0-1-0", std::process::id()));
    for d in [&dead, &live] {
        fs::create_dir_all(d).unwrap();
        fs::write(d.join("model.onnx"), vec![0u8; 4096]).unwrap();
    }
    let server = TestServer::start(dir.path()).await;
    assert!(!dead.exists(), "a dead writer's staging survived the start");
    assert!(live.exists(), "a live writer's staging was removed");
    server.stop().await;
}
