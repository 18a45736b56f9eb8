//! Multi-model endpoints (CreateModel `Mode = MultiModel`, InvokeEndpoint `TargetModel`):
//! 2,000 tiny XGBoost archives under one prefix with a memory budget that holds 100 — every
//! one answers with its own prediction, the least recently used are evicted and the cache
//! stays within the budget; concurrent first requests load a target once; a target missing,
//! escaping the prefix or given to a single-model endpoint is a 400 naming the problem; and
//! the same from an `s3://` prefix on s3s-fs.

use crate::common;
use crate::s3;

use std::path::Path;

use common::TestServer;
use futures::StreamExt;
use serde_json::json;

/// A one-split XGBoost regression model (JSON, `reg:squarederror`, base score 0): feature 0
/// below 0.5 gives `left`, else `right`. Padded so every model has the same byte size.
fn stump(left: i64, right: i64) -> Vec<u8> {
    let tree = json!({
        "base_weights": [0.0, left, right], "categories": [], "categories_nodes": [],
        "categories_segments": [], "categories_sizes": [], "default_left": [1, 0, 0], "id": 0,
        "left_children": [1, -1, -1], "loss_changes": [1.0, 0.0, 0.0],
        "parents": [2147483647, 0, 0], "right_children": [2, -1, -1],
        "split_conditions": [0.5, left, right], "split_indices": [0, 0, 0],
        "split_type": [0, 0, 0], "sum_hessian": [2.0, 1.0, 1.0],
        "tree_param": {"num_deleted": "0", "num_feature": "2", "num_nodes": "3", "size_leaf_vector": "1"}
    });
    let mut model = json!({
        "learner": {
            "attributes": {}, "feature_names": [], "feature_types": [],
            "gradient_booster": {"model": {
                "gbtree_model_param": {"num_parallel_tree": "1", "num_trees": "1"},
                "iteration_indptr": [0, 1], "tree_info": [0], "trees": [tree]
            }, "name": "gbtree"},
            "learner_model_param": {"base_score": "0E0", "boost_from_average": "1", "num_class": "0", "num_feature": "2", "num_target": "1"},
            "objective": {"name": "reg:squarederror", "reg_loss_param": {"scale_pos_weight": "1"}}
        },
        "version": [2, 1, 0]
    });
    model["learner"]["attributes"]["pad"] = json!("");
    let len = serde_json::to_vec(&model).unwrap().len();
    model["learner"]["attributes"]["pad"] = json!("x".repeat(MODEL_BYTES - len));
    serde_json::to_vec(&model).unwrap()
}

/// Every generated model's size in bytes.
const MODEL_BYTES: usize = 1400;

/// `model.tar.gz` holding `xgboost-model`, as SageMaker's XGBoost writes it.
fn archive(model: &[u8]) -> Vec<u8> {
    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    let mut header = tar::Header::new_gnu();
    header.set_size(model.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    tar.append_data(&mut header, "xgboost-model", model)
        .unwrap();
    tar.into_inner().unwrap().finish().unwrap()
}

fn write_models(dir: &Path, count: usize) -> u64 {
    std::fs::create_dir_all(dir).unwrap();
    let mut size = 0;
    for i in 0..count {
        let model = stump(i as i64, -(i as i64));
        size = size.max(model.len() as u64);
        std::fs::write(dir.join(format!("m{i}.tar.gz")), archive(&model)).unwrap();
    }
    size
}

/// The value of a metric line `name{labels} value` whose labels hold `label`.
fn metric(text: &str, name: &str, label: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn target(s: &TestServer, endpoint: &str, target: &str, csv: &str) -> common::Invocation {
    s.invoke(
        endpoint,
        "text/csv",
        csv.to_owned(),
        &[("X-Amzn-SageMaker-Target-Model", target)],
    )
    .await
}

fn prediction(r: &common::Invocation) -> f64 {
    assert_eq!(r.status, 200, "{}", r.body);
    r.body
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("{e}: {}", r.body))
}

async fn multi_model_endpoint(s: &TestServer, name: &str, url: &str) {
    s.ok(
        "CreateModel",
        json!({"ModelName": name, "PrimaryContainer": {"Image": "xgboost", "Mode": "MultiModel", "ModelDataUrl": url}}),
    )
    .await;
    s.create_config(name, &[("all", name, 1.0)]).await;
    s.create_endpoint(name, name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_thousand_models_under_a_budget_of_one_hundred() {
    const MODELS: usize = 2000;
    const HELD: u64 = 100;
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models");
    let size = write_models(&models, MODELS);
    let mut config = common::config(&dir.path().join("data"));
    config.multi_model_memory = HELD * size;
    let s = TestServer::start_with(config).await;
    multi_model_endpoint(&s, "mme", &format!("file://{}", models.display())).await;

    // Every model answers with its own leaves, 8 requests at a time.
    let mut tasks = futures::stream::iter(0..MODELS)
        .map(|i| {
            let s = &s;
            async move {
                let left = prediction(&target(s, "mme", &format!("m{i}.tar.gz"), "0.1,0\n").await);
                let right = prediction(&target(s, "mme", &format!("m{i}.tar.gz"), "0.9,0\n").await);
                (i, left, right)
            }
        })
        .buffer_unordered(8);
    let mut answered = 0;
    while let Some((i, left, right)) = tasks.next().await {
        assert_eq!((left, right), (i as f64, -(i as f64)), "model m{i}");
        answered += 1;
    }
    assert_eq!(answered, MODELS);
    drop(tasks);

    let text = s.metrics().await;
    let label = "model=\"mme\"";
    let loads = metric(&text, "pier_multi_model_loads_total", label);
    let evictions = metric(&text, "pier_multi_model_evictions_total", label);
    let hits = metric(&text, "pier_multi_model_cache_hits_total", label);
    assert_eq!(loads, MODELS as f64, "each model loads once: {text}");
    assert!(
        evictions >= (MODELS as u64 - HELD) as f64,
        "evictions {evictions}"
    );
    assert!(
        hits >= MODELS as f64,
        "the second request of each is a hit: {hits}"
    );
    let loaded = metric(&text, "pier_multi_model_loaded_models ", "");
    let bytes = metric(&text, "pier_multi_model_loaded_bytes ", "");
    assert!(loaded <= HELD as f64 && loaded >= 1.0, "loaded {loaded}");
    assert!(
        bytes <= (HELD * size) as f64,
        "bytes {bytes} over the budget"
    );
    assert!(metric(&text, "pier_multi_model_load_duration_seconds_count", label) >= MODELS as f64);

    // An evicted model loads again (from the store, without a new import) and still answers.
    let store_names = std::fs::read_dir(dir.path().join("data/store"))
        .unwrap()
        .count();
    assert_eq!(
        prediction(&target(&s, "mme", "m0.tar.gz", "0.1,0\n").await),
        0.0
    );
    assert_eq!(
        std::fs::read_dir(dir.path().join("data/store"))
            .unwrap()
            .count(),
        store_names,
        "a reload reuses the stored import"
    );

    // Concurrent first requests for a new target load it once.
    std::fs::write(models.join("fresh.tar.gz"), archive(&stump(7, 8))).unwrap();
    let before = metric(&s.metrics().await, "pier_multi_model_loads_total", label);
    let answers =
        futures::future::join_all((0..16).map(|_| target(&s, "mme", "fresh.tar.gz", "0.1,0\n")))
            .await;
    for a in &answers {
        assert_eq!(prediction(a), 7.0);
    }
    let after = metric(&s.metrics().await, "pier_multi_model_loads_total", label);
    assert_eq!(
        after - before,
        1.0,
        "16 concurrent first requests, one load"
    );

    refusals(&s, dir.path(), &models).await;
    s.stop().await;
}

/// Missing, escaping and misdirected targets: 400 ValidationError naming the problem; a
/// corrupt archive: 424 ModelError; the endpoint keeps serving.
async fn refusals(s: &TestServer, root: &Path, models: &Path) {
    let refused = |r: &common::Invocation, status: u16, needle: &str| {
        assert_eq!(r.status, status, "{}", r.body);
        let m = r.json()["Message"].as_str().unwrap().to_owned();
        assert!(m.contains(needle), "{m:?} lacks {needle:?}");
    };
    let r = s.invoke("mme", "text/csv", "0.1,0\n", &[]).await;
    refused(&r, 400, "TargetModel");
    assert_eq!(r.json()["ErrorCode"], "ValidationError", "{}", r.body);
    std::fs::write(root.join("outside.tar.gz"), archive(&stump(1, 1))).unwrap();
    for bad in [
        "../outside.tar.gz",
        "/etc/passwd",
        "%2e%2e/outside.tar.gz",
        "..%2Foutside.tar.gz",
        "a/./b.tar.gz",
    ] {
        refused(&target(s, "mme", bad, "0.1,0\n").await, 400, "is not valid");
    }
    refused(
        &target(s, "mme", "missing.tar.gz", "0.1,0\n").await,
        400,
        "Failed to download model data",
    );
    // A link inside the prefix that points outside it is refused too.
    std::os::unix::fs::symlink(root.join("outside.tar.gz"), models.join("link.tar.gz")).unwrap();
    refused(
        &target(s, "mme", "link.tar.gz", "0.1,0\n").await,
        400,
        "not a file under the Model's ModelDataUrl",
    );
    std::fs::write(models.join("junk.tar.gz"), b"not an archive").unwrap();
    let r = target(s, "mme", "junk.tar.gz", "0.1,0\n").await;
    assert_eq!(r.status, 424, "{}", r.body);
    assert_eq!(r.json()["ErrorCode"], "ModelError", "{}", r.body);

    // TargetModel on a single-model endpoint.
    s.create_model("iris", "iris-logreg").await;
    s.create_config("iris", &[("main", "iris", 1.0)]).await;
    s.create_endpoint("iris", "iris").await;
    refused(
        &target(s, "iris", "m1.tar.gz", common::IRIS_CSV).await,
        400,
        "not a multi-model endpoint",
    );

    // A pier:// prefix: TargetModel names a store artifact (CreateModel "iris" published one).
    s.ok(
        "CreateModel",
        json!({"ModelName": "from-store", "PrimaryContainer": {"Image": "onnx", "Mode": "MultiModel", "ModelDataUrl": "pier://"}}),
    )
    .await;
    s.create_config("from-store", &[("all", "from-store", 1.0)])
        .await;
    s.create_endpoint("from-store", "from-store").await;
    for t in ["iris", "iris/1"] {
        let r = target(s, "from-store", t, common::IRIS_CSV).await;
        assert_eq!(r.status, 200, "{t}: {}", r.body);
        assert_eq!(r.model.as_deref(), Some("iris/1"));
    }
    for (t, needle) in [
        ("iris/9", "no such version"),
        ("nosuch", "no such version"),
        ("bad_name", "TargetModel \"bad_name\""),
    ] {
        refused(
            &target(s, "from-store", t, common::IRIS_CSV).await,
            400,
            needle,
        );
    }

    // CreateModel refuses a prefix that is not a folder.
    let (status, body) = s
        .api(
            "CreateModel",
            json!({"ModelName": "bad", "PrimaryContainer": {"Image": "xgboost", "Mode": "MultiModel", "ModelDataUrl": models.join("m1.tar.gz").display().to_string()}}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("not a folder")
            || body.to_string().contains("not a folder"),
        "{body}"
    );
    // v2 cannot name a multi-model endpoint's targets.
    let r = s
        .client
        .get(format!("http://{}/v2/models/mme", s.http))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);

    assert_eq!(
        prediction(&target(s, "mme", "m5.tar.gz", "0.9,0\n").await),
        -5.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_s3_prefix_serves_its_archives() {
    let s3 = s3::S3Server::start(s3::BUCKET);
    let prefix = s3.root.path().join(s3::BUCKET).join("mme/v1");
    write_models(&prefix, 3);
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::config(&dir.path().join("data"));
    config.jobs.s3 = s3.config();
    let s = TestServer::start_with(config).await;
    multi_model_endpoint(&s, "mme-s3", &format!("s3://{}/mme/v1/", s3::BUCKET)).await;
    for i in 0..3 {
        let r = target(&s, "mme-s3", &format!("m{i}.tar.gz"), "0.9,0\n").await;
        assert_eq!(prediction(&r), -(i as f64));
    }
    let r = target(&s, "mme-s3", "m9.tar.gz", "0.9,0\n").await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(
        r.body.contains("Failed to download model data"),
        "{}",
        r.body
    );
    let text = s.metrics().await;
    assert_eq!(
        metric(&text, "pier_multi_model_loads_total", "model=\"mme-s3\""),
        3.0
    );
    assert_eq!(
        metric(
            &text,
            "pier_multi_model_load_failures_total",
            "model=\"mme-s3\""
        ),
        1.0
    );
    s.stop().await;
}
