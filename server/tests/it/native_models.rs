//! Native models over the real server: an XGBoost file imported by CreateModel (Image
//! `xgboost`, SageMaker's extension-less `xgboost-model`) and a linear learner trained into the
//! store and referenced as `pier://NAME/VERSION`, invoked with CSV (missing values) and JSON.

use crate::common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::TestServer;
use pier_algorithms::builtin::{Algorithm, Predictions, load_predictor};
use pier_jobs::train::{TrainSpec, train_and_publish};
use pier_model_store::{ModelStore, VersionSelector};
use serde_json::{Value, json};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
}

/// The first `rows` records of a tree case as CSV (null → empty field) and as JSON.
fn case_bodies(case: &Value, rows: usize) -> (String, String) {
    let n = case["n_features"].as_u64().unwrap() as usize;
    let inputs = case["inputs"].as_array().unwrap();
    let mut csv = String::new();
    let mut json_rows = Vec::new();
    for r in 0..rows {
        let row = &inputs[r * n..(r + 1) * n];
        let fields: Vec<String> = row
            .iter()
            .map(|v| v.as_f64().map(|f| f.to_string()).unwrap_or_default())
            .collect();
        csv.push_str(&fields.join(","));
        csv.push('\n');
        json_rows.push(Value::Array(row.to_vec()));
    }
    (csv, json!({ "instances": json_rows }).to_string())
}

fn assert_close(got: f64, want: f64) {
    assert!(
        (got - want).abs() <= 1e-6 * want.abs().max(1.0),
        "{got} vs {want}"
    );
}

async fn endpoint_for(server: &TestServer, model: &str, image: &str, url: &str) {
    server
        .ok(
            "CreateModel",
            json!({"ModelName": model, "PrimaryContainer": {"Image": image, "ModelDataUrl": url}}),
        )
        .await;
    server.create_config(model, &[("main", model, 1.0)]).await;
    server.create_endpoint(model, model).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xgboost_file_and_trained_linear_learner_serve_sagemaker_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;

    // --- XGBoost: SageMaker's `xgboost-model` file, imported by CreateModel. ---
    let model_file = fixtures().join("trees/xgb_sagemaker/xgboost-model");
    endpoint_for(
        &server,
        "xgb",
        "xgboost",
        &format!("file://{}", model_file.display()),
    )
    .await;
    let store = ModelStore::open(dir.path().join("store")).unwrap();
    let manifest = store
        .open_version("xgb", VersionSelector::Latest)
        .unwrap()
        .manifest()
        .clone();
    assert_eq!(manifest.runtime, "xgboost");
    assert_eq!(manifest.properties["num_features"], 5);
    assert_eq!(manifest.properties["num_outputs"], 1);
    assert_eq!(manifest.properties["objective"], "binary:logistic");

    let case: Value = serde_json::from_slice(
        &std::fs::read(fixtures().join("trees/xgb_sagemaker.case.json")).unwrap(),
    )
    .unwrap();
    let (csv, body) = case_bodies(&case, 3);
    assert!(csv.contains(",,") || csv.starts_with(','), "{csv}");
    let want = case["predict"].as_array().unwrap();
    for (content_type, body) in [("text/csv", csv.clone()), ("application/json", body)] {
        let r = server
            .invoke("xgb", content_type, body, &[("Accept", "application/json")])
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        let answer = r.json();
        let predictions = answer["predictions"].as_array().unwrap();
        assert_eq!(predictions.len(), 3, "{answer}");
        for (p, w) in predictions.iter().zip(want) {
            assert_eq!(p.as_object().unwrap().len(), 1, "{p}");
            assert_close(p["score"].as_f64().unwrap(), w.as_f64().unwrap());
        }
    }
    let r = server
        .invoke("xgb", "text/csv", csv, &[("Accept", "text/csv")])
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let lines: Vec<f64> = r.body.lines().map(|l| l.parse().unwrap()).collect();
    assert_eq!(lines.len(), 3);
    for (got, w) in lines.iter().zip(want) {
        assert_close(*got, w.as_f64().unwrap());
    }

    // Wrong feature count: a 400 naming expected and actual counts.
    let r = server.invoke("xgb", "text/csv", "1,2,3\n", &[]).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(
        r.body.contains("has 3 features but the model takes 5"),
        "{}",
        r.body
    );
    let r = server
        .invoke(
            "xgb",
            "application/json",
            r#"{"instances": [[1, 2, 3, 4, 5, 6]]}"#,
            &[],
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("6 features"), "{}", r.body);
    assert!(r.body.contains("takes 5"), "{}", r.body);

    // --- Linear learner: trained into the store while the server runs, then pier://. ---
    let spec = TrainSpec {
        algorithm: Algorithm::LinearLearner,
        hyperparameters: [("predictor_type", "binary_classifier"), ("epochs", "5")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect::<BTreeMap<_, _>>(),
        train: fixtures().join("builtin/breast_cancer_train.csv"),
        validation: Some(fixtures().join("builtin/breast_cancer_test.csv")),
        model_name: "cancer-ll".into(),
        training_job: None,
    };
    let trained = tokio::task::spawn_blocking(move || train_and_publish(&store, &spec, &|_| {}))
        .await
        .unwrap()
        .unwrap();
    let url = format!("pier://cancer-ll/{}", trained.manifest.version);
    endpoint_for(&server, "ll", "linear-learner", &url).await;

    let test = std::fs::read_to_string(fixtures().join("builtin/breast_cancer_test.csv")).unwrap();
    let rows: Vec<&str> = test
        .lines()
        .take(2)
        .map(|l| l.split_once(',').unwrap().1)
        .collect();
    let artifact = ModelStore::open(dir.path().join("store"))
        .unwrap()
        .open_version("cancer-ll", VersionSelector::Latest)
        .unwrap();
    let predictor = load_predictor(
        Algorithm::LinearLearner,
        &std::fs::read(artifact.primary_path().unwrap()).unwrap(),
    )
    .unwrap();
    let features: Vec<f32> = rows
        .iter()
        .flat_map(|r| r.split(',').map(|v| v.parse::<f32>().unwrap()))
        .collect();
    let Predictions::Scores {
        scores,
        predicted_label: Some(labels),
        ..
    } = predictor.predict(&features, 2).unwrap()
    else {
        panic!("a binary classifier has scores and labels");
    };
    let json_body = json!({"instances": rows
        .iter()
        .map(|r| r.split(',').map(|v| v.parse::<f64>().unwrap()).collect::<Vec<_>>())
        .collect::<Vec<_>>()})
    .to_string();
    for (content_type, body) in [
        ("text/csv", rows.join("\n")),
        ("application/json", json_body),
    ] {
        let r = server
            .invoke("ll", content_type, body, &[("Accept", "application/json")])
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(
            r.body.starts_with(r#"{"predictions":[{"score":"#),
            "{}",
            r.body
        );
        let answer = r.json();
        let predictions = answer["predictions"].as_array().unwrap();
        assert_eq!(predictions.len(), 2, "{answer}");
        for (i, p) in predictions.iter().enumerate() {
            assert_eq!(p.as_object().unwrap().len(), 2, "{p}");
            assert_close(p["score"].as_f64().unwrap(), f64::from(scores[i]));
            assert_eq!(p["predicted_label"], labels[i] as i64, "{p}");
        }
    }
    // A missing value is refused by the dense linear model with a 400 naming it.
    let mut fields: Vec<&str> = rows[0].split(',').collect();
    fields[2] = "";
    let r = server.invoke("ll", "text/csv", fields.join(","), &[]).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("row 1, column 3"), "{}", r.body);
    let r = server.invoke("ll", "text/csv", "1,2\n", &[]).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("the model takes 30"), "{}", r.body);

    // LightGBM multiclass: per-class probabilities as the score list.
    let lgb = fixtures().join("trees/lgb_multiclass.txt");
    endpoint_for(&server, "lgb", "lightgbm", &lgb.display().to_string()).await;
    let r = server
        .invoke("lgb", "application/json", r#"[[0.5, null, 1, -1, 2]]"#, &[])
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let score = r.json()["predictions"][0]["score"].clone();
    let probabilities: Vec<f64> = score
        .as_array()
        .unwrap_or_else(|| panic!("{}", r.body))
        .iter()
        .map(|p| p.as_f64().unwrap())
        .collect();
    assert_eq!(probabilities.len(), 3, "{}", r.body);
    assert_close(probabilities.iter().sum(), 1.0);
    // A LightGBM file under Image xgboost is refused at CreateModel, naming the right image.
    let (status, answer) = server
        .api(
            "CreateModel",
            json!({"ModelName": "mixed", "PrimaryContainer": {"Image": "xgboost", "ModelDataUrl": lgb.display().to_string()}}),
        )
        .await;
    assert_eq!(status, 400, "{answer}");
    assert!(answer.to_string().contains("lightgbm"), "{answer}");

    // An image that does not match the stored artifact's runtime is refused.
    let (status, answer) = server
        .api(
            "CreateModel",
            json!({"ModelName": "wrong", "PrimaryContainer": {"Image": "kmeans", "ModelDataUrl": url}}),
        )
        .await;
    assert_eq!(status, 400, "{answer}");
    server.stop().await;
}
