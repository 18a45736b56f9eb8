//! How to reach S3 ([`S3Config`]): the standard AWS credential chain and `AWS_*` variables,
//! a custom endpoint from `AWS_ENDPOINT_URL_S3` or `AWS_ENDPOINT_URL` with path-style
//! addressing, plain HTTP allowed for an `http://` endpoint. One place builds every S3 client
//! of Pier: the object-storage model store here, the job runner's channels and outputs.

use std::sync::Arc;
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::{BackoffConfig, ClientOptions, ObjectStore, RetryConfig};

/// How to reach S3: [`S3Config::from_env`] reads the standard variables; tests and callers
/// with their own settings override them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct S3Config {
    /// Custom endpoint (an S3-compatible store); requests are path-style when set.
    pub endpoint: Option<String>,
    /// Region; `us-east-1` when unset.
    pub region: Option<String>,
    /// Static credentials; unset: the AWS credential chain (`AWS_ACCESS_KEY_ID`, web
    /// identity, container and instance credentials).
    pub credentials: Option<(String, String)>,
}

impl S3Config {
    /// `AWS_ENDPOINT_URL_S3`, else `AWS_ENDPOINT_URL`, else `AWS_ENDPOINT`; `AWS_REGION`, else
    /// `AWS_DEFAULT_REGION`. Credentials come from the chain when the client is built.
    pub fn from_env() -> Self {
        let var = |names: &[&str]| {
            names
                .iter()
                .find_map(|n| std::env::var(n).ok().filter(|v| !v.is_empty()))
        };
        S3Config {
            endpoint: var(&["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_ENDPOINT"]),
            region: var(&["AWS_REGION", "AWS_DEFAULT_REGION"]),
            credentials: None,
        }
    }

    /// With a custom endpoint.
    pub fn with_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = Some(endpoint.into());
        self
    }

    /// With static credentials.
    pub fn with_credentials(
        mut self,
        key_id: impl Into<String>,
        secret: impl Into<String>,
    ) -> Self {
        self.credentials = Some((key_id.into(), secret.into()));
        self
    }

    /// A client for `bucket`. Bounded: 10 s to connect, 15 min for one request (a large
    /// object's whole body), 3 retries within 30 s.
    pub fn client(&self, bucket: &str) -> Result<Arc<dyn ObjectStore>, String> {
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_region(self.region.as_deref().unwrap_or("us-east-1"))
            .with_retry(RetryConfig {
                backoff: BackoffConfig {
                    init_backoff: Duration::from_millis(100),
                    max_backoff: Duration::from_secs(5),
                    base: 2.0,
                },
                max_retries: 3,
                retry_timeout: Duration::from_secs(30),
            });
        let env_http =
            std::env::var("AWS_ALLOW_HTTP").is_ok_and(|v| v.eq_ignore_ascii_case("true"));
        let mut options = ClientOptions::new()
            .with_connect_timeout(Duration::from_secs(10))
            .with_timeout(Duration::from_secs(15 * 60))
            .with_allow_http(env_http);
        if let Some(endpoint) = &self.endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_virtual_hosted_style_request(false);
            if endpoint.starts_with("http://") {
                options = options.with_allow_http(true);
            }
        }
        builder = builder.with_client_options(options);
        if let Some((key_id, secret)) = &self.credentials {
            builder = builder
                .with_access_key_id(key_id)
                .with_secret_access_key(secret);
        }
        builder
            .build()
            .map(|s| Arc::new(s) as Arc<dyn ObjectStore>)
            .map_err(|e| e.to_string())
    }
}

/// An error and its sources, joined with ": ".
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}
