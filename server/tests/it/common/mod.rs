//! Shared helpers: a real Pier on 127.0.0.1:0 in a temporary data folder, and small clients
//! of its control and data planes.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use pier_server::{RunningServer, ServerConfig};
use serde_json::{Value, json};

pub struct TestServer {
    pub server: Option<RunningServer>,
    pub data: PathBuf,
    pub http: SocketAddr,
    pub admin: SocketAddr,
    pub client: reqwest::Client,
}

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/onnx")
        .join(name)
        .join("model.onnx")
}

pub fn config(data: &Path) -> ServerConfig {
    let mut config = ServerConfig::new(data);
    config.http_addr = "127.0.0.1:0".parse().unwrap();
    config.admin_addr = "127.0.0.1:0".parse().unwrap();
    config.compute.threads = 2;
    config
}

impl TestServer {
    pub async fn start(data: &Path) -> Self {
        Self::start_with(config(data)).await
    }

    pub async fn start_with(config: ServerConfig) -> Self {
        let data = config.data_dir.clone();
        let server = pier_server::start(config).await.expect("server starts");
        let (http, admin) = (server.http_addr, server.admin_addr);
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .build()
            .unwrap();
        Self {
            server: Some(server),
            data,
            http,
            admin,
            client,
        }
    }

    pub async fn stop(mut self) {
        self.server.take().unwrap().shutdown().await;
    }

    /// Calls `SageMaker.<action>`; returns (HTTP status, JSON body).
    pub async fn api(&self, action: &str, body: Value) -> (u16, Value) {
        let r = self
            .client
            .post(format!("http://{}/", self.admin))
            .header("X-Amz-Target", format!("SageMaker.{action}"))
            .header("Content-Type", "application/x-amz-json-1.1")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap())
    }

    /// Calls an action that must succeed.
    pub async fn ok(&self, action: &str, body: Value) -> Value {
        let (status, answer) = self.api(action, body).await;
        assert_eq!(status, 200, "{action}: {answer}");
        answer
    }

    pub async fn create_model(&self, name: &str, fixture_name: &str) {
        self.ok(
            "CreateModel",
            json!({"ModelName": name, "PrimaryContainer": {"Image": "onnx", "ModelDataUrl": format!("file://{}", fixture(fixture_name).display())}}),
        )
        .await;
    }

    pub async fn create_config(&self, name: &str, variants: &[(&str, &str, f64)]) {
        let pv: Vec<Value> = variants
            .iter()
            .map(|(v, m, w)| json!({"VariantName": v, "ModelName": m, "InitialVariantWeight": w, "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}))
            .collect();
        self.ok(
            "CreateEndpointConfig",
            json!({"EndpointConfigName": name, "ProductionVariants": pv}),
        )
        .await;
    }

    /// Waits until the endpoint leaves Creating/Updating; returns its description.
    pub async fn wait_endpoint(&self, name: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let d = self
                .ok("DescribeEndpoint", json!({"EndpointName": name}))
                .await;
            let status = d["EndpointStatus"].as_str().unwrap().to_owned();
            if status != "Creating" && status != "Updating" {
                return d;
            }
            assert!(
                Instant::now() < deadline,
                "endpoint {name} stuck in {status}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn create_endpoint(&self, name: &str, config: &str) -> Value {
        self.ok(
            "CreateEndpoint",
            json!({"EndpointName": name, "EndpointConfigName": config}),
        )
        .await;
        let d = self.wait_endpoint(name).await;
        assert_eq!(d["EndpointStatus"], "InService", "{d}");
        d
    }

    /// GET /metrics: the Prometheus text.
    pub async fn metrics(&self) -> String {
        self.client
            .get(format!("http://{}/metrics", self.http))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// POST /endpoints/{name}/invocations.
    pub async fn invoke(
        &self,
        endpoint: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
        headers: &[(&str, &str)],
    ) -> Invocation {
        let mut req = self
            .client
            .post(format!(
                "http://{}/endpoints/{endpoint}/invocations",
                self.http
            ))
            .header("Content-Type", content_type)
            .body(body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        Invocation::read(req.send().await.unwrap()).await
    }
}

#[derive(Debug)]
pub struct Invocation {
    pub status: u16,
    pub variant: Option<String>,
    pub model: Option<String>,
    pub content_type: Option<String>,
    pub body: String,
}

impl Invocation {
    pub async fn read(r: reqwest::Response) -> Self {
        let h = |n: &str| r.headers().get(n).map(|v| v.to_str().unwrap().to_owned());
        let (status, variant, model, content_type) = (
            r.status().as_u16(),
            h("x-amzn-invoked-production-variant"),
            h("x-pier-model"),
            h("content-type"),
        );
        Self {
            status,
            variant,
            model,
            content_type,
            body: r.text().await.unwrap(),
        }
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

pub const IRIS_CSV: &str = "5.1,3.5,1.4,0.2\n6.7,3.0,5.2,2.3\n";
