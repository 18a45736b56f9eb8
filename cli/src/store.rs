//! The model-store flags every command that opens the store shares (`--store`,
//! `--cache-dir`, `--cache-bytes`, `--s3-endpoint-url`), and opening it.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use pier_model_store::{DEFAULT_CACHE_BYTES, ModelStore, S3Config, StoreConfig, StoreLocation};

/// Where the model store is.
#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// Model store: `s3://bucket/prefix` (S3 or an S3-compatible store; credentials and
    /// region from the usual AWS_* variables and credential chain), `file:///abs/path` or a
    /// folder. Default: `<data-dir>/store`.
    #[arg(long = "store", env = "PIER_STORE", value_name = "URL")]
    pub store: Option<String>,
    /// Local read-through cache of an `s3://` store: versions are downloaded here (verified
    /// against their manifest's sha256) and loaded from here. Default: `<data-dir>/store-cache`.
    #[arg(long, env = "PIER_CACHE_DIR", value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Bound of the cache in bytes; past it the least recently used versions that are not
    /// being loaded are removed.
    #[arg(long, env = "PIER_CACHE_BYTES", default_value_t = DEFAULT_CACHE_BYTES)]
    pub cache_bytes: u64,
    /// Endpoint of an S3-compatible store for an `s3://` --store (path-style requests; plain
    /// HTTP allowed for `http://`). Default: AWS_ENDPOINT_URL_S3, else AWS_ENDPOINT_URL,
    /// else AWS itself.
    #[arg(long, env = "PIER_S3_ENDPOINT_URL", value_name = "URL")]
    pub s3_endpoint_url: Option<String>,
}

impl StoreArgs {
    /// The store's configuration for the data folder `data_dir`.
    pub fn config(&self, data_dir: &Path) -> anyhow::Result<StoreConfig> {
        let location = match &self.store {
            Some(url) => StoreLocation::parse(url).map_err(|e| anyhow::anyhow!("--store: {e}"))?,
            None => StoreLocation::Local(data_dir.join("store")),
        };
        if self.cache_bytes == 0 {
            anyhow::bail!("--cache-bytes must be at least 1");
        }
        let mut s3 = S3Config::from_env();
        if let Some(endpoint) = &self.s3_endpoint_url {
            s3 = s3.with_endpoint(endpoint);
        }
        Ok(StoreConfig {
            location,
            cache_dir: self
                .cache_dir
                .clone()
                .unwrap_or_else(|| data_dir.join("store-cache")),
            cache_bytes: self.cache_bytes,
            s3,
        })
    }

    /// Opens the store for the data folder `data_dir`.
    pub fn open(&self, data_dir: &Path) -> anyhow::Result<ModelStore> {
        let config = self.config(data_dir)?;
        ModelStore::open_with(&config)
            .with_context(|| format!("opening the model store {}", config.location))
    }
}
