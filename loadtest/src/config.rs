//! What to run: the typed settings `pier loadtest` fills from its flags, checked by
//! [`LoadtestConfig::validate`] before anything is sent.

use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Result, invalid};

/// Wire protocol of the requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// SageMaker runtime: `POST {url}/endpoints/{model}/invocations`, any content type.
    Sagemaker,
    /// Open Inference Protocol v2 REST with JSON tensors: `POST {url}/v2/models/{model}/infer`.
    V2Json,
    /// v2 REST with the binary tensor extension (`Inference-Header-Content-Length`).
    V2Binary,
    /// v2 gRPC `inference.GRPCInferenceService/ModelInfer` with `raw_input_contents`.
    V2Grpc,
}

impl Protocol {
    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Sagemaker => "sagemaker",
            Self::V2Json => "v2-json",
            Self::V2Binary => "v2-binary",
            Self::V2Grpc => "v2-grpc",
        }
    }
}

/// Where the request body comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum PayloadSource {
    /// A file: the body itself for SageMaker; a v2 JSON infer request for the v2 protocols
    /// (encoded as JSON, binary tensors or gRPC as the protocol needs).
    File(PathBuf),
    /// Random values. v2: shaped by the model's metadata, `-1` dimensions = `rows`.
    /// SageMaker: `rows` CSV lines of `features` values (`features` from the v2 metadata of
    /// the same name when not given).
    Generate {
        /// Number of features per CSV row (SageMaker only).
        features: Option<usize>,
        /// Seed of the random values.
        seed: u64,
    },
}

/// How load is offered.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LoadShape {
    /// `concurrency` clients, each with its own connection, each sending its next request as
    /// soon as the previous one answered.
    Closed {
        /// Number of clients.
        concurrency: u64,
    },
    /// Requests due at a fixed `rate` (evenly spaced); latency counts from the due time.
    Open {
        /// Requests per second.
        rate: f64,
        /// Requests in flight at once (HTTP keep-alive connections, gRPC streams); due
        /// requests beyond these wait, and the wait counts in their latency.
        connections: u64,
        /// Most requests waiting or in flight; a due request past this is not sent and is
        /// counted as `not_sent`.
        max_outstanding: u64,
    },
}

/// When the measurement ends.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum StopAt {
    /// After this long (requests in flight then are awaited and counted).
    Duration(Duration),
    /// After this many measured requests.
    Requests(u64),
}

/// One load test.
#[derive(Debug, Clone)]
pub struct LoadtestConfig {
    /// Name of the run in reports (default: protocol and load shape).
    pub label: Option<String>,
    /// Server base URL, `http://HOST:PORT` (the gRPC address for `V2Grpc`).
    pub url: String,
    /// Further servers serving the same model (replicas): connections are spread over `url`
    /// and these round-robin, as an L4 load balancer would (model metadata comes from `url`).
    pub replicas: Vec<String>,
    /// Protocol.
    pub protocol: Protocol,
    /// Endpoint (SageMaker) or model (v2) name.
    pub model: String,
    /// v2 model version (default: the server's choice).
    pub model_version: Option<String>,
    /// Payload.
    pub payload: PayloadSource,
    /// Rows per request: the size of `-1` dimensions and of generated CSV bodies; for a file
    /// payload, only what rows/s counts (v2 files: the first input's first dimension wins).
    pub rows: u64,
    /// SageMaker `Content-Type` (default `text/csv`).
    pub content_type: Option<String>,
    /// SageMaker `Accept`.
    pub accept: Option<String>,
    /// Extra HTTP headers (`X-Amzn-SageMaker-Target-Variant`, ...); gRPC: metadata.
    pub headers: Vec<(String, String)>,
    /// Load shape.
    pub load: LoadShape,
    /// Warm-up before the measurement, same load, not recorded.
    pub warmup: Duration,
    /// End of the measurement.
    pub stop: StopAt,
    /// Bound on each request, connecting included.
    pub timeout: Duration,
    /// A successful answer must contain this text, else it counts as `body_mismatch`.
    pub expect_contains: Option<String>,
    /// gRPC: closed-loop clients per HTTP/2 connection (channel).
    pub grpc_clients_per_channel: u64,
    /// Show a progress bar on stderr (only drawn on a terminal).
    pub progress: bool,
}

impl LoadtestConfig {
    /// A closed-loop, 10-second, one-client run with a generated payload.
    pub fn new(url: impl Into<String>, protocol: Protocol, model: impl Into<String>) -> Self {
        Self {
            label: None,
            url: url.into(),
            replicas: Vec::new(),
            protocol,
            model: model.into(),
            model_version: None,
            payload: PayloadSource::Generate {
                features: None,
                seed: 0,
            },
            rows: 1,
            content_type: None,
            accept: None,
            headers: Vec::new(),
            load: LoadShape::Closed { concurrency: 1 },
            warmup: Duration::ZERO,
            stop: StopAt::Duration(Duration::from_secs(10)),
            timeout: Duration::from_secs(10),
            expect_contains: None,
            grpc_clients_per_channel: 8,
            progress: false,
        }
    }

    /// Every server the load goes to: `url`, then `replicas`.
    pub fn urls(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.url.as_str()).chain(self.replicas.iter().map(String::as_str))
    }

    /// The target as reports name it: the URLs joined by commas.
    pub fn target(&self) -> String {
        self.urls().collect::<Vec<_>>().join(",")
    }

    /// The label in reports.
    pub fn label(&self) -> String {
        self.label.clone().unwrap_or_else(|| match self.load {
            LoadShape::Closed { concurrency } => {
                format!("{} c={concurrency}", self.protocol.name())
            }
            LoadShape::Open { rate, .. } => format!("{} {rate} req/s", self.protocol.name()),
        })
    }

    /// Checks every setting and combination; the message names the flag.
    pub fn validate(&self) -> Result<()> {
        for given in self.urls() {
            let url = given
                .parse::<http::Uri>()
                .map_err(|e| invalid(format!("--url {given}: {e}")))?;
            if url.scheme_str() != Some("http") || url.authority().is_none() {
                return Err(invalid(format!(
                    "--url {given}: give http://HOST:PORT (TLS is not supported)"
                )));
            }
        }
        if self.model.is_empty() {
            return Err(invalid("--model must not be empty"));
        }
        if self.rows == 0 {
            return Err(invalid("--rows must be at least 1"));
        }
        match self.load {
            LoadShape::Closed { concurrency: 0 } => {
                return Err(invalid("--concurrency must be at least 1"));
            }
            LoadShape::Open {
                rate,
                connections,
                max_outstanding,
            } => {
                if !(rate > 0.0 && rate.is_finite()) {
                    return Err(invalid(
                        "--rate must be a positive number of requests per second",
                    ));
                }
                if connections == 0 {
                    return Err(invalid("--connections must be at least 1"));
                }
                if max_outstanding < connections {
                    return Err(invalid(format!(
                        "--max-outstanding ({max_outstanding}) must be at least --connections ({connections})"
                    )));
                }
            }
            LoadShape::Closed { .. } => {}
        }
        match self.stop {
            StopAt::Duration(d) if d.is_zero() => {
                return Err(invalid("--duration must be positive"));
            }
            StopAt::Requests(0) => return Err(invalid("--requests must be at least 1")),
            _ => {}
        }
        if self.timeout.is_zero() {
            return Err(invalid("--timeout must be positive"));
        }
        if self.grpc_clients_per_channel == 0 {
            return Err(invalid("--grpc-clients-per-channel must be at least 1"));
        }
        if self.protocol != Protocol::Sagemaker {
            if self.content_type.is_some() || self.accept.is_some() {
                return Err(invalid(
                    "--content-type and --accept apply to --protocol sagemaker only (v2 sets its own)",
                ));
            }
            if let PayloadSource::Generate {
                features: Some(_), ..
            } = self.payload
            {
                return Err(invalid(
                    "--features applies to --protocol sagemaker only (v2 payloads follow the model's metadata)",
                ));
            }
        }
        if let PayloadSource::Generate {
            features: Some(0), ..
        } = self.payload
        {
            return Err(invalid("--features must be at least 1"));
        }
        for (name, value) in &self.headers {
            if http::HeaderName::try_from(name.as_str()).is_err()
                || http::HeaderValue::try_from(value.as_str()).is_err()
            {
                return Err(invalid(format!(
                    "--header {name}: {value}: not a valid header"
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok() -> LoadtestConfig {
        LoadtestConfig::new("http://127.0.0.1:8080", Protocol::V2Json, "demo")
    }

    fn err(change: impl FnOnce(&mut LoadtestConfig)) -> String {
        let mut c = ok();
        change(&mut c);
        c.validate().unwrap_err().to_string()
    }

    #[test]
    fn validation_names_the_flag() {
        ok().validate().unwrap();
        assert!(err(|c| c.url = "127.0.0.1:8080".into()).contains("--url"));
        assert!(err(|c| c.url = "https://x:1".into()).contains("TLS"));
        assert!(
            err(|c| c.replicas = vec!["http://a:1".into(), "b:2".into()]).contains("--url b:2")
        );
        assert!(err(|c| c.rows = 0).contains("--rows"));
        assert!(err(|c| c.load = LoadShape::Closed { concurrency: 0 }).contains("--concurrency"));
        let open = |rate, connections, max_outstanding| LoadShape::Open {
            rate,
            connections,
            max_outstanding,
        };
        assert!(err(|c| c.load = open(0.0, 1, 1)).contains("--rate"));
        assert!(err(|c| c.load = open(f64::NAN, 1, 1)).contains("--rate"));
        assert!(err(|c| c.load = open(10.0, 8, 4)).contains("--max-outstanding"));
        assert!(err(|c| c.stop = StopAt::Requests(0)).contains("--requests"));
        assert!(err(|c| c.stop = StopAt::Duration(Duration::ZERO)).contains("--duration"));
        assert!(err(|c| c.timeout = Duration::ZERO).contains("--timeout"));
        assert!(err(|c| c.content_type = Some("text/csv".into())).contains("sagemaker only"));
        assert!(
            err(|c| c.payload = PayloadSource::Generate {
                features: Some(4),
                seed: 0
            })
            .contains("--features")
        );
        assert!(err(|c| c.headers = vec![("bad header".into(), "x".into())]).contains("--header"));
        let mut sm = ok();
        sm.protocol = Protocol::Sagemaker;
        sm.content_type = Some("application/json".into());
        sm.validate().unwrap();
    }

    #[test]
    fn default_labels_say_protocol_and_load() {
        let mut c = ok();
        c.load = LoadShape::Closed { concurrency: 8 };
        assert_eq!(c.label(), "v2-json c=8");
        c.load = LoadShape::Open {
            rate: 250.0,
            connections: 4,
            max_outstanding: 10,
        };
        assert_eq!(c.label(), "v2-json 250 req/s");
    }
}
