//! `pier serve --model-dir DIR --model-name NAME [--runtime R]`: one model from a folder, as
//! a KServe ServingRuntime runs it (`deploy/kserve/`). The flags, the scratch data folder and
//! the wiring of [`pier_server::model_dir`].

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;
use pier_server::ServerConfig;
use pier_server::model_dir::ModelDir;
use tokio::task::JoinHandle;

/// `PIER_*` variables of the process that become the Model's `Environment` (its backend and
/// batching options, as CreateModel takes them).
const MODEL_ENVIRONMENT: &[&str] = &[
    "PIER_BACKEND",
    "PIER_DEVICE",
    "PIER_INTRA_OP_THREADS",
    "PIER_SESSIONS",
    "PIER_MAX_BATCH_SIZE",
    "PIER_MAX_QUEUE_DELAY_US",
    "PIER_PREFERRED_BATCH_SIZES",
    "PIER_MAX_QUEUE_SIZE",
];

/// Flags of `pier serve` for one model from a folder.
#[derive(Debug, Args)]
pub struct ModelDirArgs {
    /// Serve the one model file of this folder as KServe's storage initializer leaves it
    /// (/mnt/models): model.onnx, an XGBoost model (.bst, .json, .ubj) or a LightGBM text
    /// model (.txt, .bst). It serves as endpoint --model-name (v2 REST and gRPC, /invocations);
    /// /ping and /v2/health/ready answer 200 once it has loaded. Internal state goes to a
    /// temporary folder (no --data-dir) and no training jobs run.
    #[arg(
        long,
        value_name = "DIR",
        requires = "model_name",
        conflicts_with_all = ["data_dir", "demo"]
    )]
    pub model_dir: Option<PathBuf>,
    /// The name the --model-dir model serves under (KServe: the InferenceService's name,
    /// `{{.Name}}`): /v2/models/NAME/infer, gRPC ModelInfer model_name NAME.
    #[arg(long, value_name = "NAME", requires = "model_dir")]
    pub model_name: Option<String>,
    /// The format of the --model-dir model (KServe's modelFormat name): onnx, xgboost,
    /// lightgbm, or a built-in algorithm's (linear-learner, kmeans, pca,
    /// factorization-machines). Default: read from the file's name and first bytes.
    #[arg(long, value_name = "RUNTIME", requires = "model_dir")]
    pub runtime: Option<String>,
}

/// What `--model-dir` needs while the server runs: the model, and the scratch data folder
/// (removed when dropped).
pub struct Prepared {
    model: ModelDir,
    scratch: tempfile::TempDir,
}

impl ModelDirArgs {
    /// Checks the flags and makes the scratch data folder; `None` without `--model-dir`.
    pub fn prepare(&self) -> anyhow::Result<Option<Prepared>> {
        let (Some(dir), Some(name)) = (&self.model_dir, &self.model_name) else {
            return Ok(None);
        };
        if !dir.is_dir() {
            bail!("--model-dir {}: not a folder", dir.display());
        }
        if let Some(r) = &self.runtime
            && !pier_server::model_dir::known_runtime(r)
        {
            bail!(
                "--runtime {r}: not a runtime Pier serves (onnx, xgboost, lightgbm, linear-learner, kmeans, pca, factorization-machines)"
            );
        }
        let scratch = tempfile::Builder::new()
            .prefix("pier-model-dir-")
            .tempdir()
            .context("creating the temporary data folder (set TMPDIR to a writable folder)")?;
        let environment: BTreeMap<String, String> = MODEL_ENVIRONMENT
            .iter()
            .filter_map(|k| Some(((*k).to_owned(), std::env::var(k).ok()?)))
            .collect();
        Ok(Some(Prepared {
            model: ModelDir {
                dir: dir.clone(),
                name: name.clone(),
                runtime: self.runtime.clone(),
                environment,
            },
            scratch,
        }))
    }
}

impl Prepared {
    /// The server's data folder.
    pub fn data_dir(&self) -> PathBuf {
        self.scratch.path().to_path_buf()
    }

    /// Serves the model as the default endpoint (readiness follows it), runs no jobs, and
    /// lets CreateModel read the folder.
    pub fn configure(&self, config: &mut ServerConfig) {
        config.default_endpoint = Some(self.model.name.clone());
        config.jobs.slots = 0;
        config.import.roots.push(self.model.dir.clone());
    }

    /// Deploys the model in the background, once the listeners are up (liveness answers
    /// meanwhile; readiness waits for it).
    pub fn install(&self, state: &pier_server::AppState) -> JoinHandle<Result<(), String>> {
        let (state, model) = (state.clone(), self.model.clone());
        tokio::spawn(async move { pier_server::model_dir::install(&state, &model).await })
    }
}

/// Resolves to why the model could not be deployed; never resolves when it was (or when
/// there is none), so it can race the shutdown signal.
pub async fn failure(install: Option<JoinHandle<Result<(), String>>>, dir: String) -> String {
    let reason = match install {
        Some(handle) => match handle.await {
            Ok(Ok(())) => None,
            Ok(Err(reason)) => Some(reason),
            Err(e) => Some(format!("the deploy task failed: {e}")),
        },
        None => None,
    };
    match reason {
        Some(reason) => format!("--model-dir {dir}: {reason}"),
        None => std::future::pending().await,
    }
}
