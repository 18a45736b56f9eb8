//! `pier transform`: run a batch transform job locally, without a server: the same fields as
//! CreateTransformJob as flags, the Model read from the data folder's control plane (as
//! `pier serve` would load it), and a progress bar (indicatif, on stderr; bytes read, records
//! per second, ETA). `--shard I/N`, or `JOB_COMPLETION_INDEX` and `NUM_SHARDS` as a Kubernetes
//! Indexed Job sets them, transforms the I-th of N disjoint sets of input objects (object k of
//! the key-ordered list goes to shard k mod N).
//!
//! The work is `pier_jobs::transform::run_local`; this module only parses flags and draws.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use pier_jobs::transform::engine::Progress;
use pier_jobs::transform::record::{
    DataProcessing, TransformDataSource, TransformInput, TransformOutput, TransformResources,
    TransformS3DataSource,
};
use pier_jobs::transform::{LocalOptions, ShardSpec, TransformJob, run_local};

/// Options of `pier transform`.
#[derive(Debug, Args)]
pub struct TransformArgs {
    /// Data folder whose control plane holds the Model (pier.db and store/).
    #[arg(long, env = "PIER_DATA_DIR", default_value = "./pier-data")]
    data_dir: PathBuf,
    #[command(flatten)]
    store: crate::store::StoreArgs,
    #[command(flatten)]
    database: crate::database::DatabaseArgs,
    /// ModelName: a Model created with CreateModel on this data folder.
    #[arg(long)]
    model: String,
    /// S3Uri of the input: s3://bucket/prefix, file:///abs/path or a local path.
    #[arg(long)]
    input: String,
    /// S3DataType: S3Prefix (every object under the prefix) or ManifestFile.
    #[arg(long, default_value = "S3Prefix")]
    data_type: String,
    /// ContentType of the input: text/csv, application/json, application/jsonlines or
    /// application/x-recordio-protobuf (with --split-type RecordIO).
    #[arg(long, default_value = "text/csv")]
    content_type: String,
    /// CompressionType: None or Gzip.
    #[arg(long, default_value = "None")]
    compression_type: String,
    /// SplitType: Line (a record a line), RecordIO (a record a RecordIO frame) or None (each
    /// object is one request).
    #[arg(long, default_value = "Line")]
    split_type: String,
    /// BatchStrategy: MultiRecord (as many records as fit --max-payload-mb per request) or
    /// SingleRecord.
    #[arg(long, default_value = "MultiRecord")]
    batch_strategy: String,
    /// MaxPayloadInMB: the largest request (1-100).
    #[arg(long, default_value_t = 6)]
    max_payload_mb: i64,
    /// MaxConcurrentTransforms: requests predicted at once per object (0: up to 8, by cores).
    #[arg(long, default_value_t = 0)]
    max_concurrent_transforms: i64,
    /// S3OutputPath: where `<input key>.out` objects go (s3://…, file:///… or a folder).
    #[arg(long)]
    output: String,
    /// Accept: the output's content type (default: the input's; JSON for recordio-protobuf).
    #[arg(long)]
    accept: Option<String>,
    /// AssembleWith: None (responses concatenated) or Line (each response ends a line).
    #[arg(long, default_value = "Line")]
    assemble_with: String,
    /// InstanceCount: input objects transformed at once.
    #[arg(long, default_value_t = 1)]
    instance_count: i64,
    /// DataProcessing.InputFilter: JSONPath of what the model sees ($[1:], $.features).
    #[arg(long)]
    input_filter: Option<String>,
    /// DataProcessing.OutputFilter: JSONPath of what is written ($[0,-1]).
    #[arg(long)]
    output_filter: Option<String>,
    /// DataProcessing.JoinSource: None or Input (each output joined to its input record).
    #[arg(long, default_value = "None")]
    join_source: String,
    /// Environment entries KEY=VALUE (PIER_SKIP_BAD_RECORDS=true writes bad records to
    /// `<input key>.errors` instead of failing).
    #[arg(long = "env", value_name = "KEY=VALUE")]
    environment: Vec<String>,
    /// Transform shard I of N (0-based): object k of the input goes to shard k mod N. Default:
    /// JOB_COMPLETION_INDEX of NUM_SHARDS when both are set (a Kubernetes Indexed Job), else
    /// everything.
    #[arg(long, value_name = "I/N")]
    shard: Option<String>,
    /// Folder that local inputs and outputs must be under (repeatable). Without one, any.
    #[arg(long = "import-root", value_name = "DIR")]
    import_roots: Vec<PathBuf>,
    /// Job name, for messages.
    #[arg(long, default_value = "pier-transform")]
    job_name: String,
}

fn shard(args: &TransformArgs) -> anyhow::Result<ShardSpec> {
    if let Some(s) = &args.shard {
        return ShardSpec::parse(s).map_err(anyhow::Error::msg);
    }
    match (
        std::env::var("JOB_COMPLETION_INDEX"),
        std::env::var("NUM_SHARDS"),
    ) {
        (Ok(i), Ok(n)) => ShardSpec::parse(&format!("{i}/{n}"))
            .map_err(|e| anyhow::anyhow!("JOB_COMPLETION_INDEX / NUM_SHARDS: {e}")),
        (Ok(_), Err(_)) => bail!("JOB_COMPLETION_INDEX is set but NUM_SHARDS is not"),
        _ => Ok(ShardSpec::ALL),
    }
}

fn job(args: &TransformArgs) -> anyhow::Result<TransformJob> {
    let mut environment = BTreeMap::new();
    for pair in &args.environment {
        let (k, v) = pair
            .split_once('=')
            .with_context(|| format!("--env {pair:?} is not KEY=VALUE"))?;
        environment.insert(k.trim().to_owned(), v.to_owned());
    }
    let some = |s: &Option<String>| s.clone().filter(|s| !s.is_empty());
    Ok(TransformJob {
        transform_job_name: args.job_name.clone(),
        model_name: args.model.clone(),
        max_concurrent_transforms: Some(args.max_concurrent_transforms),
        max_payload_in_mb: Some(args.max_payload_mb),
        batch_strategy: Some(args.batch_strategy.clone()),
        environment,
        transform_input: TransformInput {
            data_source: TransformDataSource {
                s3_data_source: TransformS3DataSource {
                    s3_data_type: args.data_type.clone(),
                    s3_uri: args.input.clone(),
                },
            },
            content_type: Some(args.content_type.clone()),
            compression_type: Some(args.compression_type.clone()),
            split_type: Some(args.split_type.clone()),
        },
        transform_output: TransformOutput {
            s3_output_path: args.output.clone(),
            accept: some(&args.accept),
            assemble_with: Some(args.assemble_with.clone()),
            kms_key_id: None,
        },
        transform_resources: TransformResources {
            instance_type: "local".into(),
            instance_count: args.instance_count,
            ..Default::default()
        },
        data_processing: Some(DataProcessing {
            input_filter: some(&args.input_filter),
            output_filter: some(&args.output_filter),
            join_source: Some(args.join_source.clone()),
        }),
        ..Default::default()
    })
}

pub async fn transform(args: TransformArgs) -> anyhow::Result<()> {
    let shard = shard(&args)?;
    let job = job(&args)?;
    // Refuse a bad flag before anything is opened.
    pier_jobs::transform::check(&job).map_err(|e| anyhow::anyhow!("{e}"))?;
    let policy = if args.import_roots.is_empty() {
        pier_model_store::ImportPolicy::anywhere()
    } else {
        pier_model_store::ImportPolicy::under_roots(&args.import_roots).context("--import-root")?
    };
    let db = args.database.open(&args.data_dir).await?;
    let store = args.store.open(&args.data_dir)?;
    let models = pier_server::control::ControlPlaneModels::standalone(db.clone(), store);
    let model = models
        .load_model(&args.model)
        .await
        .map_err(anyhow::Error::msg)?;
    let progress = Arc::new(Progress::default());
    let cancel = Arc::new(AtomicBool::new(false));
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{prefix} [{bar:30}] {bytes}/{total_bytes} {msg} ETA {eta}")
            .context("progress bar template")?
            .progress_chars("=> "),
    );
    bar.set_prefix(if shard.count > 1 {
        format!("{} {}/{}", args.job_name, shard.index, shard.count)
    } else {
        args.job_name.clone()
    });
    let started = Instant::now();
    let ticker = {
        let (bar, progress, cancel) = (bar.clone(), progress.clone(), cancel.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                    _ = tokio::signal::ctrl_c() => {
                        cancel.store(true, Ordering::SeqCst);
                    }
                }
                let records = progress.records.load(Ordering::Relaxed);
                let secs = started.elapsed().as_secs_f64().max(1e-3);
                bar.set_position(progress.bytes.load(Ordering::Relaxed));
                bar.set_message(format!(
                    "{records} records, {:.0} records/s",
                    records as f64 / secs
                ));
            }
        })
    };
    let listed = {
        let bar = bar.clone();
        move |objects: u64, bytes: u64| {
            bar.set_length(bytes);
            bar.println(format!("{objects} objects, {bytes} bytes to transform"));
        }
    };
    let options = LocalOptions {
        s3: pier_jobs::channels::S3Config::from_env(),
        policy,
        shard,
        progress: progress.clone(),
        cancel,
    };
    let result = run_local(&job, model, options, &listed).await;
    ticker.abort();
    bar.finish_and_clear();
    db.close().await;
    let summary = result.map_err(|e| anyhow::anyhow!("{}: Failed: {e}", args.job_name))?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{}: Completed: {} objects, {} records ({} skipped) in {secs:.2} s ({:.0} records/s)",
        args.job_name,
        summary.objects,
        summary.records,
        summary.failed,
        summary.records as f64 / secs.max(1e-9)
    );
    Ok(())
}
