//! The subcommands' bodies.

use std::time::Duration;

use anyhow::{Context, bail};
use pier_model_store::{
    Budget, Cancel, ImportLimits, ImportPolicy, LocalSource, ManifestDraft, ModelStore,
};
use pier_server::ServerConfig;
use serde_json::json;

use crate::{EndpointsCommand, ModelsCommand, ServeArgs, api};

pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    // `--model-dir`: one model from a folder (KServe), state in a scratch folder.
    let model_dir = args.model_dir.prepare()?;
    let data_dir = model_dir
        .as_ref()
        .map_or_else(|| args.data_dir.clone(), |m| m.data_dir());
    let mut config = ServerConfig::new(&data_dir);
    config.store = args.store.config(&data_dir)?;
    config.database_url = args.database.database_url;
    config.http_addr = args.http;
    config.admin_addr = args.admin;
    config.grpc_addr = Some(args.grpc);
    config.default_endpoint = args.default_endpoint;
    config.limits.max_body_bytes = args.max_body_bytes;
    config.limits.max_in_flight = args.max_in_flight;
    config.limits.max_request_rows = args.max_request_rows;
    if !(args.request_timeout > 0.0 && args.request_timeout.is_finite()) {
        bail!("--request-timeout must be a positive number of seconds");
    }
    config.limits.request_timeout = Duration::from_secs_f64(args.request_timeout);
    config.listener.max_connections = args.max_connections;
    config.listener.header_read_timeout =
        seconds("--header-read-timeout", args.header_read_timeout)?;
    config.listener.body_read_timeout = seconds("--body-read-timeout", args.body_read_timeout)?;
    config.listener.idle_timeout = seconds("--idle-timeout", args.idle_timeout)?;
    config.listener.shutdown_grace = seconds("--shutdown-grace", args.shutdown_grace)?;
    if args.max_connections == 0 {
        bail!("--max-connections must be at least 1");
    }
    if let Some(threads) = args.compute_threads {
        config.compute.threads = threads;
    }
    config.compute.queue = args.compute_queue;
    config.compute.inline = Duration::from_micros(args.inline_predict_us);
    config.jobs.slots = args.job_slots;
    // pier serve allows scripts on loopback itself (ServerConfig::scripts_allowed).
    args.scripts.apply(&mut config.jobs.script, true)?;
    config.allow_scripts = args.scripts.allow_scripts;
    if let Some(threads) = args.training_threads {
        if threads == 0 {
            bail!("--training-threads must be at least 1");
        }
        config.jobs.training_threads = threads;
    }
    if let Some(n) = args.max_instances {
        if n == 0 {
            bail!("--max-instances must be at least 1");
        }
        config.instances.max_instances = n;
    }
    config.instances.autoscaling_interval =
        seconds("--autoscaling-interval", args.autoscaling_interval)?;
    config.capture.flush_interval = seconds("--capture-flush", args.capture_flush)?;
    if args.capture_file_bytes == 0 {
        bail!("--capture-file-bytes must be at least 1");
    }
    config.capture.max_file_bytes = args.capture_file_bytes;
    config.capture.queue_bytes = args.capture_queue_bytes;
    if !(args.import_timeout > 0.0 && args.import_timeout.is_finite()) {
        bail!("--import-timeout must be a positive number of seconds");
    }
    config.import.timeout = Duration::from_secs_f64(args.import_timeout);
    config.import.max_model_bytes = args.max_model_bytes;
    for root in &args.import_roots {
        if !root.is_dir() {
            bail!("--import-root {}: not a folder", root.display());
        }
    }
    config.import.roots = args.import_roots;
    if let Some(m) = &model_dir {
        m.configure(&mut config);
    }
    if args.multi_model_memory == 0 {
        bail!("--multi-model-memory must be at least 1 byte");
    }
    config.multi_model_memory = args.multi_model_memory;
    if let Some(dir) = &args.model_repository
        && !dir.is_dir()
    {
        bail!("--model-repository {}: not a folder", dir.display());
    }
    config.model_repository = args.model_repository;
    config.replication.reconcile_every = match args.reconcile_every {
        Some(s) if !(s >= 0.0 && s.is_finite()) => {
            bail!("--reconcile-every must be a number of seconds, 0 or more")
        }
        Some(0.0) => None,
        Some(s) => Some(Duration::from_secs_f64(s)),
        // Replicas share a PostgreSQL database; SQLite has one server per database.
        None => config
            .database_url
            .as_deref()
            .is_some_and(|u| u.starts_with("postgres"))
            .then(|| Duration::from_secs(1)),
    };
    if let Some(id) = args.replica_id {
        if id.is_empty() || id.len() > 128 {
            bail!("--replica-id must be 1-128 characters");
        }
        config.replication.replica_id = id;
    }
    // Training channels on local paths go through the same import roots as CreateModel.
    config.jobs.import_policy = config
        .import
        .policy(config.admin_addr)
        .context("--import-root")?;
    if let Some(path) = &args.credentials {
        let credentials = pier_server::auth::Credentials::load(path)
            .with_context(|| format!("--credentials {}", path.display()))?;
        let (keys, tokens) = credentials.len();
        tracing::info!(keys, tokens, "authentication on");
        config.auth.credentials = Some(std::sync::Arc::new(credentials));
    } else if args.metrics_auth {
        bail!("--metrics-auth needs --credentials");
    }
    config.auth.metrics_auth = args.metrics_auth;
    config.auth.insecure_admin = args.insecure_admin;
    if let (Some(cert), Some(key)) = (args.tls_cert, args.tls_key) {
        config.tls = Some(pier_server::config::TlsConfig {
            cert,
            key,
            client_ca: args.tls_client_ca,
        });
    }

    let server = pier_server::start(config)
        .await
        .context("pier could not start")?;
    if args.demo {
        pier_server::control::demo::install(&server.state)
            .await
            .context("installing the demo")?;
    }
    // One machine-readable line for scripts and tests, on stdout.
    let grpc = server
        .grpc_addr
        .map_or_else(String::new, |a| format!(" grpc={a}"));
    println!(
        "pier: serving http={} admin={}{grpc}",
        server.http_addr, server.admin_addr
    );
    if args.demo {
        print_demo_help(&server);
    }
    let install = model_dir.as_ref().map(|m| m.install(&server.state));
    let dir = args.model_dir.model_dir.unwrap_or_default();
    tokio::select! {
        () = shutdown_signal() => {}
        reason = crate::model_dir::failure(install, dir.display().to_string()) => {
            tracing::error!(%reason, "the model could not be served; stopping");
            server.shutdown().await;
            bail!(reason);
        }
    }
    tracing::info!("shutting down: finishing in-flight requests");
    server.shutdown().await;
    Ok(())
}

/// A flag's seconds as a duration: positive and finite, at most a day.
fn seconds(flag: &str, value: f64) -> anyhow::Result<Duration> {
    if !(value > 0.0 && value <= 86_400.0) {
        bail!("{flag} must be a number of seconds in (0, 86400], not {value}");
    }
    Ok(Duration::from_secs_f64(value))
}

fn print_demo_help(server: &pier_server::RunningServer) {
    let (http, admin) = (server.http_addr, server.admin_addr);
    println!(
        r#"
Endpoint "demo" is in service: variant "logreg" (70%) and variant "mlp" (30%), iris classifiers.

  curl -s http://{http}/endpoints/demo/invocations -H 'Content-Type: text/csv' --data-binary $'5.1,3.5,1.4,0.2\n6.7,3.0,5.2,2.3' -i
  curl -s http://{http}/endpoints/demo/invocations -H 'Content-Type: application/json' -d '{{"instances": [[5.9, 3.0, 5.1, 1.8]]}}'
  curl -s http://{http}/endpoints/demo/invocations -H 'X-Amzn-SageMaker-Target-Variant: mlp' -H 'Content-Type: text/csv' -d '5.1,3.5,1.4,0.2'
  curl -s http://{http}/v2/models/demo/infer -d '{{"inputs": [{{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}}]}}'

  python3 -c 'import boto3; rt = boto3.client("sagemaker-runtime", endpoint_url="http://{http}", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"); r = rt.invoke_endpoint(EndpointName="demo", ContentType="text/csv", Body=b"5.1,3.5,1.4,0.2"); print(r["InvokedProductionVariant"], r["Body"].read().decode())'
  python3 -c 'import boto3; sm = boto3.client("sagemaker", endpoint_url="http://{admin}", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"); print(sm.describe_endpoint(EndpointName="demo")["ProductionVariants"])'

  pier endpoints update-weights demo logreg=50 mlp=50 --admin-url http://{admin}
Stop with Ctrl-C."#
    );
}

pub(crate) async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

pub async fn models(cmd: ModelsCommand) -> anyhow::Result<()> {
    match cmd {
        ModelsCommand::Push {
            name,
            path,
            runtime,
            data_dir,
            store,
        } => {
            let store = store.open(&data_dir)?;
            let manifest =
                tokio::task::spawn_blocking(move || push(&store, &name, &path, runtime)).await??;
            println!("pier://{}/{}", manifest.name, manifest.version);
        }
        ModelsCommand::List { data_dir, store } => {
            let store = store.open(&data_dir)?;
            for name in store.list_names()? {
                let versions: Vec<String> = store
                    .list_versions(&name)?
                    .iter()
                    .map(u64::to_string)
                    .collect();
                println!("{name}\tversions {}", versions.join(", "));
            }
        }
    }
    Ok(())
}

/// `pier models push`: the operator's own files, so no roots and no size limit, but still
/// regular files only. The copy goes into a staging folder named after this process, so if
/// the push is killed the next store open (any `pier` command, a server's sweep) removes it.
fn push(
    store: &ModelStore,
    name: &str,
    path: &std::path::Path,
    runtime: String,
) -> anyhow::Result<pier_model_store::Manifest> {
    pier_model_store::validate_model_name(name)?;
    let limits = ImportLimits::UNLIMITED;
    let source = LocalSource::scan(path, &ImportPolicy::anywhere(), &limits)?;
    let mut budget = Budget::new(limits, Cancel::new());
    let mut staging = store.stage()?;
    staging.add_source(&source, &mut budget)?;
    let Some(first) = staging.files().first().map(|f| f.name.clone()) else {
        bail!("{} has no files", path.display());
    };
    let staged = staging.file_path(&first).context("staged file")?;
    let (signature, properties) = match runtime.as_str() {
        "onnx" => (
            pier_runtimes::onnx::OnnxGraph::read(&staged, &first)?
                .declared_signature()?
                .to_manifest(),
            Default::default(),
        ),
        native if pier_runtimes::native::serves(native) => {
            let info = pier_runtimes::native::inspect(native, &staged)?;
            (info.signature.to_manifest(), info.properties)
        }
        _ => Default::default(),
    };
    let draft = ManifestDraft {
        runtime,
        signature,
        properties,
        provenance: [("source".to_string(), json!(path.display().to_string()))].into(),
    };
    Ok(staging.publish(name, draft)?)
}

pub async fn endpoints(cmd: EndpointsCommand) -> anyhow::Result<()> {
    match cmd {
        EndpointsCommand::List(admin) => {
            let answer = api::call(
                &admin.admin_url,
                admin.token.as_deref(),
                "ListEndpoints",
                json!({"MaxResults": 100}),
            )
            .await?;
            for e in answer["Endpoints"].as_array().into_iter().flatten() {
                println!(
                    "{}\t{}",
                    e["EndpointName"].as_str().unwrap_or(""),
                    e["EndpointStatus"].as_str().unwrap_or("")
                );
            }
        }
        EndpointsCommand::Describe { name, admin } => {
            let answer = api::call(
                &admin.admin_url,
                admin.token.as_deref(),
                "DescribeEndpoint",
                json!({"EndpointName": name}),
            )
            .await?;
            println!("{}", serde_json::to_string_pretty(&answer)?);
        }
        EndpointsCommand::Compare {
            name,
            metrics_url,
            token,
        } => crate::compare::run(&metrics_url, token.as_deref(), &name).await?,
        EndpointsCommand::UpdateWeights {
            name,
            weights,
            admin,
        } => {
            let mut desired = Vec::new();
            for pair in &weights {
                let (variant, weight) =
                    pair.split_once('=').context("weights are VARIANT=WEIGHT")?;
                let weight: f64 = weight
                    .parse()
                    .with_context(|| format!("{pair}: the weight is not a number"))?;
                desired.push(json!({"VariantName": variant, "DesiredWeight": weight}));
            }
            api::call(
                &admin.admin_url,
                admin.token.as_deref(),
                "UpdateEndpointWeightsAndCapacities",
                json!({"EndpointName": name, "DesiredWeightsAndCapacities": desired}),
            )
            .await?;
            println!("weights of {name} updated");
        }
    }
    Ok(())
}
