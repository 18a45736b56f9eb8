//! Shared `List*` behaviour: every filter SageMaker documents for the operation
//! (`NameContains`, `CreationTime*`, `LastModifiedTime*`, `StatusEquals`), its sort keys and
//! orders, and `MaxResults` + `NextToken` paging with opaque, checked tokens. A filter the
//! operation does not document, or a value outside its enum, is refused by name.

use serde::Deserialize;

use crate::error::ApiError;

/// The paging and filtering fields a `List*` request may take.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct ListRequest {
    /// Keep names containing this (case-insensitive).
    #[serde(default)]
    pub name_contains: Option<String>,
    /// Page size (1–100, default 10 as SageMaker).
    #[serde(default)]
    pub max_results: Option<i64>,
    /// Token from the previous page.
    #[serde(default)]
    pub next_token: Option<String>,
    /// A key of the operation's sort enum (default `CreationTime`).
    #[serde(default)]
    pub sort_by: Option<String>,
    /// `Ascending` or `Descending` (default).
    #[serde(default)]
    pub sort_order: Option<String>,
    /// Keep resources created before this time (epoch seconds).
    #[serde(default)]
    pub creation_time_before: Option<serde_json::Value>,
    /// Keep resources created after this time.
    #[serde(default)]
    pub creation_time_after: Option<serde_json::Value>,
    /// Keep resources last changed before this time (where documented).
    #[serde(default)]
    pub last_modified_time_before: Option<serde_json::Value>,
    /// Keep resources last changed after this time (where documented).
    #[serde(default)]
    pub last_modified_time_after: Option<serde_json::Value>,
    /// Keep resources in this status (where documented).
    #[serde(default)]
    pub status_equals: Option<String>,
}

/// What one `List*` operation documents.
pub struct ListSpec {
    /// Its sort keys.
    pub sort_keys: &'static [&'static str],
    /// Whether `LastModifiedTimeBefore/After` are documented.
    pub last_modified: bool,
    /// `StatusEquals`' enum, where documented.
    pub statuses: Option<&'static [&'static str]>,
}

/// The list spec of every kind of job (ListTrainingJobs, ListTransformJobs,
/// ListHyperParameterTuningJobs): the same sort keys, time filters and statuses.
pub const JOBS: ListSpec = ListSpec {
    sort_keys: &["Name", "CreationTime", "Status"],
    last_modified: true,
    statuses: Some(&["InProgress", "Completed", "Failed", "Stopping", "Stopped"]),
};

/// What a listed item is filtered and sorted by.
pub struct ListKey<'a> {
    /// Name.
    pub name: &'a str,
    /// Creation time.
    pub creation_time: f64,
    /// Last change, where the resource has one.
    pub last_modified_time: f64,
    /// Status, where the resource has one.
    pub status: &'a str,
}

fn time(field: &str, value: &Option<serde_json::Value>) -> Result<Option<f64>, ApiError> {
    let Some(value) = value else { return Ok(None) };
    let parsed = match value {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    parsed
        .filter(|t| t.is_finite())
        .map(Some)
        .ok_or_else(|| ApiError::validation(format!("{field} must be a timestamp (epoch seconds)")))
}

/// One page of `items` and the next token.
pub fn page<T>(
    mut items: Vec<T>,
    req: &ListRequest,
    spec: &ListSpec,
    key: impl Fn(&T) -> ListKey<'_>,
) -> Result<(Vec<T>, Option<String>), ApiError> {
    if !spec.last_modified {
        for (field, given) in [
            (
                "LastModifiedTimeBefore",
                req.last_modified_time_before.is_some(),
            ),
            (
                "LastModifiedTimeAfter",
                req.last_modified_time_after.is_some(),
            ),
        ] {
            if given {
                return Err(ApiError::validation(format!(
                    "{field} is not a filter of this operation"
                )));
            }
        }
    }
    if let Some(status) = &req.status_equals {
        let Some(allowed) = spec.statuses else {
            return Err(ApiError::validation(
                "StatusEquals is not a filter of this operation",
            ));
        };
        if !allowed.contains(&status.as_str()) {
            return Err(ApiError::validation(format!(
                "1 validation error detected: Value '{status}' at 'statusEquals' failed to satisfy constraint: Member must satisfy enum value set: [{}]",
                allowed.join(", ")
            )));
        }
        items.retain(|i| key(i).status == status);
    }
    if let Some(needle) = &req.name_contains {
        if needle.is_empty()
            || needle.len() > 63
            || !needle
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(ApiError::validation(format!(
                "NameContains {needle:?} must be 1-63 letters, digits or '-'"
            )));
        }
        let needle = needle.to_ascii_lowercase();
        items.retain(|i| key(i).name.to_ascii_lowercase().contains(&needle));
    }
    let bounds = [
        ("CreationTimeBefore", &req.creation_time_before, false, true),
        ("CreationTimeAfter", &req.creation_time_after, false, false),
        (
            "LastModifiedTimeBefore",
            &req.last_modified_time_before,
            true,
            true,
        ),
        (
            "LastModifiedTimeAfter",
            &req.last_modified_time_after,
            true,
            false,
        ),
    ];
    for (field, value, modified, before) in bounds {
        if let Some(t) = time(field, value)? {
            items.retain(|i| {
                let k = key(i);
                let at = if modified {
                    k.last_modified_time
                } else {
                    k.creation_time
                };
                if before { at < t } else { at > t }
            });
        }
    }
    let sort_by = req.sort_by.as_deref().unwrap_or("CreationTime");
    if !spec.sort_keys.contains(&sort_by) {
        return Err(ApiError::validation(format!(
            "1 validation error detected: Value '{sort_by}' at 'sortBy' failed to satisfy constraint: Member must satisfy enum value set: [{}]",
            spec.sort_keys.join(", ")
        )));
    }
    items.sort_by(|a, b| {
        let (a, b) = (key(a), key(b));
        let by_time = a.creation_time.total_cmp(&b.creation_time);
        match sort_by {
            "Name" => a.name.cmp(b.name),
            "Status" => a.status.cmp(b.status).then(by_time),
            _ => by_time,
        }
        .then(a.name.cmp(b.name))
    });
    match req.sort_order.as_deref() {
        None | Some("Descending") => items.reverse(),
        Some("Ascending") => {}
        Some(other) => {
            return Err(ApiError::validation(format!(
                "1 validation error detected: Value '{other}' at 'sortOrder' failed to satisfy constraint: Member must satisfy enum value set: [Ascending, Descending]"
            )));
        }
    }
    let size = req.max_results.unwrap_or(10);
    if !(1..=100).contains(&size) {
        return Err(ApiError::validation("MaxResults must be between 1 and 100"));
    }
    let size = size as usize;
    let start = match &req.next_token {
        Some(t) => decode_token(t)?,
        None => 0,
    };
    let total = items.len();
    let page: Vec<T> = items.into_iter().skip(start).take(size).collect();
    let next = (start + size < total).then(|| encode_token(start + size));
    Ok((page, next))
}

const TOKEN_PREFIX: &str = "pier1";

/// An opaque token for the page starting at `offset`: hex of `offset` and a check value.
pub fn encode_token(offset: usize) -> String {
    let text = format!("{TOKEN_PREFIX}:{offset}:{:016x}", check(offset));
    text.bytes().map(|b| format!("{b:02x}")).collect()
}

/// The offset a token names; a token Pier did not issue is a `ValidationException`.
pub fn decode_token(token: &str) -> Result<usize, ApiError> {
    let invalid = || {
        ApiError::validation("Invalid pagination token: NextToken was not issued by this service")
    };
    if token.len() > 8192 || !token.len().is_multiple_of(2) {
        return Err(invalid());
    }
    let bytes: Vec<u8> = (0..token.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(token.get(i..i + 2).ok_or_else(invalid)?, 16).map_err(|_| invalid())
        })
        .collect::<Result<_, _>>()?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    let mut parts = text.split(':');
    let (Some(TOKEN_PREFIX), Some(offset), Some(sum), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid());
    };
    let offset: usize = offset.parse().map_err(|_| invalid())?;
    if sum != format!("{:016x}", check(offset)) {
        return Err(invalid());
    }
    Ok(offset)
}

/// FNV-1a of the offset under a fixed salt: enough to tell a hand-edited token from ours.
fn check(offset: usize) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in b"pier-list-token".iter().chain(&offset.to_le_bytes()) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_tampering_is_refused() {
        let t = encode_token(20);
        assert_eq!(decode_token(&t).unwrap(), 20);
        assert!(!t.contains("20:"), "opaque");
        let forged = encode_token(20).replace("3230", "3330");
        assert_eq!(
            decode_token(&forged).unwrap_err().code,
            "ValidationException"
        );
        for bad in ["20", "", "zz", "7069657231"] {
            assert!(decode_token(bad).is_err(), "{bad}");
        }
    }
}
