//! Starting and stopping Pier: open the store and database, restore endpoints, bind the
//! data-plane, control-plane and (when configured) v2 gRPC listeners, serve until shutdown,
//! then drain in-flight requests.

use std::net::SocketAddr;

use std::sync::Arc;

use pier_model_store::ModelStore;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

use tower_http::trace::TraceLayer;

use crate::config::ServerConfig;
use crate::db::Db;
use crate::layers;
use crate::listener;
use crate::state::AppState;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The artifact store could not be opened.
    #[error("cannot open the model store: {0}")]
    Store(#[from] pier_model_store::StoreError),
    /// The control-plane database could not be opened (or reached); the error names it (its
    /// URL with the password redacted, or its file).
    #[error(transparent)]
    Db(crate::db::DbError),
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The control plane would listen beyond loopback with no authentication.
    #[error(
        "refusing to serve the control plane on {0} without authentication: pass \
         --credentials FILE, bind --admin to a loopback address, or pass --insecure-admin"
    )]
    InsecureAdmin(SocketAddr),
    /// The TLS certificate, key or client CA cannot be used.
    #[error("TLS: {path}: {message}")]
    Tls {
        /// The file at fault.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// The job runner could not start.
    #[error("cannot start the job runner: {0}")]
    Jobs(#[from] pier_jobs::JobsError),
    /// The model repository could not be listed.
    #[error("cannot read the model repository {path}: {source}")]
    Repository {
        /// The folder.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Restoring endpoints failed.
    #[error("cannot restore endpoints: {0}")]
    Restore(#[from] crate::error::ApiError),
}

/// A running server.
#[derive(Debug)]
pub struct RunningServer {
    /// The bound data-plane address.
    pub http_addr: SocketAddr,
    /// The bound control-plane address.
    pub admin_addr: SocketAddr,
    /// The bound v2 gRPC address, when gRPC is on.
    pub grpc_addr: Option<SocketAddr>,
    /// Shared state (for in-process callers such as the demo installer and tests).
    pub state: AppState,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<std::io::Result<()>>>,
    /// The in-process job runner; shut down before the database closes.
    runner: Option<pier_jobs::RunnerHandle>,
    /// Removes staging folders whose writer died, every [`STAGING_SWEEP_EVERY`]; stops when
    /// dropped.
    _sweeper: Option<pier_model_store::Sweeper>,
}

/// How often a running server sweeps the store's staging folders of dead writers (opening
/// the store sweeps once at start).
const STAGING_SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(300);

/// Opens everything, restores endpoints and starts serving.
pub async fn start(mut config: ServerConfig) -> Result<RunningServer, StartError> {
    // Script jobs run users' code: only on loopback, or when the operator says so.
    config.jobs.script.allowed &= config.scripts_allowed();
    let auth = &config.auth;
    if auth.credentials.is_none() && !auth.insecure_admin && !config.admin_addr.ip().is_loopback() {
        return Err(StartError::InsecureAdmin(config.admin_addr));
    }
    let (tls_http, tls_grpc) = match &config.tls {
        Some(tls) => (
            Some(crate::tls::acceptor(tls, &[b"h2", b"http/1.1"])?),
            Some(crate::tls::acceptor(tls, &[b"h2"])?),
        ),
        None => (None, None),
    };
    crate::metrics::install();
    let store = ModelStore::open_with(&config.store)?;
    let sweeper = store
        .spawn_sweeper(STAGING_SWEEP_EVERY)
        .map_err(|e| tracing::warn!(error = %e, "cannot start the staging sweeper"))
        .ok();
    let database_url = config.database_url();
    let db = Db::connect_serving(&database_url)
        .await
        .map_err(StartError::Db)?;
    let http = bind(config.http_addr).await?;
    let admin = bind(config.admin_addr).await?;
    let grpc = match config.grpc_addr {
        Some(addr) => Some(bind(addr).await?),
        None => None,
    };
    let state = AppState::new(config, store, db);
    crate::control::publish_models(&state).await?;
    // A replica joining live replicas brings their endpoints into service without rewriting
    // their records; the first one up (or a lone server) restores and finishes interrupted
    // changes.
    let others = match state.config.replication.reconcile_every {
        Some(_) => crate::control::replicas::others_live(&state).await?,
        None => 0,
    };
    if others > 0 {
        let built = crate::control::replicas::sync_now(&state).await?;
        tracing::info!(
            others,
            built,
            "joined live replicas; their endpoints are in service here"
        );
    } else {
        let restored = crate::control::restore_endpoints(&state).await?;
        if restored > 0 {
            tracing::info!(restored, "endpoints restored");
        }
    }
    if let Some(dir) = state.config.model_repository.clone() {
        let loaded = crate::repository::load(&state.data(), &dir)
            .await
            .map_err(|source| StartError::Repository {
                path: dir.display().to_string(),
                source,
            })?;
        tracing::info!(
            repository = %dir.display(),
            serving = loaded.models.len(),
            refused = loaded.refused.len(),
            "model repository read"
        );
        let models = loaded
            .models
            .into_iter()
            .map(|m| (m.name.clone(), Arc::new(m)))
            .collect();
        state.serving.update(|s| s.repository = models);
    }
    let runner = if state.config.jobs.slots > 0 {
        let runner = pier_jobs::Runner::new(
            state.db.clone(),
            state.store.clone(),
            state.config.jobs.clone(),
        )?;
        runner.set_model_source(Arc::new(crate::control::Models(
            crate::control::ControlPlaneModels::for_server(&state),
        )));
        let handle = runner.start();
        let _ = state.runner.set(runner);
        Some(handle)
    } else {
        None
    };
    let (shutdown, rx) = watch::channel(false);
    let http_addr = http.local_addr().map_err(|source| StartError::Bind {
        addr: state.config.http_addr,
        source,
    })?;
    let admin_addr = admin.local_addr().map_err(|source| StartError::Bind {
        addr: state.config.admin_addr,
        source,
    })?;
    let limits = state.config.listener.clone();
    let permits = Arc::new(Semaphore::new(limits.effective_max_connections()));
    let mut tasks = vec![
        tokio::spawn(listener::serve(
            http,
            crate::routers::data_plane(state.data()),
            limits.clone(),
            permits.clone(),
            tls_http.clone(),
            rx.clone(),
            listener::Protocol::Http,
        )),
        tokio::spawn(listener::serve(
            admin,
            crate::routers::control_plane(state.clone()),
            limits.clone(),
            permits.clone(),
            tls_http,
            rx.clone(),
            listener::Protocol::Http,
        )),
    ];
    tasks.push(tokio::spawn(crate::control::scaler::run(
        state.clone(),
        rx.clone(),
    )));
    if let Some(every) = state.config.replication.reconcile_every {
        tracing::info!(
            replica = %state.config.replication.replica_id,
            every_ms = every.as_millis() as u64,
            "following endpoint changes made through other replicas"
        );
        tasks.push(tokio::spawn(crate::control::replicas::run(
            state.clone(),
            every,
            Some(state.db.subscribe_changes()),
            rx.clone(),
        )));
        let addresses = serde_json::json!({"Http": http_addr, "Admin": admin_addr});
        tasks.push(tokio::spawn(crate::control::replicas::beat(
            state.clone(),
            addresses,
            rx.clone(),
        )));
    }
    let mut grpc_addr = None;
    if let Some(listener) = grpc {
        let addr = listener.local_addr().map_err(|source| StartError::Bind {
            addr: state.config.grpc_addr.unwrap_or(http_addr),
            source,
        })?;
        grpc_addr = Some(addr);
        let service = crate::v2::grpc::service(state.data(), state.config.limits.max_body_bytes);
        tasks.push(tokio::spawn(serve_grpc(
            listener,
            service,
            state.config.clone(),
            tls_grpc,
            permits,
            rx,
        )));
    }
    tracing::info!(%http_addr, %admin_addr, ?grpc_addr, "pier is serving");
    Ok(RunningServer {
        http_addr,
        admin_addr,
        grpc_addr,
        state,
        shutdown,
        tasks,
        runner,
        _sweeper: sweeper,
    })
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { addr, source })
}

async fn serve_grpc(
    listener: TcpListener,
    service: pier_proto::inference::grpc_inference_service_server::GrpcInferenceServiceServer<
        crate::v2::grpc::Service,
    >,
    config: ServerConfig,
    tls: Option<tokio_rustls::TlsAcceptor>,
    permits: Arc<Semaphore>,
    stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    // The listeners' stack in reading order (see `crate::layers`), hyper driving the
    // generated service directly: the body limit is the service's message limit, the
    // timeout also honours the client's `grpc-timeout`, and bearer tokens in the
    // `authorization` metadata are checked when credentials are configured.
    let service = tower::ServiceBuilder::new()
        .layer(layers::RequestIdLayer)
        .layer(TraceLayer::new_for_grpc().make_span_with(layers::RequestSpan))
        .layer(layers::TimeoutLayer::new(
            config.limits.request_timeout,
            layers::Grpc,
        ))
        .layer(layers::LoadShedLayer::new(
            config.limits.max_in_flight,
            layers::Grpc,
        ))
        .layer(crate::auth::GrpcAuthLayer::new(
            config.auth.credentials.clone(),
        ))
        .service(service);
    listener::serve(
        listener,
        service,
        config.listener.clone(),
        permits,
        tls,
        stop,
        listener::Protocol::Grpc,
    )
    .await
}

impl RunningServer {
    /// Stops accepting connections, finishes in-flight requests, closes the database.
    ///
    /// Connections get `--shutdown-grace` to finish; those still open then are closed.
    pub async fn shutdown(self) {
        self.state.begin_draining();
        let _ = self.shutdown.send(true);
        let deadline = tokio::time::Instant::now() + self.state.config.listener.shutdown_grace;
        for mut task in self.tasks {
            match tokio::time::timeout_at(deadline, &mut task).await {
                Ok(Ok(Err(e))) => tracing::warn!(error = %e, "listener ended with an error"),
                Ok(Err(e)) => tracing::warn!(error = %e, "listener task failed"),
                Ok(Ok(Ok(()))) => {}
                Err(_) => {
                    tracing::warn!(
                        "connections still open after the shutdown grace period; closing them"
                    );
                    task.abort();
                }
            }
        }
        // Captured events of the requests just answered reach their files.
        let captures: Vec<_> = self
            .state
            .serving
            .snapshot()
            .endpoints
            .values()
            .filter_map(|e| e.capture.clone())
            .collect();
        for capture in captures {
            capture.close().await;
        }
        if let Some(runner) = self.runner {
            runner.shutdown().await;
        }
        self.state.db.close().await;
        tracing::info!("pier stopped");
    }
}
