//! Shared `List*` behaviour: `NameContains`, newest first, `MaxResults` + `NextToken` paging.

use serde::Deserialize;

use crate::error::ApiError;

/// The paging and filtering fields every `List*` request takes.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListRequest {
    /// Keep names containing this (case-insensitive).
    #[serde(default)]
    pub name_contains: Option<String>,
    /// Page size (1–100, default 10 as SageMaker).
    #[serde(default)]
    pub max_results: Option<usize>,
    /// Token from the previous page.
    #[serde(default)]
    pub next_token: Option<String>,
    /// `Name` or `CreationTime` (default).
    #[serde(default)]
    pub sort_by: Option<String>,
    /// `Ascending` or `Descending` (default).
    #[serde(default)]
    pub sort_order: Option<String>,
}

/// One page of `items` (each with its name and creation time) and the next token.
pub fn page<T>(
    mut items: Vec<T>,
    req: &ListRequest,
    key: impl Fn(&T) -> (&str, f64),
) -> Result<(Vec<T>, Option<String>), ApiError> {
    if let Some(needle) = req.name_contains.as_deref().map(str::to_ascii_lowercase) {
        items.retain(|i| key(i).0.to_ascii_lowercase().contains(&needle));
    }
    match req.sort_by.as_deref() {
        Some("Name") => items.sort_by(|a, b| key(a).0.cmp(key(b).0)),
        None | Some("CreationTime") => {
            items.sort_by(|a, b| key(a).1.total_cmp(&key(b).1).then(key(a).0.cmp(key(b).0)))
        }
        Some(other) => {
            return Err(ApiError::validation(format!(
                "SortBy must be Name or CreationTime, not {other:?}"
            )));
        }
    }
    match req.sort_order.as_deref() {
        None | Some("Descending") => items.reverse(),
        Some("Ascending") => {}
        Some(other) => {
            return Err(ApiError::validation(format!(
                "SortOrder must be Ascending or Descending, not {other:?}"
            )));
        }
    }
    let size = req.max_results.unwrap_or(10);
    if !(1..=100).contains(&size) {
        return Err(ApiError::validation("MaxResults must be between 1 and 100"));
    }
    let start = match &req.next_token {
        Some(t) => t
            .parse::<usize>()
            .map_err(|_| ApiError::validation("NextToken is invalid"))?,
        None => 0,
    };
    let total = items.len();
    let page: Vec<T> = items.into_iter().skip(start).take(size).collect();
    let next = (start + size < total).then(|| (start + size).to_string());
    Ok((page, next))
}
