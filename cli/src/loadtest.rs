//! `pier loadtest`: flags to [`pier_loadtest::LoadtestConfig`], then the table, JSON and HTML
//! reports; `pier loadtest report` renders saved JSON reports into one HTML page.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use pier_loadtest::{LoadShape, LoadtestConfig, PayloadSource, Protocol, Report, StopAt};

/// Options of `pier loadtest`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct LoadtestArgs {
    #[command(subcommand)]
    command: Option<LoadtestCommand>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Subcommand)]
enum LoadtestCommand {
    /// Render saved JSON reports (from --json) into one HTML page, overlaid for comparison,
    /// and print their tables.
    Report {
        /// HTML file to write.
        #[arg(long, value_name = "FILE")]
        html: PathBuf,
        /// JSON reports, in the order of their colours.
        #[arg(required = true, value_name = "REPORT.json")]
        reports: Vec<PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ProtocolArg {
    /// SageMaker runtime: POST {url}/endpoints/{model}/invocations.
    Sagemaker,
    /// Open Inference Protocol v2 REST, JSON tensors: POST {url}/v2/models/{model}/infer.
    V2Json,
    /// v2 REST with the binary tensor extension (as perf_analyzer -i http sends).
    V2Binary,
    /// v2 gRPC ModelInfer with raw_input_contents (as perf_analyzer -i grpc sends).
    V2Grpc,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// Server base URL, http://HOST:PORT: the HTTP data plane, or the gRPC address for
    /// v2-grpc. Works against any server speaking the protocol (Pier, Triton, MLServer, ...).
    /// Give it several times for replicas serving the same model: connections are spread
    /// over them round-robin (model metadata comes from the first).
    #[arg(long, required = true)]
    url: Vec<String>,
    /// Wire protocol.
    #[arg(long, value_enum, default_value = "sagemaker")]
    protocol: ProtocolArg,
    /// Endpoint name (sagemaker) or model name (v2).
    #[arg(long, short = 'm', required = true)]
    model: Option<String>,
    /// v2 model version (default: the server's choice).
    #[arg(long)]
    model_version: Option<String>,
    /// Request payload. sagemaker: the body as is (see --content-type). v2: a v2 JSON infer
    /// request ({"inputs": [{"name", "datatype", "shape", "data"}]}), sent as JSON, binary
    /// tensors or gRPC as --protocol says. Without it, a random payload is generated from the
    /// model's v2 metadata (GET /v2/models/{model} or gRPC ModelMetadata).
    #[arg(long, value_name = "FILE")]
    input_file: Option<PathBuf>,
    /// Rows per request: generated payloads put it in every -1 dimension (sagemaker: CSV
    /// lines); for --input-file it only sets what rows/s counts (v2 files: their first
    /// dimension wins).
    #[arg(long, default_value_t = 1)]
    rows: u64,
    /// sagemaker, generated payload: values per CSV row (default: from the v2 metadata of the
    /// same name on the same server).
    #[arg(long)]
    features: Option<usize>,
    /// Seed of generated random values.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// sagemaker: Content-Type of the body (default text/csv).
    #[arg(long)]
    content_type: Option<String>,
    /// sagemaker: Accept header.
    #[arg(long)]
    accept: Option<String>,
    /// Extra header "Name: value", repeatable (e.g. "X-Amzn-SageMaker-Target-Variant: mlp");
    /// gRPC metadata for v2-grpc.
    #[arg(long = "header", short = 'H', value_name = "NAME: VALUE")]
    headers: Vec<String>,
    /// Closed loop: N clients, each with its own connection, each sending its next request
    /// when the previous one answered (default 1).
    #[arg(long, short = 'c', conflicts_with = "rate")]
    concurrency: Option<u64>,
    /// Open loop: R requests per second on a fixed schedule, whatever the server does;
    /// latency counts from each request's due time, so queueing is not hidden.
    #[arg(long, short = 'r')]
    rate: Option<f64>,
    /// Open loop: requests in flight at once (HTTP keep-alive connections, gRPC streams);
    /// due requests beyond wait, and the wait is part of their latency.
    #[arg(long, default_value_t = 64, requires = "rate")]
    connections: u64,
    /// Open loop: most requests waiting or in flight; a due request beyond is not sent and
    /// counts as the error `not_sent`.
    #[arg(long, default_value_t = 1000, requires = "rate")]
    max_outstanding: u64,
    /// Seconds of load before the measurement, not recorded (connections, caches, JIT).
    #[arg(long, value_name = "SECS", value_parser = seconds_or_zero, default_value = "0")]
    warmup: Duration,
    /// Seconds to measure (default 10; in-flight requests are awaited at the end).
    #[arg(long, value_name = "SECS", value_parser = seconds, conflicts_with = "requests")]
    duration: Option<Duration>,
    /// Measure exactly this many requests instead of a duration.
    #[arg(long, short = 'n')]
    requests: Option<u64>,
    /// Seconds each request may take, connecting included; later is the error `timeout`.
    #[arg(long, value_name = "SECS", value_parser = seconds, default_value = "10")]
    timeout: Duration,
    /// A successful answer must contain this text, else it counts as `body_mismatch`.
    #[arg(long, value_name = "TEXT")]
    expect_contains: Option<String>,
    /// v2-grpc: clients sharing one HTTP/2 connection (channel).
    #[arg(long, default_value_t = 8)]
    grpc_clients_per_channel: u64,
    /// Name of the run in tables and charts (default: protocol and load).
    #[arg(long)]
    label: Option<String>,
    /// Write the JSON report here (fields documented in the README).
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Write the HTML report here (latency over time, percentile curve, summary).
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
    /// Earlier JSON reports to overlay in the HTML report, repeatable.
    #[arg(long, value_name = "OTHER.json", requires = "html")]
    compare: Vec<PathBuf>,
    /// No progress bar (it is never drawn when stderr is not a terminal).
    #[arg(long, short = 'q')]
    quiet: bool,
}

fn seconds(s: &str) -> Result<Duration, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() && v < 1e9 => Ok(Duration::from_secs_f64(v)),
        _ => Err(format!("{s}: give a positive number of seconds")),
    }
}

fn seconds_or_zero(s: &str) -> Result<Duration, String> {
    if s.parse::<f64>() == Ok(0.0) {
        Ok(Duration::ZERO)
    } else {
        seconds(s)
    }
}

fn config(a: RunArgs) -> anyhow::Result<(LoadtestConfig, RunOutputs)> {
    let mut urls = a.url.into_iter();
    let (Some(url), Some(model)) = (urls.next(), a.model) else {
        bail!("--url and --model are required");
    };
    let protocol = match a.protocol {
        ProtocolArg::Sagemaker => Protocol::Sagemaker,
        ProtocolArg::V2Json => Protocol::V2Json,
        ProtocolArg::V2Binary => Protocol::V2Binary,
        ProtocolArg::V2Grpc => Protocol::V2Grpc,
    };
    let mut c = LoadtestConfig::new(url, protocol, model);
    c.replicas = urls.collect();
    c.label = a.label;
    c.model_version = a.model_version;
    c.payload = match a.input_file {
        Some(path) => {
            if a.features.is_some() {
                bail!("--features is for generated payloads; it cannot go with --input-file");
            }
            PayloadSource::File(path)
        }
        None => PayloadSource::Generate {
            features: a.features,
            seed: a.seed,
        },
    };
    c.rows = a.rows;
    c.content_type = a.content_type;
    c.accept = a.accept;
    for h in a.headers {
        let (k, v) = h
            .split_once(':')
            .with_context(|| format!("--header {h}: give \"Name: value\""))?;
        c.headers.push((k.trim().to_owned(), v.trim().to_owned()));
    }
    c.load = match a.rate {
        Some(rate) => LoadShape::Open {
            rate,
            connections: a.connections,
            max_outstanding: a.max_outstanding,
        },
        None => LoadShape::Closed {
            concurrency: a.concurrency.unwrap_or(1),
        },
    };
    c.warmup = a.warmup;
    c.stop = match (a.requests, a.duration) {
        (Some(n), _) => StopAt::Requests(n),
        (None, Some(d)) => StopAt::Duration(d),
        (None, None) => StopAt::Duration(Duration::from_secs(10)),
    };
    c.timeout = a.timeout;
    c.expect_contains = a.expect_contains;
    c.grpc_clients_per_channel = a.grpc_clients_per_channel;
    c.progress = !a.quiet;
    c.validate()?;
    Ok((
        c,
        RunOutputs {
            json: a.json,
            html: a.html,
            compare: a.compare,
        },
    ))
}

struct RunOutputs {
    json: Option<PathBuf>,
    html: Option<PathBuf>,
    compare: Vec<PathBuf>,
}

fn write_html(path: &PathBuf, reports: &[Report]) -> anyhow::Result<()> {
    std::fs::write(path, pier_loadtest::html::render(reports))
        .with_context(|| format!("writing {}", path.display()))?;
    tracing::info!(path = %path.display(), runs = reports.len(), "HTML report written");
    Ok(())
}

pub async fn loadtest(args: LoadtestArgs) -> anyhow::Result<()> {
    if let Some(LoadtestCommand::Report { html, reports }) = args.command {
        let reports = reports
            .iter()
            .map(|p| Report::read_json(p))
            .collect::<Result<Vec<_>, _>>()?;
        for r in &reports {
            println!("{}", r.table());
        }
        return write_html(&html, &reports);
    }
    let (config, out) = config(args.run)?;
    // Read the reports to compare with before the run, so a wrong path fails fast.
    let mut reports = Vec::new();
    for p in &out.compare {
        reports.push(Report::read_json(p)?);
    }
    let report = pier_loadtest::run(&config).await?;
    print!("{}", report.table());
    if let Some(path) = &out.json {
        report.write_json(path)?;
        tracing::info!(path = %path.display(), "JSON report written");
    }
    if let Some(path) = &out.html {
        reports.insert(0, report);
        write_html(path, &reports)?;
    }
    Ok(())
}
