//! Application Auto Scaling on the admin port, as SageMaker users set it up:
//! `boto3.client("application-autoscaling", endpoint_url=…)` sends
//! `X-Amz-Target: AnyScaleFrontendService.<Action>`. Scalable targets are a variant's
//! `sagemaker:variant:DesiredInstanceCount` (`ResourceId` `endpoint/<name>/variant/<variant>`,
//! namespace `sagemaker`); policies are target tracking on `SageMakerVariantInvocationsPerInstance`
//! (or the same metric named as a customized CloudWatch metric). Targets, policies and
//! activities are control-plane records; the scaler that acts on them is [`super::scaler`].

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::db::Table;
use crate::error::{ApiCode, ApiError};
use crate::records::{EndpointRecord, now};
use crate::state::AppState;

/// The only namespace served.
pub const NAMESPACE: &str = "sagemaker";
/// The only dimension served.
pub const DIMENSION: &str = "sagemaker:variant:DesiredInstanceCount";
/// The predefined metric served.
pub const INVOCATIONS_PER_INSTANCE: &str = "SageMakerVariantInvocationsPerInstance";
const ACCOUNT_ARN: &str = "arn:aws:application-autoscaling:us-east-1:000000000000";
const SERVICE_ROLE: &str = "arn:aws:iam::000000000000:role/aws-service-role/sagemaker.application-autoscaling.amazonaws.com/AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint";

/// A registered scalable target (`ScalableTarget` in the service model).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ScalableTarget {
    /// `sagemaker`.
    pub service_namespace: String,
    /// `endpoint/<name>/variant/<variant>`.
    pub resource_id: String,
    /// `sagemaker:variant:DesiredInstanceCount`.
    pub scalable_dimension: String,
    /// Least instances.
    pub min_capacity: u32,
    /// Most instances.
    pub max_capacity: u32,
    /// As given, or the service-linked role.
    #[serde(rename = "RoleARN")]
    pub role_arn: String,
    /// Seconds since the epoch.
    pub creation_time: f64,
    /// The target's ARN.
    #[serde(rename = "ScalableTargetARN")]
    pub scalable_target_arn: String,
    /// Suspension flags, as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspended_state: Option<Value>,
}

/// A target-tracking policy (`ScalingPolicy`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ScalingPolicy {
    /// The policy's ARN.
    #[serde(rename = "PolicyARN")]
    pub policy_arn: String,
    /// Its name (unique per target).
    pub policy_name: String,
    /// `sagemaker`.
    pub service_namespace: String,
    /// Target resource.
    pub resource_id: String,
    /// Target dimension.
    pub scalable_dimension: String,
    /// `TargetTrackingScaling`.
    pub policy_type: String,
    /// The configuration, as given (validated).
    pub target_tracking_scaling_policy_configuration: TargetTracking,
    /// The alarms AWS would create, named as it names them.
    pub alarms: Vec<Alarm>,
    /// Seconds since the epoch.
    pub creation_time: f64,
}

/// `Alarm`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Alarm {
    /// Name.
    pub alarm_name: String,
    /// ARN.
    #[serde(rename = "AlarmARN")]
    pub alarm_arn: String,
}

/// `TargetTrackingScalingPolicyConfiguration`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TargetTracking {
    /// The metric value to hold (invocations per instance per minute).
    pub target_value: f64,
    /// The predefined metric.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predefined_metric_specification: Option<Value>,
    /// A customized metric (only `AWS/SageMaker` `InvocationsPerInstance` is served).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customized_metric_specification: Option<Value>,
    /// Seconds after a scale-out before the next scale-out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_out_cooldown: Option<u32>,
    /// Seconds after a scaling activity before a scale-in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_in_cooldown: Option<u32>,
    /// Never scale in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disable_scale_in: Option<bool>,
}

/// `ScalingActivity`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ScalingActivity {
    /// Unique id.
    pub activity_id: String,
    /// `sagemaker`.
    pub service_namespace: String,
    /// Target resource.
    pub resource_id: String,
    /// Target dimension.
    pub scalable_dimension: String,
    /// What was done.
    pub description: String,
    /// Why.
    pub cause: String,
    /// Seconds since the epoch.
    pub start_time: f64,
    /// Seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<f64>,
    /// `Successful`, `Failed`, `InProgress`, …
    pub status_code: String,
    /// Detail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_message: Option<String>,
}

/// Routes one `AnyScaleFrontendService.<action>` call.
pub(super) async fn dispatch(
    app: &AppState,
    action: &str,
    body: &[u8],
) -> Result<String, ApiError> {
    match action {
        "RegisterScalableTarget" => super::call(app, body, register).await,
        "DescribeScalableTargets" => super::call(app, body, describe_targets).await,
        "DeregisterScalableTarget" => super::call(app, body, deregister).await,
        "PutScalingPolicy" => super::call(app, body, put_policy).await,
        "DescribeScalingPolicies" => super::call(app, body, describe_policies).await,
        "DeleteScalingPolicy" => super::call(app, body, delete_policy).await,
        "DescribeScalingActivities" => super::call(app, body, describe_activities).await,
        other => Err(ApiError::unknown_operation(format!(
            "Pier does not implement AnyScaleFrontendService.{other}"
        ))),
    }
}

fn not_found(message: impl Into<String>) -> ApiError {
    ApiError {
        code: ApiCode::ObjectNotFoundException,
        message: message.into(),
    }
}

/// Key of a target's record.
pub(super) fn target_key(resource_id: &str, dimension: &str) -> String {
    format!("{resource_id}|{dimension}")
}

/// Splits `endpoint/<name>/variant/<variant>`.
pub(super) fn parse_resource(resource_id: &str) -> Option<(&str, &str)> {
    let rest = resource_id.strip_prefix("endpoint/")?;
    let (endpoint, variant) = rest.split_once("/variant/")?;
    (!endpoint.is_empty() && !variant.is_empty() && !variant.contains('/'))
        .then_some((endpoint, variant))
}

/// Checks the namespace and dimension and returns the `(endpoint, variant)` the resource
/// id names.
fn check_dimension<'a>(
    namespace: &str,
    dimension: &str,
    resource_id: &'a str,
) -> Result<(&'a str, &'a str), ApiError> {
    if namespace != NAMESPACE {
        return Err(ApiError::validation(format!(
            "1 validation error detected: Value '{namespace}' at 'serviceNamespace' failed to satisfy constraint: Pier serves only the namespace '{NAMESPACE}'"
        )));
    }
    if dimension != DIMENSION {
        return Err(ApiError::validation(format!(
            "Unsupported scalable dimension '{dimension}' for service namespace '{NAMESPACE}' (Pier serves '{DIMENSION}')"
        )));
    }
    parse_resource(resource_id).ok_or_else(|| {
        ApiError::validation(format!(
            "Unsupported service namespace, resource type or scalable dimension: ResourceId '{resource_id}' is not endpoint/<EndpointName>/variant/<VariantName>"
        ))
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(super) struct Register {
    service_namespace: String,
    resource_id: String,
    scalable_dimension: String,
    #[serde(default)]
    min_capacity: Option<i64>,
    #[serde(default)]
    max_capacity: Option<i64>,
    #[serde(default, rename = "RoleARN")]
    role_arn: Option<String>,
    #[serde(default)]
    suspended_state: Option<Value>,
    #[serde(default)]
    tags: Option<Value>,
}

fn capacity(field: &str, v: i64) -> Result<u32, ApiError> {
    u32::try_from(v).map_err(|_| {
        ApiError::validation(format!(
            "1 validation error detected: Value '{v}' at '{field}' failed to satisfy constraint: Member must be a non-negative integer"
        ))
    })
}

async fn register(app: &AppState, req: Register) -> Result<Value, ApiError> {
    let (endpoint, variant) = check_dimension(
        &req.service_namespace,
        &req.scalable_dimension,
        &req.resource_id,
    )?;
    let _ = req.tags;
    let _guard = app.control.lock().await;
    let record: Option<EndpointRecord> = app.db.get(Table::Endpoints, endpoint).await?;
    let Some(record) = record else {
        return Err(ApiError::validation(format!(
            "Could not find endpoint \"{endpoint}\" for ResourceId '{}'",
            req.resource_id
        )));
    };
    if !record
        .production_variants
        .iter()
        .any(|v| v.variant_name == variant)
    {
        return Err(ApiError::validation(format!(
            "The variant \"{variant}\" does not exist on endpoint \"{endpoint}\"."
        )));
    }
    let key = target_key(&req.resource_id, &req.scalable_dimension);
    let existing: Option<ScalableTarget> = app.db.get(Table::ScalableTargets, &key).await?;
    let min = req
        .min_capacity
        .map(|v| capacity("minCapacity", v))
        .transpose()?;
    let max = req
        .max_capacity
        .map(|v| capacity("maxCapacity", v))
        .transpose()?;
    let (min, max) = match (&existing, min, max) {
        (Some(t), min, max) => (min.unwrap_or(t.min_capacity), max.unwrap_or(t.max_capacity)),
        (None, Some(min), Some(max)) => (min, max),
        (None, _, _) => {
            return Err(ApiError::validation(
                "MinCapacity and MaxCapacity are required when registering a new scalable target",
            ));
        }
    };
    if min == 0 {
        return Err(ApiError::validation(
            "MinCapacity must be at least 1 for a SageMaker variant (scale to zero is not served)",
        ));
    }
    if min > max {
        return Err(ApiError::validation(format!(
            "Minimum capacity ({min}) cannot be greater than maximum capacity ({max})"
        )));
    }
    if max > app.config.instances.max_instances {
        return Err(ApiError {
            code: ApiCode::LimitExceededException,
            message: format!(
                "MaxCapacity {max} is more than this server's --max-instances ({})",
                app.config.instances.max_instances
            ),
        });
    }
    let target = ScalableTarget {
        service_namespace: req.service_namespace,
        resource_id: req.resource_id.clone(),
        scalable_dimension: req.scalable_dimension,
        min_capacity: min,
        max_capacity: max,
        role_arn: req
            .role_arn
            .or_else(|| existing.as_ref().map(|t| t.role_arn.clone()))
            .unwrap_or_else(|| SERVICE_ROLE.to_owned()),
        creation_time: existing.as_ref().map_or_else(now, |t| t.creation_time),
        scalable_target_arn: existing.as_ref().map_or_else(
            || format!("{ACCOUNT_ARN}:scalable-target/{}", fastrand_id()),
            |t| t.scalable_target_arn.clone(),
        ),
        suspended_state: req
            .suspended_state
            .or_else(|| existing.as_ref().and_then(|t| t.suspended_state.clone())),
    };
    if existing.is_some() {
        app.db.update(Table::ScalableTargets, &key, &target).await?;
    } else {
        app.db.insert(Table::ScalableTargets, &key, &target).await?;
    }
    Ok(json!({ "ScalableTargetARN": target.scalable_target_arn }))
}

/// A random id in AWS's shape.
pub(super) fn fastrand_id() -> String {
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        fastrand::u32(..),
        fastrand::u16(..),
        fastrand::u16(..),
        fastrand::u16(..),
        fastrand::u64(..) & 0xffff_ffff_ffff
    )
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(super) struct DescribeTargets {
    service_namespace: String,
    #[serde(default)]
    resource_ids: Option<Vec<String>>,
    #[serde(default)]
    scalable_dimension: Option<String>,
    #[serde(default)]
    max_results: Option<usize>,
    #[serde(default)]
    next_token: Option<String>,
}

/// One page of `items` after `next_token` (an index), `max_results` long (AWS: at most 50).
fn page<T>(
    items: Vec<T>,
    max_results: Option<usize>,
    next_token: Option<&str>,
) -> Result<(Vec<T>, Option<String>), ApiError> {
    let size = max_results.unwrap_or(50);
    if !(1..=50).contains(&size) {
        return Err(ApiError::validation("MaxResults must be between 1 and 50"));
    }
    let start = match next_token {
        None => 0,
        Some(t) => t
            .parse::<usize>()
            .ok()
            .filter(|n| *n <= items.len())
            .ok_or_else(|| ApiError {
                code: ApiCode::InvalidNextTokenException,
                message: format!("Invalid NextToken {t:?}"),
            })?,
    };
    let total = items.len();
    let items: Vec<T> = items.into_iter().skip(start).take(size).collect();
    let next = (start + items.len() < total).then(|| (start + items.len()).to_string());
    Ok((items, next))
}

async fn describe_targets(app: &AppState, req: DescribeTargets) -> Result<Value, ApiError> {
    namespace(&req.service_namespace)?;
    let targets: Vec<ScalableTarget> = app
        .db
        .list::<ScalableTarget>(Table::ScalableTargets)
        .await?
        .into_iter()
        .filter(|t| {
            req.resource_ids
                .as_ref()
                .is_none_or(|ids| ids.contains(&t.resource_id))
                && req
                    .scalable_dimension
                    .as_ref()
                    .is_none_or(|d| *d == t.scalable_dimension)
        })
        .collect();
    let (targets, next) = page(targets, req.max_results, req.next_token.as_deref())?;
    Ok(with_token(json!({ "ScalableTargets": targets }), next))
}

fn with_token(mut v: Value, next: Option<String>) -> Value {
    if let Some(next) = next {
        v["NextToken"] = Value::String(next);
    }
    v
}

fn namespace(ns: &str) -> Result<(), ApiError> {
    if ns == NAMESPACE {
        Ok(())
    } else {
        Err(ApiError::validation(format!(
            "Pier serves only the service namespace '{NAMESPACE}', not '{ns}'"
        )))
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(super) struct TargetId {
    service_namespace: String,
    resource_id: String,
    scalable_dimension: String,
}

async fn deregister(app: &AppState, req: TargetId) -> Result<Value, ApiError> {
    check_dimension(
        &req.service_namespace,
        &req.scalable_dimension,
        &req.resource_id,
    )?;
    let _guard = app.control.lock().await;
    let key = target_key(&req.resource_id, &req.scalable_dimension);
    if !app.db.delete(Table::ScalableTargets, &key).await? {
        return Err(not_found(format!(
            "No scalable target registered for service namespace: {}, resource ID: {}, scalable dimension: {}",
            req.service_namespace, req.resource_id, req.scalable_dimension
        )));
    }
    // A target's policies go with it, as in AWS.
    for p in app.db.list::<ScalingPolicy>(Table::ScalingPolicies).await? {
        if p.resource_id == req.resource_id && p.scalable_dimension == req.scalable_dimension {
            app.db
                .delete(
                    Table::ScalingPolicies,
                    &policy_key(&p.resource_id, &p.scalable_dimension, &p.policy_name),
                )
                .await?;
        }
    }
    Ok(json!({}))
}

fn policy_key(resource_id: &str, dimension: &str, name: &str) -> String {
    format!("{resource_id}|{dimension}|{name}")
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(super) struct PutPolicy {
    policy_name: String,
    service_namespace: String,
    resource_id: String,
    scalable_dimension: String,
    #[serde(default)]
    policy_type: Option<String>,
    #[serde(default)]
    step_scaling_policy_configuration: Option<Value>,
    #[serde(default)]
    target_tracking_scaling_policy_configuration: Option<TargetTracking>,
    #[serde(default)]
    predictive_scaling_policy_configuration: Option<Value>,
}

/// Checks a policy's metric: the predefined `SageMakerVariantInvocationsPerInstance`, or the
/// same metric as a customized one (`AWS/SageMaker` `InvocationsPerInstance`, statistic `Sum`
/// or `Average`, dimensions naming this endpoint and variant when given).
fn check_metric(tt: &TargetTracking, endpoint: &str, variant: &str) -> Result<(), ApiError> {
    if !(tt.target_value.is_finite() && tt.target_value > 0.0) {
        return Err(ApiError::validation(format!(
            "TargetValue must be a positive number, not {}",
            tt.target_value
        )));
    }
    match (
        &tt.predefined_metric_specification,
        &tt.customized_metric_specification,
    ) {
        (Some(p), None) => {
            let kind = p.get("PredefinedMetricType").and_then(Value::as_str);
            if kind != Some(INVOCATIONS_PER_INSTANCE) {
                return Err(ApiError::validation(format!(
                    "PredefinedMetricType {} is not valid for a SageMaker variant; Pier serves {INVOCATIONS_PER_INSTANCE}",
                    kind.unwrap_or("(missing)")
                )));
            }
            Ok(())
        }
        (None, Some(c)) => {
            let name = c.get("MetricName").and_then(Value::as_str);
            let ns = c.get("Namespace").and_then(Value::as_str);
            if name != Some("InvocationsPerInstance") || ns != Some("AWS/SageMaker") {
                return Err(ApiError::validation(format!(
                    "CustomizedMetricSpecification: Pier's metrics serve Namespace AWS/SageMaker MetricName InvocationsPerInstance, not {} {}",
                    ns.unwrap_or("(missing)"),
                    name.unwrap_or("(missing)")
                )));
            }
            for d in c
                .get("Dimensions")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let (n, v) = (
                    d.get("Name").and_then(Value::as_str),
                    d.get("Value").and_then(Value::as_str),
                );
                let ok = match n {
                    Some("EndpointName") => v == Some(endpoint),
                    Some("VariantName") => v == Some(variant),
                    _ => false,
                };
                if !ok {
                    return Err(ApiError::validation(format!(
                        "CustomizedMetricSpecification.Dimensions: {} = {} does not name this target (EndpointName {endpoint}, VariantName {variant})",
                        n.unwrap_or("?"),
                        v.unwrap_or("?")
                    )));
                }
            }
            Ok(())
        }
        _ => Err(ApiError::validation(
            "TargetTrackingScalingPolicyConfiguration needs exactly one of PredefinedMetricSpecification and CustomizedMetricSpecification",
        )),
    }
}

async fn put_policy(app: &AppState, req: PutPolicy) -> Result<Value, ApiError> {
    let (endpoint, variant) = check_dimension(
        &req.service_namespace,
        &req.scalable_dimension,
        &req.resource_id,
    )?;
    let policy_type = req.policy_type.as_deref().unwrap_or("StepScaling");
    if policy_type != "TargetTrackingScaling"
        || req.step_scaling_policy_configuration.is_some()
        || req.predictive_scaling_policy_configuration.is_some()
    {
        return Err(ApiError::validation(format!(
            "PolicyType {policy_type} is not supported by Pier yet; use TargetTrackingScaling"
        )));
    }
    let Some(tt) = req.target_tracking_scaling_policy_configuration else {
        return Err(ApiError::validation(
            "TargetTrackingScalingPolicyConfiguration is required for a TargetTrackingScaling policy",
        ));
    };
    check_metric(&tt, endpoint, variant)?;
    if req.policy_name.is_empty() || req.policy_name.len() > 256 {
        return Err(ApiError::validation("PolicyName must be 1-256 characters"));
    }
    let _guard = app.control.lock().await;
    let target: Option<ScalableTarget> = app
        .db
        .get(
            Table::ScalableTargets,
            &target_key(&req.resource_id, &req.scalable_dimension),
        )
        .await?;
    if target.is_none() {
        return Err(not_found(format!(
            "No scalable target registered for service namespace: {}, resource ID: {}, scalable dimension: {}",
            req.service_namespace, req.resource_id, req.scalable_dimension
        )));
    }
    let key = policy_key(&req.resource_id, &req.scalable_dimension, &req.policy_name);
    let existing: Option<ScalingPolicy> = app.db.get(Table::ScalingPolicies, &key).await?;
    let id = fastrand_id();
    let policy_arn = existing.as_ref().map_or_else(
        || {
            format!(
                "{ACCOUNT_ARN}:scalingPolicy:{id}:resource/sagemaker/{}:policyName/{}",
                req.resource_id, req.policy_name
            )
        },
        |p| p.policy_arn.clone(),
    );
    let alarm = |kind: &str| {
        let name = format!("TargetTracking-{}-{kind}-{id}", req.resource_id);
        Alarm {
            alarm_arn: format!("arn:aws:cloudwatch:us-east-1:000000000000:alarm:{name}"),
            alarm_name: name,
        }
    };
    let policy = ScalingPolicy {
        policy_arn,
        policy_name: req.policy_name.clone(),
        service_namespace: req.service_namespace,
        resource_id: req.resource_id.clone(),
        scalable_dimension: req.scalable_dimension,
        policy_type: policy_type.to_owned(),
        target_tracking_scaling_policy_configuration: tt,
        alarms: vec![alarm("AlarmHigh"), alarm("AlarmLow")],
        creation_time: existing.as_ref().map_or_else(now, |p| p.creation_time),
    };
    if existing.is_some() {
        app.db.update(Table::ScalingPolicies, &key, &policy).await?;
    } else {
        app.db.insert(Table::ScalingPolicies, &key, &policy).await?;
    }
    Ok(json!({ "PolicyARN": policy.policy_arn, "Alarms": policy.alarms }))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(super) struct DescribePolicies {
    service_namespace: String,
    #[serde(default)]
    policy_names: Option<Vec<String>>,
    #[serde(default)]
    resource_id: Option<String>,
    #[serde(default)]
    scalable_dimension: Option<String>,
    #[serde(default)]
    max_results: Option<usize>,
    #[serde(default)]
    next_token: Option<String>,
}

async fn describe_policies(app: &AppState, req: DescribePolicies) -> Result<Value, ApiError> {
    namespace(&req.service_namespace)?;
    let policies: Vec<ScalingPolicy> = app
        .db
        .list::<ScalingPolicy>(Table::ScalingPolicies)
        .await?
        .into_iter()
        .filter(|p| {
            req.policy_names
                .as_ref()
                .is_none_or(|n| n.contains(&p.policy_name))
                && req.resource_id.as_ref().is_none_or(|r| *r == p.resource_id)
                && req
                    .scalable_dimension
                    .as_ref()
                    .is_none_or(|d| *d == p.scalable_dimension)
        })
        .collect();
    let (policies, next) = page(policies, req.max_results, req.next_token.as_deref())?;
    Ok(with_token(json!({ "ScalingPolicies": policies }), next))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(super) struct DeletePolicy {
    policy_name: String,
    service_namespace: String,
    resource_id: String,
    scalable_dimension: String,
}

async fn delete_policy(app: &AppState, req: DeletePolicy) -> Result<Value, ApiError> {
    check_dimension(
        &req.service_namespace,
        &req.scalable_dimension,
        &req.resource_id,
    )?;
    let _guard = app.control.lock().await;
    let key = policy_key(&req.resource_id, &req.scalable_dimension, &req.policy_name);
    if !app.db.delete(Table::ScalingPolicies, &key).await? {
        return Err(not_found(format!(
            "No scaling policy found for service namespace: {}, resource ID: {}, scalable dimension: {}, policy name: {}",
            req.service_namespace, req.resource_id, req.scalable_dimension, req.policy_name
        )));
    }
    Ok(json!({}))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(super) struct DescribeActivities {
    service_namespace: String,
    #[serde(default)]
    resource_id: Option<String>,
    #[serde(default)]
    scalable_dimension: Option<String>,
    #[serde(default)]
    max_results: Option<usize>,
    #[serde(default)]
    next_token: Option<String>,
    #[serde(default)]
    include_not_scaled_activities: Option<bool>,
}

async fn describe_activities(app: &AppState, req: DescribeActivities) -> Result<Value, ApiError> {
    namespace(&req.service_namespace)?;
    let _ = req.include_not_scaled_activities;
    let mut activities: Vec<ScalingActivity> = app
        .db
        .list::<ScalingActivity>(Table::ScalingActivities)
        .await?
        .into_iter()
        .filter(|a| {
            req.resource_id.as_ref().is_none_or(|r| *r == a.resource_id)
                && req
                    .scalable_dimension
                    .as_ref()
                    .is_none_or(|d| *d == a.scalable_dimension)
        })
        .collect();
    // Newest first, as AWS lists them.
    activities.sort_by(|a, b| b.start_time.total_cmp(&a.start_time));
    let (activities, next) = page(activities, req.max_results, req.next_token.as_deref())?;
    Ok(with_token(json!({ "ScalingActivities": activities }), next))
}

/// Records an activity (the scaler's).
pub(super) async fn record_activity(
    app: &AppState,
    activity: &ScalingActivity,
) -> Result<(), ApiError> {
    let key = format!(
        "{}|{:020.6}|{}",
        activity.resource_id, activity.start_time, activity.activity_id
    );
    app.db
        .insert(Table::ScalingActivities, &key, activity)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_ids_parse() {
        assert_eq!(parse_resource("endpoint/e/variant/v"), Some(("e", "v")));
        assert_eq!(parse_resource("endpoint//variant/v"), None);
        assert_eq!(parse_resource("endpoint/e/variant/"), None);
        assert_eq!(parse_resource("table/e"), None);
    }

    #[test]
    fn pages_follow_tokens() {
        let (first, next) = page((0..5).collect(), Some(2), None).unwrap();
        assert_eq!((first, next.as_deref()), (vec![0, 1], Some("2")));
        let (last, next) = page((0..5).collect(), Some(4), Some("2")).unwrap();
        assert_eq!((last, next), (vec![2, 3, 4], None));
        assert!(page((0..5).collect::<Vec<_>>(), Some(0), None).is_err());
    }
}
