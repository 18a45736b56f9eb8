//! Typed server configuration. Only the CLI knows flags; it fills these structs.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Everything `pier serve` needs.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Data folder: `pier.db` (control-plane state) and `store/` (artifacts).
    pub data_dir: PathBuf,
    /// The model store: `<data_dir>/store` by default, or `s3://bucket/prefix` with its
    /// local cache (`--store`, `--cache-dir`, `--cache-bytes`).
    pub store: pier_model_store::StoreConfig,
    /// The control-plane database (`sqlite://PATH` or `postgres://…`); `None` is SQLite in
    /// the data folder (`pier.db`), locked to this server. On PostgreSQL several servers share
    /// the database.
    pub database_url: Option<String>,
    /// Data-plane address (SageMaker runtime API, `/ping`, `/invocations`).
    pub http_addr: SocketAddr,
    /// Control-plane address (SageMaker API). Keep it on loopback unless protected.
    pub admin_addr: SocketAddr,
    /// Open Inference Protocol v2 gRPC address (`inference.GRPCInferenceService`); `None`
    /// starts no gRPC listener. `pier serve` defaults to `127.0.0.1:8081`.
    pub grpc_addr: Option<SocketAddr>,
    /// Endpoint that `POST /invocations` serves; `None` means "the only endpoint".
    pub default_endpoint: Option<String>,
    /// Request limits.
    pub limits: Limits,
    /// Compute pool sizing.
    pub compute: ComputeConfig,
    /// Connection bounds of every listener.
    pub listener: crate::listener::ListenerLimits,
    /// Imports of local model files and archives (CreateModel's `ModelDataUrl`).
    pub import: ImportConfig,
    /// Authentication of the control and data planes.
    pub auth: AuthConfig,
    /// TLS on every listener; `None` serves cleartext.
    pub tls: Option<TlsConfig>,
    /// The in-process job runner (`--job-slots`, `--training-threads`); `slots: 0` runs
    /// none (jobs then wait for a `pier worker`).
    pub jobs: pier_jobs::RunnerConfig,
    /// Instance counts and the autoscaler.
    pub instances: InstancesConfig,
    /// Data capture's writers (`--capture-flush`, `--capture-file-bytes`).
    pub capture: crate::capture::CaptureSettings,
    /// Run script jobs (users' training code, as this server's user) even though the admin
    /// port listens beyond loopback (`--allow-scripts`). On loopback they run regardless.
    pub allow_scripts: bool,
    /// Bytes of multi-model endpoints' targets kept loaded (their unpacked sizes added up);
    /// past it the least recently used are evicted.
    pub multi_model_memory: u64,
    /// A Triton model repository to serve under v2 (`pier serve --model-repository`).
    pub model_repository: Option<PathBuf>,
    /// Replicas on one shared database (`--reconcile-every`, `--replica-id`).
    pub replication: ReplicationConfig,
}

/// How a replica follows the endpoint records other replicas change.
#[derive(Clone, Debug)]
pub struct ReplicationConfig {
    /// Reconcile with the records this often (and at once on a database change
    /// notification); `None` never reconciles (a lone server owns its database).
    pub reconcile_every: Option<Duration>,
    /// How often this replica records its heartbeat (what it serves).
    pub heartbeat_every: Duration,
    /// This replica's name in heartbeats and `PierReplicas`.
    pub replica_id: String,
}

impl Default for ReplicationConfig {
    fn default() -> Self {
        Self {
            reconcile_every: None,
            heartbeat_every: Duration::from_secs(2),
            replica_id: default_replica_id(),
        }
    }
}

/// `<host>-<pid>`: unique among live replicas.
pub fn default_replica_id() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "pier".into());
    format!("{host}-{}", std::process::id())
}

/// The default of [`ServerConfig::multi_model_memory`]: 2 GiB.
pub const DEFAULT_MULTI_MODEL_MEMORY: u64 = 2 << 30;

impl ServerConfig {
    /// Defaults for a data folder, with the default ports.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        let data_dir: PathBuf = data_dir.into();
        let mut jobs = pier_jobs::RunnerConfig::default();
        // Script jobs' folders (mirroring /opt/ml) and cached virtual environments.
        jobs.script.work_dir = data_dir.join("jobs");
        let mut store = pier_model_store::StoreConfig::local(data_dir.join("store"));
        store.cache_dir = data_dir.join("store-cache");
        Self {
            store,
            data_dir,
            database_url: None,
            http_addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            admin_addr: SocketAddr::from(([127, 0, 0, 1], 8082)),
            grpc_addr: None,
            default_endpoint: None,
            limits: Limits::default(),
            compute: ComputeConfig::default(),
            listener: crate::listener::ListenerLimits::default(),
            import: ImportConfig::default(),
            auth: AuthConfig::default(),
            tls: None,
            jobs,
            instances: InstancesConfig::default(),
            capture: crate::capture::CaptureSettings::default(),
            allow_scripts: false,
            multi_model_memory: DEFAULT_MULTI_MODEL_MEMORY,
            model_repository: None,
            replication: ReplicationConfig::default(),
        }
    }

    /// Whether script jobs may run: the admin port on loopback, or `allow_scripts`.
    pub fn scripts_allowed(&self) -> bool {
        self.allow_scripts || self.admin_addr.ip().is_loopback()
    }

    /// The database URL to open: [`ServerConfig::database_url`], or SQLite in the data folder.
    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| pier_db::Db::default_url(&self.data_dir))
    }

    /// The default (local) artifact store folder.
    pub fn store_dir(&self) -> PathBuf {
        self.data_dir.join("store")
    }
}

/// The default of [`Limits::max_request_rows`].
pub const DEFAULT_MAX_REQUEST_ROWS: usize = 1 << 20;

/// Bounds on what one request may cost.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest request body in bytes (SageMaker's is 6 MB). The same bound applies to v2
    /// REST bodies (JSON and binary tensors alike) and to v2 gRPC messages both ways, so a
    /// payload that fits one protocol fits the others (gRPC's own 4 MB default is not used).
    pub max_body_bytes: usize,
    /// Longest a request may take before it is answered with an error (SageMaker: 60 s).
    pub request_timeout: Duration,
    /// Inferences in flight at once over every data-plane protocol (the invocation core's
    /// admission), and requests of any kind one listener holds at once (its load-shedding
    /// layer); more are answered 503 (the control plane: `ThrottlingException`) at once.
    pub max_in_flight: usize,
    /// Most rows (first dimension) one request may carry when the model's inputs lead with
    /// an open batch dimension, whatever the protocol; v2's ModelConfig reports it as
    /// `max_batch_size`. SageMaker bounds invocations by bytes only, so the default is large
    /// enough that a full 6 MB CSV body of a narrow model fits.
    pub max_request_rows: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 6 * 1024 * 1024,
            request_timeout: Duration::from_secs(60),
            max_in_flight: 4096,
            max_request_rows: DEFAULT_MAX_REQUEST_ROWS,
        }
    }
}

/// The least default of [`InstancesConfig::max_instances`].
pub const MIN_DEFAULT_MAX_INSTANCES: u32 = 64;

/// Variant instance counts (Triton's `instance_group` count) and the autoscaler.
#[derive(Clone, Debug)]
pub struct InstancesConfig {
    /// Most instances over all variants of this server (default: the number of cores, at
    /// least [`MIN_DEFAULT_MAX_INSTANCES`], so that a small machine still holds as many
    /// single-instance endpoints as before counts were enforced); a change past it is
    /// refused with `ResourceLimitExceeded`.
    pub max_instances: u32,
    /// How often the autoscaler evaluates its target-tracking policies.
    pub autoscaling_interval: Duration,
}

impl Default for InstancesConfig {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self {
            max_instances: u32::try_from(cores)
                .unwrap_or(u32::MAX)
                .max(MIN_DEFAULT_MAX_INSTANCES),
            autoscaling_interval: Duration::from_secs(10),
        }
    }
}

/// Default [`ComputeConfig::inline`]: short enough that a tokio worker is never held long
/// (tokio's guidance is tens of microseconds between awaits), long enough for small
/// networks, linear models and one-row tree ensembles.
pub const DEFAULT_INLINE_PREDICT: Duration = Duration::from_micros(20);

/// The dedicated threads that run model code.
#[derive(Clone, Debug)]
pub struct ComputeConfig {
    /// Threads (default: the number of cores).
    pub threads: usize,
    /// Jobs that may wait for a thread; more are answered 503 at once.
    pub queue: usize,
    /// An unbatched call whose model's measured cost puts it at or under this runs on the
    /// request's own thread instead of a compute thread (zero: every call hops).
    pub inline: Duration,
}

impl Default for ComputeConfig {
    fn default() -> Self {
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self {
            threads,
            queue: 1024,
            inline: DEFAULT_INLINE_PREDICT,
        }
    }
}

/// Imports of client-named local paths (CreateModel's `ModelDataUrl`; later training
/// channels, transform input and output).
#[derive(Clone, Debug)]
pub struct ImportConfig {
    /// Folders local imports are confined to (`--import-root`). Empty: any local path while
    /// the control plane listens on loopback only, none when it listens beyond.
    pub roots: Vec<PathBuf>,
    /// Most bytes one import may copy in all, decompressed archive bytes included.
    pub max_model_bytes: u64,
    /// Most files (and archive entries) one import may hold.
    pub max_files: u64,
    /// Longest one import may take.
    pub timeout: Duration,
}

impl Default for ImportConfig {
    fn default() -> Self {
        let limits = pier_model_store::ImportLimits::default();
        Self {
            roots: Vec::new(),
            max_model_bytes: limits.max_bytes,
            max_files: limits.max_files,
            timeout: limits.timeout.unwrap_or(Duration::from_secs(300)),
        }
    }
}

impl ImportConfig {
    /// The limits of one import.
    pub fn limits(&self) -> pier_model_store::ImportLimits {
        pier_model_store::ImportLimits {
            max_bytes: self.max_model_bytes,
            max_files: self.max_files,
            timeout: Some(self.timeout),
        }
    }

    /// Which local paths a client of a control plane listening on `admin_addr` may name.
    pub fn policy(
        &self,
        admin_addr: SocketAddr,
    ) -> Result<pier_model_store::ImportPolicy, pier_model_store::StoreError> {
        use pier_model_store::ImportPolicy;
        if !self.roots.is_empty() {
            return ImportPolicy::under_roots(&self.roots);
        }
        if admin_addr.ip().is_loopback() {
            return Ok(ImportPolicy::anywhere());
        }
        Ok(ImportPolicy::refused(format!(
            "local paths are refused: the control plane listens on {admin_addr}, beyond loopback; \
             start pier serve with --import-root DIR to allow imports from DIR"
        )))
    }
}

/// Who may call the control and data planes.
#[derive(Clone, Debug, Default)]
pub struct AuthConfig {
    /// The parsed credentials file (`--credentials`): with it, every request needs a valid
    /// SigV4 signature or bearer token of a key allowed on its plane. `None`: no checks.
    pub credentials: Option<std::sync::Arc<crate::auth::Credentials>>,
    /// Whether `/metrics` needs credentials too (`--metrics-auth`).
    pub metrics_auth: bool,
    /// Allow the control plane beyond loopback without credentials (`--insecure-admin`).
    pub insecure_admin: bool,
}

/// TLS (rustls) on every listener.
#[derive(Clone, Debug)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first (`--tls-cert`).
    pub cert: PathBuf,
    /// PEM private key (`--tls-key`).
    pub key: PathBuf,
    /// PEM CA certificates that client certificates must chain to (`--tls-client-ca`);
    /// `None`: no client certificates asked for.
    pub client_ca: Option<PathBuf>,
}
