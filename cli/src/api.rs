//! A minimal client of Pier's control API (AWS JSON 1.1), for the CLI's subcommands.

use anyhow::{Context, bail};
use serde_json::Value;

/// Calls `SageMaker.<action>` with `body` and returns the JSON answer; `token` goes in
/// `Authorization: Bearer` (a `pier_token` of a server started with `--credentials`).
pub async fn call(
    admin_url: &str,
    token: Option<&str>,
    action: &str,
    body: Value,
) -> anyhow::Result<Value> {
    call_target(admin_url, token, &format!("SageMaker.{action}"), body).await
}

/// Calls any `X-Amz-Target` (`Logs_20140328.GetLogEvents`, …) on the control API.
pub async fn call_target(
    admin_url: &str,
    token: Option<&str>,
    target: &str,
    body: Value,
) -> anyhow::Result<Value> {
    let mut request = reqwest::Client::new().post(admin_url);
    if let Some(token) = token.filter(|t| !t.is_empty()) {
        request = request.bearer_auth(token);
    }
    let response = request
        .header("X-Amz-Target", target)
        .header("Content-Type", "application/x-amz-json-1.1")
        .body(body.to_string())
        .send()
        .await
        .with_context(|| {
            format!("cannot reach the control API at {admin_url} (is `pier serve` running?)")
        })?;
    let status = response.status();
    let value: Value = response
        .json()
        .await
        .context("the control API answered with invalid JSON")?;
    if !status.is_success() {
        bail!(
            "{}: {}",
            value["__type"].as_str().unwrap_or("Error"),
            value["message"].as_str().unwrap_or("(no message)")
        );
    }
    Ok(value)
}
