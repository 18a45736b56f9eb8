//! The autoscaler: a background task that evaluates every target-tracking policy each
//! `--autoscaling-interval` and moves the target's `DesiredInstanceCount` between its
//! MinCapacity and MaxCapacity, as Application Auto Scaling does for SageMaker variants.
//!
//! The metric is Pier's own: `SageMakerVariantInvocationsPerInstance` is the variant's
//! requests routed per minute (the invocation counter of its metric labels, read as a delta
//! over the interval) divided by its instance count. Target tracking asks for
//! `ceil(invocations per minute / TargetValue)` instances (AWS's rule: instances × metric /
//! target; a scale-in only below 90 % of the target, as AWS's low alarm); with several policies on one target the largest answer wins for scale-out and a
//! scale-in needs every policy to agree. A scale-out waits `ScaleOutCooldown` seconds after
//! the last scale-out; a scale-in waits `ScaleInCooldown` after any scaling activity (both
//! default to 300, SageMaker's default). Every change is a `ScalingActivity` record.
//!
//! Concurrency: one task per server; it reads the snapshot lock-free and changes counts
//! through the same path as UpdateEndpointWeightsAndCapacities (under the control lock).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use tokio::sync::watch;

use super::autoscaling::{ScalableTarget, ScalingActivity, ScalingPolicy, parse_resource};
use crate::db::Table;
use crate::error::ApiError;
use crate::records::now;
use crate::state::AppState;

/// A scale-in needs the metric under this share of the target (AWS's low alarm: 90 %), so
/// a load that merely wobbles around the target does not flap.
const SCALE_IN_SHARE: f64 = 0.9;
/// SageMaker's default cooldowns, seconds.
const DEFAULT_COOLDOWN: u32 = 300;

/// What the scaler remembers of one target between evaluations.
#[derive(Debug, Default)]
struct Memory {
    /// The counter read last time and when (the counter itself, to notice a rebuilt variant).
    last: Option<(Arc<AtomicU64>, u64, Instant)>,
    last_scale_out: Option<Instant>,
    last_activity: Option<Instant>,
}

/// Runs until `stop` turns true.
pub async fn run(app: AppState, mut stop: watch::Receiver<bool>) -> std::io::Result<()> {
    let every = app.config.instances.autoscaling_interval;
    let mut memory: HashMap<String, Memory> = HashMap::new();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return Ok(()),
        }
        if *stop.borrow() {
            return Ok(());
        }
        // Among replicas, one decides for all (its decisions are records every replica follows).
        if !super::replicas::leads(&app).await {
            memory.clear();
            continue;
        }
        if let Err(e) = evaluate(&app, &mut memory).await {
            tracing::warn!(error = %e, "autoscaler evaluation failed; trying again next interval");
        }
    }
}

async fn evaluate(app: &AppState, memory: &mut HashMap<String, Memory>) -> Result<(), ApiError> {
    let targets: Vec<ScalableTarget> = app.db.list(Table::ScalableTargets).await?;
    let policies: Vec<ScalingPolicy> = app.db.list(Table::ScalingPolicies).await?;
    memory.retain(|k, _| targets.iter().any(|t| t.resource_id == *k));
    for target in &targets {
        let Some((endpoint, variant)) = parse_resource(&target.resource_id) else {
            continue;
        };
        let mine: Vec<&ScalingPolicy> = policies
            .iter()
            .filter(|p| {
                p.resource_id == target.resource_id
                    && p.scalable_dimension == target.scalable_dimension
            })
            .collect();
        let mem = memory.entry(target.resource_id.clone()).or_default();
        let Some(per_minute) = invocations_per_minute(app, endpoint, variant, mem) else {
            continue;
        };
        let Some(current) = super::instances::count(app, endpoint, variant).await? else {
            continue;
        };
        let suspended = |flag: &str| {
            target
                .suspended_state
                .as_ref()
                .and_then(|s| s.get(flag))
                .and_then(serde_json::Value::as_bool)
                .unwrap_or(false)
        };
        let clamp = |n: u32| n.clamp(target.min_capacity, target.max_capacity);
        // Outside [min, max] (a target registered or changed since): bring it in at once.
        if clamp(current) != current {
            let why = format!(
                "the desired instance count was outside the scalable target's bounds [{}, {}]",
                target.min_capacity, target.max_capacity
            );
            scale(
                app,
                target,
                endpoint,
                variant,
                current,
                clamp(current),
                &why,
            )
            .await;
            mem.last_activity = Some(Instant::now());
            continue;
        }
        let mut out: Option<(u32, &ScalingPolicy)> = None;
        let mut inward: Option<u32> = None;
        let mut all_agree_in = !mine.is_empty();
        for p in &mine {
            let tt = &p.target_tracking_scaling_policy_configuration;
            let wanted = clamp(desired_for(per_minute, tt.target_value));
            if wanted > current && out.is_none_or(|(n, _)| wanted > n) {
                out = Some((wanted, p));
            }
            // Scale in as AWS's low alarm does: only below 90 % of the target.
            let wanted = clamp(desired_for(per_minute, tt.target_value * SCALE_IN_SHARE));
            if wanted < current && !tt.disable_scale_in.unwrap_or(false) {
                inward = Some(inward.map_or(wanted, |n| n.max(wanted)));
            } else {
                all_agree_in = false;
            }
        }
        let now = Instant::now();
        let since = |t: Option<Instant>| t.map_or(f64::INFINITY, |t| (now - t).as_secs_f64());
        if let Some((wanted, p)) = out {
            let cooldown = p
                .target_tracking_scaling_policy_configuration
                .scale_out_cooldown
                .unwrap_or(DEFAULT_COOLDOWN);
            if since(mem.last_scale_out) >= f64::from(cooldown)
                && !suspended("DynamicScalingOutSuspended")
            {
                let why = alarm_cause(p, "AlarmHigh");
                scale(app, target, endpoint, variant, current, wanted, &why).await;
                mem.last_scale_out = Some(now);
                mem.last_activity = Some(now);
            }
        } else if let (Some(wanted), true) = (inward, all_agree_in) {
            let cooldown = mine
                .iter()
                .map(|p| {
                    p.target_tracking_scaling_policy_configuration
                        .scale_in_cooldown
                        .unwrap_or(DEFAULT_COOLDOWN)
                })
                .max()
                .unwrap_or(DEFAULT_COOLDOWN);
            if since(mem.last_activity) >= f64::from(cooldown)
                && !suspended("DynamicScalingInSuspended")
            {
                let p = mine[0];
                let why = alarm_cause(p, "AlarmLow");
                scale(app, target, endpoint, variant, current, wanted, &why).await;
                mem.last_activity = Some(now);
            }
        }
    }
    Ok(())
}

/// Instances target tracking asks for: enough that each takes at most `target` per minute.
pub fn desired_for(per_minute: f64, target: f64) -> u32 {
    let n = (per_minute / target).ceil();
    if n.is_finite() && n >= 1.0 {
        // Saturates at u32::MAX; the target's MaxCapacity clamps it.
        n as u32
    } else {
        1
    }
}

/// The variant's invocations per minute since the last evaluation (`None` the first time,
/// or when the endpoint or variant is not in service).
fn invocations_per_minute(
    app: &AppState,
    endpoint: &str,
    variant: &str,
    mem: &mut Memory,
) -> Option<f64> {
    let snapshot = app.serving.snapshot();
    let serving = snapshot.endpoints.get(endpoint)?;
    let v = serving.variants.iter().find(|v| &*v.name == variant)?;
    let counter = v.loaded.labels.invocations.clone();
    let value = counter.load(Ordering::Relaxed);
    let now = Instant::now();
    let previous = mem.last.replace((counter.clone(), value, now));
    let (old_counter, old_value, then) = previous?;
    if !Arc::ptr_eq(&old_counter, &counter) {
        return None; // the variant was rebuilt: start over from this reading
    }
    let minutes = (now - then).as_secs_f64() / 60.0;
    (minutes > 0.0).then(|| value.saturating_sub(old_value) as f64 / minutes)
}

fn alarm_cause(p: &ScalingPolicy, kind: &str) -> String {
    let alarm = p
        .alarms
        .iter()
        .find(|a| a.alarm_name.contains(kind))
        .map_or("TargetTracking", |a| a.alarm_name.as_str());
    format!(
        "monitor alarm {alarm} in state ALARM triggered policy {}",
        p.policy_name
    )
}

/// Changes the count and records the activity (Successful or Failed).
async fn scale(
    app: &AppState,
    target: &ScalableTarget,
    endpoint: &str,
    variant: &str,
    from: u32,
    to: u32,
    cause: &str,
) {
    let started = now();
    let result = super::instances::set_count(app, endpoint, variant, to).await;
    let (status, message) = match &result {
        Ok(()) => (
            "Successful",
            format!(
                "Successfully set desired instance count to {to}. Change successfully fulfilled by sagemaker."
            ),
        ),
        Err(e) => (
            "Failed",
            format!(
                "Failed to set desired instance count to {to}. Reason: {}",
                e.message
            ),
        ),
    };
    tracing::info!(endpoint, variant, from, to, status, "autoscaling");
    let activity = ScalingActivity {
        activity_id: super::autoscaling::fastrand_id(),
        service_namespace: target.service_namespace.clone(),
        resource_id: target.resource_id.clone(),
        scalable_dimension: target.scalable_dimension.clone(),
        description: format!("Setting desired instance count to {to}."),
        cause: cause.to_owned(),
        start_time: started,
        end_time: Some(now()),
        status_code: status.to_owned(),
        status_message: Some(message),
    };
    if let Err(e) = super::autoscaling::record_activity(app, &activity).await {
        tracing::warn!(error = %e, "could not record a scaling activity");
    }
}

#[cfg(test)]
mod tests {
    use super::desired_for;

    #[test]
    fn target_tracking_rounds_up() {
        assert_eq!(desired_for(0.0, 100.0), 1);
        assert_eq!(desired_for(100.0, 100.0), 1);
        assert_eq!(desired_for(101.0, 100.0), 2);
        assert_eq!(desired_for(6400.0, 100.0), 64);
        assert_eq!(desired_for(f64::INFINITY, 1.0), 1);
    }
}
