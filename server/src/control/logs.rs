//! The CloudWatch Logs subset the SageMaker SDK reads a job's log with (`fit(logs=True)`,
//! `logs_for_job`, `Transformer.wait()`): `DescribeLogStreams` and `GetLogEvents` on the log
//! groups `/aws/sagemaker/TrainingJobs` (one stream per job named `<job>/algo-1-<epoch>`) and
//! `/aws/sagemaker/TransformJobs` (`<job>/pier-1-<epoch>`), in
//! CloudWatch's own protocol (AWS JSON 1.1, `X-Amz-Target: Logs_20140328.<Action>`,
//! camelCase fields). Point the SDK's logs client here with `AWS_ENDPOINT_URL_CLOUDWATCH_LOGS`.
//!
//! Tokens are `f/<seq>` (lines after `seq`) and `b/<seq>` (lines before it); at the end of a
//! stream `GetLogEvents` returns the token it was given, as CloudWatch does, so followers
//! poll with it.

use pier_db::{JobKind, LogQuery};
use pier_jobs::training::{LOG_GROUP, TrainingJob, log_stream};
use pier_jobs::transform::TransformJob;
use serde::{Deserialize, Serialize};

use crate::error::{ApiCode, ApiError};
use crate::state::AppState;

/// The `X-Amz-Target` prefix of CloudWatch Logs.
pub(super) const TARGET_PREFIX: &str = "Logs_20140328.";

fn not_found(what: &str) -> ApiError {
    ApiError {
        code: ApiCode::ResourceNotFoundException,
        message: format!("The specified {what} does not exist."),
    }
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError {
        code: ApiCode::InvalidParameterException,
        message: message.into(),
    }
}

pub(super) async fn dispatch(
    app: &AppState,
    action: &str,
    body: &[u8],
) -> Result<String, ApiError> {
    match action {
        "DescribeLogStreams" => super::call(app, body, describe_log_streams).await,
        "GetLogEvents" => super::call(app, body, get_log_events).await,
        other => Err(ApiError {
            code: ApiCode::UnknownOperationException,
            message: format!("Pier does not implement Logs_20140328.{other}"),
        }),
    }
}

/// The job kind whose log group `name` is.
fn check_group(name: Option<&str>) -> Result<JobKind, ApiError> {
    match name {
        Some(LOG_GROUP) => Ok(JobKind::Training),
        Some(pier_jobs::transform::LOG_GROUP) => Ok(JobKind::Transform),
        Some(_) => Err(not_found("log group")),
        None => Err(invalid("logGroupName is required")),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct DescribeLogStreams {
    #[serde(default)]
    log_group_name: Option<String>,
    #[serde(default)]
    log_group_identifier: Option<String>,
    #[serde(default)]
    log_stream_name_prefix: Option<String>,
    #[serde(default)]
    order_by: Option<String>,
    #[serde(default)]
    descending: Option<bool>,
    #[serde(default)]
    next_token: Option<String>,
    #[serde(default)]
    limit: Option<i64>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct LogStream {
    log_stream_name: String,
    creation_time: i64,
    first_event_timestamp: i64,
    last_event_timestamp: i64,
    last_ingestion_time: i64,
    arn: String,
    stored_bytes: i64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct DescribeLogStreamsResponse {
    log_streams: Vec<LogStream>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_token: Option<String>,
}

async fn describe_log_streams(
    app: &AppState,
    req: DescribeLogStreams,
) -> Result<DescribeLogStreamsResponse, ApiError> {
    let group = req
        .log_group_name
        .as_deref()
        .or(req.log_group_identifier.as_deref());
    let kind = check_group(group)?;
    let by_time = match req.order_by.as_deref() {
        None | Some("LogStreamName") => false,
        Some("LastEventTime") => {
            if req.log_stream_name_prefix.is_some() {
                return Err(invalid(
                    "Cannot order by LastEventTime with a logStreamNamePrefix.",
                ));
            }
            true
        }
        Some(other) => {
            return Err(invalid(format!(
                "orderBy {other:?} is not LogStreamName or LastEventTime"
            )));
        }
    };
    let limit = req.limit.unwrap_or(50);
    if !(1..=50).contains(&limit) {
        return Err(invalid("limit must be between 1 and 50"));
    }
    let prefix = req.log_stream_name_prefix.unwrap_or_default();
    let mut streams = Vec::new();
    let group = group.unwrap_or(LOG_GROUP);
    for (job, name, created_at) in job_streams(app, kind).await? {
        if !name.starts_with(&prefix) {
            continue;
        }
        let Some((first, last, _)) = app.db.log_span(kind, &job).await? else {
            continue;
        };
        streams.push(LogStream {
            arn: format!(
                "arn:aws:logs:{}:{}:log-group:{group}:log-stream:{name}",
                crate::records::REGION,
                crate::records::ACCOUNT
            ),
            log_stream_name: name,
            creation_time: (created_at * 1000.0) as i64,
            first_event_timestamp: first,
            last_event_timestamp: last,
            last_ingestion_time: last,
            stored_bytes: 0,
        });
    }
    if by_time {
        streams.sort_by_key(|s| s.last_event_timestamp);
    } else {
        streams.sort_by(|a, b| a.log_stream_name.cmp(&b.log_stream_name));
    }
    if req.descending.unwrap_or(false) {
        streams.reverse();
    }
    let start = match &req.next_token {
        Some(t) => super::list::decode_token(t)?,
        None => 0,
    };
    let total = streams.len();
    let limit = limit as usize;
    let log_streams: Vec<LogStream> = streams.into_iter().skip(start).take(limit).collect();
    let next_token = (start + limit < total).then(|| super::list::encode_token(start + limit));
    Ok(DescribeLogStreamsResponse {
        log_streams,
        next_token,
    })
}

/// (job, stream, creation time) of every job of `kind`.
async fn job_streams(
    app: &AppState,
    kind: JobKind,
) -> Result<Vec<(String, String, f64)>, ApiError> {
    Ok(match kind {
        JobKind::Transform => app
            .db
            .list_jobs::<TransformJob>(kind)
            .await?
            .into_iter()
            .map(|r| {
                (
                    r.name,
                    pier_jobs::transform::log_stream(&r.body),
                    r.created_at,
                )
            })
            .collect(),
        _ => app
            .db
            .list_jobs::<TrainingJob>(JobKind::Training)
            .await?
            .into_iter()
            .map(|r| (r.name.clone(), log_stream(&r.body), r.created_at))
            .collect(),
    })
}

/// The job whose stream is `stream`, if any.
async fn stream_job(
    app: &AppState,
    kind: JobKind,
    stream: &str,
) -> Result<Option<String>, ApiError> {
    let job = stream.split_once('/').map_or(stream, |(j, _)| j);
    let found = match kind {
        JobKind::Transform => app
            .db
            .get_job::<TransformJob>(kind, job)
            .await?
            .filter(|r| pier_jobs::transform::log_stream(&r.body) == stream)
            .map(|r| r.name),
        _ => app
            .db
            .get_job::<TrainingJob>(JobKind::Training, job)
            .await?
            .filter(|r| log_stream(&r.body) == stream)
            .map(|r| r.name),
    };
    Ok(found)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct GetLogEvents {
    #[serde(default)]
    log_group_name: Option<String>,
    #[serde(default)]
    log_group_identifier: Option<String>,
    log_stream_name: String,
    #[serde(default)]
    start_time: Option<i64>,
    #[serde(default)]
    end_time: Option<i64>,
    #[serde(default)]
    next_token: Option<String>,
    #[serde(default)]
    limit: Option<i64>,
    #[serde(default)]
    start_from_head: Option<bool>,
    #[serde(default)]
    unmask: Option<bool>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct OutputLogEvent {
    timestamp: i64,
    message: String,
    ingestion_time: i64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct GetLogEventsResponse {
    events: Vec<OutputLogEvent>,
    next_forward_token: String,
    next_backward_token: String,
}

/// Parses `f/<seq>` or `b/<seq>`.
fn parse_token(token: &str) -> Result<(bool, i64), ApiError> {
    let bad = || invalid(format!("The specified nextToken is invalid: {token:?}"));
    let (dir, seq) = token.split_once('/').ok_or_else(bad)?;
    let seq: i64 = seq.parse().map_err(|_| bad())?;
    match dir {
        "f" => Ok((true, seq)),
        "b" => Ok((false, seq)),
        _ => Err(bad()),
    }
}

async fn get_log_events(
    app: &AppState,
    req: GetLogEvents,
) -> Result<GetLogEventsResponse, ApiError> {
    let _ = req.unmask;
    let group = req
        .log_group_name
        .as_deref()
        .or(req.log_group_identifier.as_deref());
    let kind = check_group(group)?;
    let job = stream_job(app, kind, &req.log_stream_name)
        .await?
        .ok_or_else(|| not_found("log stream"))?;
    let limit = req.limit.unwrap_or(10_000);
    if !(1..=10_000).contains(&limit) {
        return Err(invalid("limit must be between 1 and 10000"));
    }
    let mut q = LogQuery {
        start_ms: req.start_time,
        end_ms: req.end_time,
        limit: limit as u32,
        from_head: req.start_from_head.unwrap_or(false),
        ..Default::default()
    };
    if let Some(token) = &req.next_token {
        let (forward, seq) = parse_token(token)?;
        if forward {
            q.after_seq = Some(seq);
            q.from_head = true;
        } else {
            q.before_seq = Some(seq);
            q.from_head = false;
        }
    }
    let events = app.db.read_logs(kind, &job, &q).await?;
    let (forward, backward) = match (events.first(), events.last()) {
        (Some(first), Some(last)) => (last.seq, first.seq),
        _ => match &req.next_token {
            // At the end (or start): the same token again.
            Some(token) => {
                let (_, seq) = parse_token(token)?;
                (seq, seq)
            }
            None => {
                let end = q.after_seq.unwrap_or(0);
                (end, end + 1)
            }
        },
    };
    Ok(GetLogEventsResponse {
        events: events
            .into_iter()
            .map(|e| OutputLogEvent {
                timestamp: e.at_ms,
                message: e.message,
                ingestion_time: e.at_ms,
            })
            .collect(),
        next_forward_token: format!("f/{forward}"),
        next_backward_token: format!("b/{backward}"),
    })
}
