//! AddTags, ListTags, DeleteTags, and the `Tags` given at create, for every resource with an
//! ARN (models, endpoint configs, endpoints).
//!
//! Tags live in their own table keyed by the resource's ARN; deleting a resource deletes its
//! tags. Writes run under the control lock, so a read-modify-write of one resource's tags
//! never interleaves with another.

use serde::{Deserialize, Serialize};

use super::list::{decode_token, encode_token};
use crate::db::Table;
use crate::error::ApiError;
use crate::records::{ACCOUNT, REGION, Tag};
use crate::state::AppState;

/// Most tags on one resource, as SageMaker.
const MAX_TAGS: usize = 50;

/// Checks tags against SageMaker's limits: keys 1–128 characters, values up to 256, both of
/// letters, digits, spaces and `_.:/=+-@`, no key starting with `aws:`, no key twice.
pub(super) fn validate(tags: &[Tag]) -> Result<(), ApiError> {
    if tags.len() > MAX_TAGS {
        return Err(ApiError::validation(format!(
            "Tags may hold at most {MAX_TAGS} tags, not {}",
            tags.len()
        )));
    }
    let allowed = |s: &str| {
        s.chars()
            .all(|c| c.is_alphanumeric() || c.is_whitespace() || "_.:/=+-@".contains(c))
    };
    let mut seen = std::collections::HashSet::new();
    for tag in tags {
        let key_len = tag.key.chars().count();
        if !(1..=128).contains(&key_len) || !allowed(&tag.key) {
            return Err(ApiError::validation(format!(
                "Tag key {:?} must be 1-128 letters, digits, spaces or _.:/=+-@",
                tag.key
            )));
        }
        if tag.key.to_ascii_lowercase().starts_with("aws:") {
            return Err(ApiError::validation(format!(
                "Tag key {:?}: the aws: prefix is reserved",
                tag.key
            )));
        }
        if tag.value.chars().count() > 256 || !allowed(&tag.value) {
            return Err(ApiError::validation(format!(
                "Tag value of {:?} must be at most 256 letters, digits, spaces or _.:/=+-@",
                tag.key
            )));
        }
        if !seen.insert(tag.key.as_str()) {
            return Err(ApiError::validation(format!(
                "Tag key {:?} is given twice",
                tag.key
            )));
        }
    }
    Ok(())
}

/// The tags of `arn` (none when it has none).
async fn get(app: &AppState, arn: &str) -> Result<Vec<Tag>, ApiError> {
    Ok(app
        .db
        .get(Table::Tags, &arn.to_ascii_lowercase())
        .await?
        .unwrap_or_default())
}

/// Replaces the tags of `arn`.
async fn put(app: &AppState, arn: &str, tags: &[Tag]) -> Result<(), ApiError> {
    let key = arn.to_ascii_lowercase();
    if tags.is_empty() {
        app.db.delete(Table::Tags, &key).await?;
    } else if !app.db.insert(Table::Tags, &key, &tags).await? {
        app.db.update(Table::Tags, &key, &tags).await?;
    }
    Ok(())
}

/// Records the `Tags` given at create.
pub(super) async fn set_initial(app: &AppState, arn: &str, tags: &[Tag]) -> Result<(), ApiError> {
    put(app, arn, tags).await
}

/// Removes the tags of a deleted resource.
pub(super) async fn remove_all(app: &AppState, arn: &str) -> Result<(), ApiError> {
    app.db
        .delete(Table::Tags, &arn.to_ascii_lowercase())
        .await?;
    Ok(())
}

/// Checks that `arn` names an existing model, endpoint config or endpoint.
async fn check_resource(app: &AppState, arn: &str) -> Result<(), ApiError> {
    let not_found = || ApiError::not_found(format_args!("resource \"{arn}\""));
    let prefix = format!("arn:aws:sagemaker:{REGION}:{ACCOUNT}:");
    let Some(rest) = arn.strip_prefix(&prefix) else {
        return Err(not_found());
    };
    let (table, field) = match rest.split_once('/').map(|(kind, _)| kind) {
        Some("model") => (Table::Models, "ModelArn"),
        Some("endpoint-config") => (Table::EndpointConfigs, "EndpointConfigArn"),
        Some("endpoint") => (Table::Endpoints, "EndpointArn"),
        Some("training-job") => {
            let jobs = app
                .db
                .list_jobs::<serde_json::Value>(pier_db::JobKind::Training)
                .await?;
            return jobs
                .iter()
                .any(|j| {
                    j.body["TrainingJobArn"]
                        .as_str()
                        .is_some_and(|a| a.eq_ignore_ascii_case(arn))
                })
                .then_some(())
                .ok_or_else(not_found);
        }
        _ => return Err(not_found()),
    };
    let records: Vec<serde_json::Value> = app.db.list(table).await?;
    if records.iter().any(|r| {
        r[field]
            .as_str()
            .is_some_and(|a| a.eq_ignore_ascii_case(arn))
    }) {
        Ok(())
    } else {
        Err(not_found())
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(super) struct AddTags {
    resource_arn: String,
    tags: Vec<Tag>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct TagsResponse {
    tags: Vec<Tag>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_token: Option<String>,
}

/// Adds tags, replacing the values of keys already there.
pub(super) async fn add(app: &AppState, req: AddTags) -> Result<TagsResponse, ApiError> {
    validate(&req.tags)?;
    let _guard = app.control.lock().await;
    check_resource(app, &req.resource_arn).await?;
    let mut tags = get(app, &req.resource_arn).await?;
    for tag in &req.tags {
        match tags.iter_mut().find(|t| t.key == tag.key) {
            Some(existing) => existing.value.clone_from(&tag.value),
            None => tags.push(tag.clone()),
        }
    }
    validate(&tags)?;
    put(app, &req.resource_arn, &tags).await?;
    Ok(TagsResponse {
        tags: req.tags,
        next_token: None,
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(super) struct ListTags {
    resource_arn: String,
    #[serde(default)]
    max_results: Option<i64>,
    #[serde(default)]
    next_token: Option<String>,
}

/// Lists a resource's tags in the order they were added, `MaxResults` (50–100, default 50)
/// at a time.
pub(super) async fn list(app: &AppState, req: ListTags) -> Result<TagsResponse, ApiError> {
    let size = req.max_results.unwrap_or(50);
    if !(50..=100).contains(&size) {
        return Err(ApiError::validation(
            "MaxResults must be between 50 and 100",
        ));
    }
    check_resource(app, &req.resource_arn).await?;
    let start = req
        .next_token
        .as_deref()
        .map(decode_token)
        .transpose()?
        .unwrap_or(0);
    let all = get(app, &req.resource_arn).await?;
    let size = size as usize;
    let next_token = (start + size < all.len()).then(|| encode_token(start + size));
    Ok(TagsResponse {
        tags: all.into_iter().skip(start).take(size).collect(),
        next_token,
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(super) struct DeleteTags {
    resource_arn: String,
    tag_keys: Vec<String>,
}

/// Deletes the tags with these keys (keys it does not have are ignored, as SageMaker does).
pub(super) async fn delete(app: &AppState, req: DeleteTags) -> Result<serde_json::Value, ApiError> {
    if req.tag_keys.is_empty() || req.tag_keys.len() > MAX_TAGS {
        return Err(ApiError::validation(format!(
            "TagKeys must hold 1-{MAX_TAGS} keys"
        )));
    }
    let _guard = app.control.lock().await;
    check_resource(app, &req.resource_arn).await?;
    let mut tags = get(app, &req.resource_arn).await?;
    tags.retain(|t| !req.tag_keys.contains(&t.key));
    put(app, &req.resource_arn, &tags).await?;
    Ok(serde_json::json!({}))
}
