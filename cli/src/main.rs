//! `pier`: argument parsing only. Each subcommand fills a library's typed config and calls it.

mod api;
mod commands;
mod compare;
mod database;
mod jobs;
mod loadtest;
mod model_dir;
mod store;
mod train;
mod transform;
mod tuning;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// mimalloc instead of glibc's malloc: a request allocates on a tokio worker and frees on the
/// compute pool (and back), which glibc serves slowly (`benches/http_callgrind.sh`). Through
/// `pier_alloc`, which asks mimalloc for plain blocks wherever the alignment allows.
#[global_allocator]
static ALLOCATOR: pier_alloc::Allocator = pier_alloc::Allocator;

/// Pier: SageMaker-style model hosting on your own machines, in one binary.
#[derive(Debug, Parser)]
#[command(name = "pier", version, about, long_about = None)]
struct Cli {
    /// Log filter (tracing's EnvFilter syntax), e.g. `info`, `pier_server=debug`.
    #[arg(long, global = true, env = "PIER_LOG", default_value = "info")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve models: SageMaker runtime and v2 REST on --http, v2 gRPC on --grpc, SageMaker
    /// control API on --admin.
    Serve(Box<ServeArgs>),
    /// Work with artifacts in the model store.
    #[command(subcommand)]
    Models(ModelsCommand),
    /// Inspect and change endpoints through the control API.
    #[command(subcommand)]
    Endpoints(EndpointsCommand),
    /// Train a built-in algorithm on local text/csv channels and publish it to the store;
    /// prints the metrics and the `pier://NAME/VERSION` reference.
    Train(train::TrainArgs),
    /// Run training and transform jobs from the data folder's queue, without serving (any
    /// number of workers and `pier serve`s may share one data folder; each job runs once).
    Worker(jobs::WorkerArgs),
    /// Run a batch transform job here, without a server: score every record of a folder or
    /// bucket with a Model of the data folder, one `<input key>.out` per input object
    /// (CreateTransformJob's fields as flags; `--shard I/N` for cluster schedulers).
    Transform(Box<transform::TransformArgs>),
    /// Training, tuning and transform jobs through the control API: list, describe, logs,
    /// stop, wait.
    #[command(subcommand)]
    Jobs(jobs::JobsCommand),
    /// Load-test a model server (Pier, Triton, MLServer, ...) over SageMaker invocations or
    /// the v2 protocol (REST JSON, REST binary, gRPC), closed or open loop; prints a table and
    /// writes JSON / HTML reports. `pier loadtest report` overlays saved runs in one page.
    Loadtest(Box<loadtest::LoadtestArgs>),
}

/// Options of `pier serve`.
#[derive(Debug, Args)]
struct ServeArgs {
    /// Data folder: control-plane database (pier.db) and model store (store/).
    #[arg(long, env = "PIER_DATA_DIR", default_value = "./pier-data")]
    data_dir: PathBuf,
    #[command(flatten)]
    store: store::StoreArgs,
    #[command(flatten)]
    database: database::DatabaseArgs,
    /// Data-plane address: /endpoints/{name}/invocations, /invocations, /ping.
    #[arg(long, env = "PIER_HTTP", default_value = "127.0.0.1:8080")]
    http: SocketAddr,
    /// Control-plane address (SageMaker API, no authentication yet: keep it on loopback).
    #[arg(long, env = "PIER_ADMIN", default_value = "127.0.0.1:8082")]
    admin: SocketAddr,
    /// Open Inference Protocol v2 gRPC address (inference.GRPCInferenceService; tritonclient,
    /// perf_analyzer). Message limits follow --max-body-bytes.
    #[arg(long, env = "PIER_GRPC", default_value = "127.0.0.1:8081")]
    grpc: SocketAddr,
    /// Endpoint served by POST /invocations (default: the only endpoint).
    #[arg(long, env = "PIER_DEFAULT_ENDPOINT")]
    default_endpoint: Option<String>,
    /// Publish the bundled example models and create the endpoint `demo` (70/30 A/B test),
    /// then print ready-to-paste curl and boto3 commands.
    #[arg(long)]
    demo: bool,
    #[command(flatten)]
    model_dir: model_dir::ModelDirArgs,
    /// Threads that run model code (default: number of cores).
    #[arg(long)]
    compute_threads: Option<usize>,
    /// Requests that may wait for a compute thread before new ones get 503.
    #[arg(long, default_value_t = 1024)]
    compute_queue: usize,
    /// Microseconds: an unbatched call that the model's measured cost a row says takes at
    /// most this long runs on the request's own thread, skipping the hand-off to a compute
    /// thread and back (which costs more than a small network's prediction). 0: every call
    /// runs on a compute thread.
    #[arg(long, default_value_t = 20)]
    inline_predict_us: u64,
    /// Largest request body in bytes (SageMaker: 6 MB); also the v2 gRPC message limit.
    #[arg(long, default_value_t = 6 * 1024 * 1024)]
    max_body_bytes: usize,
    /// Seconds a request may take before it is answered with a ModelError (gRPC:
    /// DEADLINE_EXCEEDED, sooner when the client's `grpc-timeout` is shorter).
    #[arg(long, default_value_t = 60.0)]
    request_timeout: f64,
    /// Requests in flight at once before new ones get 503.
    #[arg(long, default_value_t = 4096)]
    max_in_flight: usize,
    /// Most variant instances over all endpoints of this server (default: number of cores,
    /// at least 64); a Create/Update asking for more is refused with ResourceLimitExceeded.
    #[arg(long)]
    max_instances: Option<u32>,
    /// Seconds between two evaluations of the autoscaler's target-tracking policies.
    #[arg(long, default_value_t = 10.0)]
    autoscaling_interval: f64,
    /// Data capture: seconds a captured event may wait before its file is written (each
    /// write is a new, complete .jsonl file).
    #[arg(long, default_value_t = 10.0)]
    capture_flush: f64,
    /// Data capture: bytes after which a capture file is written at once.
    #[arg(long, default_value_t = 8 << 20)]
    capture_file_bytes: usize,
    /// Data capture: bytes of captured requests and answers waiting per endpoint; past it
    /// events are dropped (pier_capture_dropped_total), never the request delayed.
    #[arg(long, default_value_t = 64 << 20)]
    capture_queue_bytes: usize,
    /// Most rows one inference request may carry (the first dimension of a batched input),
    /// on every protocol; v2's model configuration reports it as max_batch_size.
    #[arg(long, default_value_t = pier_server::config::DEFAULT_MAX_REQUEST_ROWS)]
    max_request_rows: usize,
    /// Connections open at once over all listeners (HTTP, admin, gRPC); more are closed on
    /// accept. Lowered to what the open-file limit allows.
    #[arg(long, default_value_t = 10_000)]
    max_connections: usize,
    /// Seconds a client may take to send a request's headers; also the longest an HTTP/1
    /// keep-alive connection waits for its next request.
    #[arg(long, default_value_t = 30.0)]
    header_read_timeout: f64,
    /// Seconds a request body may take to arrive whole (a slower body is refused with 400).
    #[arg(long, default_value_t = 60.0)]
    body_read_timeout: f64,
    /// Seconds a connection may stay silent, with no request in progress, before it is closed.
    #[arg(long, default_value_t = 120.0)]
    idle_timeout: f64,
    /// Seconds shutdown (SIGTERM, Ctrl-C) waits for open connections to finish before
    /// closing them.
    #[arg(long, default_value_t = 30.0)]
    shutdown_grace: f64,
    /// Folder that CreateModel may import local files from (repeatable). Without one, local
    /// imports are allowed from anywhere while --admin is on loopback, and refused beyond.
    #[arg(long = "import-root", value_name = "DIR")]
    import_roots: Vec<PathBuf>,
    /// Most bytes one import may copy (a model.tar.gz counts decompressed).
    #[arg(long, default_value_t = 2 << 30)]
    max_model_bytes: u64,
    /// Seconds one import may take.
    #[arg(long, default_value_t = 300.0)]
    import_timeout: f64,
    /// AWS shared-credentials file (`[name]` sections with aws_access_key_id and
    /// aws_secret_access_key, optional `pier_planes = admin,invoke` and `pier_token = ...`):
    /// every control- and data-plane request then needs a valid SigV4 signature or
    /// `Authorization: Bearer <pier_token>`. /ping, /v2/health/* and /metrics stay open.
    #[arg(long, value_name = "FILE")]
    credentials: Option<PathBuf>,
    /// Require credentials for /metrics too (with --credentials).
    #[arg(long)]
    metrics_auth: bool,
    /// Allow --admin on a non-loopback address without --credentials.
    #[arg(long)]
    insecure_admin: bool,
    /// Training jobs run at once by the in-process job runner (0: none; jobs then wait for a
    /// `pier worker`).
    #[arg(long, default_value_t = 1)]
    job_slots: usize,
    /// Threads of the training pool (its own, never the serving compute threads; default:
    /// half the cores).
    #[arg(long)]
    training_threads: Option<usize>,
    #[command(flatten)]
    scripts: jobs::ScriptArgs,
    /// Bytes of multi-model endpoints' models kept loaded, over all of them (a model counts
    /// its unpacked artifact size, measured at load); past it the least recently used model
    /// is evicted and loads again on its next request.
    #[arg(long, value_name = "BYTES", default_value_t = pier_server::config::DEFAULT_MULTI_MODEL_MEMORY)]
    multi_model_memory: u64,
    /// A Triton model repository (`<model>/config.pbtxt`, `<model>/<version>/model.onnx`):
    /// every model in it is served under the v2 protocol (REST and gRPC) with its Triton
    /// name and versions. A model Pier cannot serve is refused alone, with the reason logged.
    #[arg(long, value_name = "DIR")]
    model_repository: Option<PathBuf>,
    /// Seconds between passes that bring endpoint changes made through other replicas (on the
    /// same database) into service here; a database change notification also starts one.
    /// Default: 1 with a shared database (PostgreSQL), off with the embedded SQLite one;
    /// 0 turns it off.
    #[arg(long, value_name = "SECONDS")]
    reconcile_every: Option<f64>,
    /// This replica's name in heartbeats and DescribeEndpoint's PierReplicas
    /// (default: <hostname>-<pid>).
    #[arg(long, value_name = "NAME")]
    replica_id: Option<String>,
    /// PEM certificate chain: every listener (HTTP, admin, gRPC) then speaks TLS.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// PEM CA certificates: clients must present a certificate signed by one (mTLS).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_client_ca: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum ModelsCommand {
    /// Publish a model file, a folder of files or a model.tar.gz as the next version of NAME;
    /// prints the `pier://NAME/VERSION` reference to use as CreateModel's ModelDataUrl.
    Push {
        /// Artifact name (letters, digits, '-'; at most 63 characters).
        name: String,
        /// Model file, a folder whose files are all published, or a model.tar.gz.
        path: PathBuf,
        /// Runtime that serves it.
        #[arg(long, default_value = "onnx")]
        runtime: String,
        /// Data folder holding the store.
        #[arg(long, env = "PIER_DATA_DIR", default_value = "./pier-data")]
        data_dir: PathBuf,
        #[command(flatten)]
        store: store::StoreArgs,
    },
    /// List artifacts and their versions in the store.
    List {
        /// Data folder holding the store.
        #[arg(long, env = "PIER_DATA_DIR", default_value = "./pier-data")]
        data_dir: PathBuf,
        #[command(flatten)]
        store: store::StoreArgs,
    },
}

#[derive(Debug, Subcommand)]
enum EndpointsCommand {
    /// List endpoints and their status.
    List(AdminArgs),
    /// Show one endpoint: config, status, variants, weights and model versions.
    Describe {
        /// Endpoint name.
        name: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Live against shadow variants (ShadowProductionVariants): requests, mean, p50 and p99
    /// latency per variant and each shadow's agreement with the live answer, read from a
    /// running server's /metrics.
    Compare {
        /// Endpoint name.
        name: String,
        /// The data plane's metrics URL of the running `pier serve`.
        #[arg(
            long,
            env = "PIER_METRICS_URL",
            default_value = "http://127.0.0.1:8080/metrics"
        )]
        metrics_url: String,
        /// Bearer token, when the server requires credentials for /metrics.
        #[arg(long, env = "PIER_TOKEN", hide_env_values = true)]
        token: Option<String>,
    },
    /// Set variant weights, e.g. `pier endpoints update-weights demo logreg=50 mlp=50`.
    UpdateWeights {
        /// Endpoint name.
        name: String,
        /// VARIANT=WEIGHT pairs (weights are relative: share = weight / sum).
        #[arg(required = true)]
        weights: Vec<String>,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

/// Where the control API is.
#[derive(Debug, Args)]
pub(crate) struct AdminArgs {
    /// Control-plane URL of a running `pier serve`.
    #[arg(long, env = "PIER_ADMIN_URL", default_value = "http://127.0.0.1:8082")]
    pub(crate) admin_url: String,
    /// Bearer token (a `pier_token` of the server's --credentials file).
    #[arg(long, env = "PIER_TOKEN", hide_env_values = true)]
    pub(crate) token: Option<String>,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&cli.log).unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => commands::serve(*args).await,
            Command::Models(cmd) => commands::models(cmd).await,
            Command::Endpoints(cmd) => commands::endpoints(cmd).await,
            Command::Train(args) => train::train(args).await,
            Command::Worker(args) => jobs::worker(args).await,
            Command::Transform(args) => transform::transform(*args).await,
            Command::Jobs(cmd) => jobs::jobs(cmd).await,
            Command::Loadtest(args) => loadtest::loadtest(*args).await,
        }
    })
}
