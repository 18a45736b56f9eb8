//! Replicas that agree: several `pier serve` processes on one database and store serve the
//! same endpoints.
//!
//! A control call changes an endpoint on the replica that answered it, exactly as on a lone
//! server: that replica builds, records and swaps. Every other replica learns of the change
//! from the database, never per request: a reconcile pass compares each endpoint record with
//! what this process serves and brings the difference into service.
//!
//! - What an endpoint should serve is a [`Want`]: a digest of its recorded deployment
//!   (`PierDeployed`: the config and models it was deployed from) and a digest of its
//!   variants' weights and instance counts. Each replica remembers the `Want` it serves per
//!   endpoint; the replica that made a change records its own right after its swap
//!   ([`note_served`]), so it never rebuilds what it just built.
//! - A new deployment (or a new instance count) is built — loaded and warmed — outside the
//!   control lock, then swapped in only if the record still asks for it: a request in flight
//!   finishes on the snapshot it started on, so no replica drops one.
//! - A weight-only change is the same loaded models under a new choice, applied at once.
//! - Deletes and failures are mirrored; a deployment that fails to build here is retried after
//!   [`RETRY_AFTER`], and the replica keeps serving what it served.
//!
//! Passes run every `--reconcile-every` and at once when the database announces a change
//! (PostgreSQL `LISTEN`/`NOTIFY`); the periodic pass is the safety net for a lost
//! notification.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::deploy;
use crate::db::{Change, ReplicaBeat, Table};
use crate::error::ApiError;
use crate::records::{EndpointRecord, EndpointStatus};
use crate::serving::WeightedChoice;
use crate::state::AppState;

/// How long a deployment that failed to build on this replica waits before the next try.
pub const RETRY_AFTER: Duration = Duration::from_secs(10);

/// What an endpoint record asks a replica to serve.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Want {
    /// Digest of the recorded deployment (config and models).
    pub deployed: u64,
    /// Digest of the variants' current weights.
    pub weights: u64,
}

impl Want {
    /// What `record` asks for, when it is (or stays) in service.
    pub fn of(record: &EndpointRecord) -> Option<Self> {
        if !matches!(
            record.endpoint_status,
            EndpointStatus::InService | EndpointStatus::Updating
        ) {
            return None;
        }
        let deployed = record.pier_deployed.as_ref()?;
        let weights: Vec<(&str, u64)> = record
            .production_variants
            .iter()
            .map(|v| (v.variant_name.as_str(), v.current_weight.to_bits()))
            .collect();
        let counts: Vec<(&str, u32)> = record
            .production_variants
            .iter()
            .map(|v| (v.variant_name.as_str(), v.current_instance_count))
            .collect();
        // Instance counts change what is loaded: they count as the deployment.
        Some(Self {
            deployed: digest(&(deployed, counts)),
            weights: digest(&weights),
        })
    }

    /// The digest as the replica's heartbeat shows it.
    pub fn label(&self) -> String {
        format!("{:016x}.{:016x}", self.deployed, self.weights)
    }
}

/// A stable 64-bit digest of a value's JSON (the same in every replica).
fn digest<T: serde::Serialize>(value: &T) -> u64 {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    let hash = Sha256::digest(&bytes);
    u64::from_le_bytes(hash[..8].try_into().expect("8 bytes"))
}

/// This replica's view of what it serves, for reconciling with the records.
#[derive(Debug, Default)]
pub struct ReplicaState {
    /// Per endpoint, the record's `Want` this process serves.
    served: Mutex<HashMap<String, Want>>,
    /// Endpoints with a build in flight (at most one each).
    building: Mutex<HashSet<String>>,
    /// Deployments that failed here, and when to try again.
    failed: Mutex<HashMap<String, (Want, Instant)>>,
}

impl ReplicaState {
    /// Per endpoint, the `Want` this replica serves (what its heartbeat reports).
    pub fn served(&self) -> HashMap<String, Want> {
        lock(&self.served).clone()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Records that this replica now serves what `record` asks for (called by the control path
/// that made the change, right after its swap).
pub(super) fn note_served(app: &AppState, record: &EndpointRecord) {
    let name = &record.endpoint_name;
    match Want::of(record) {
        Some(want) => {
            lock(&app.replicas.served).insert(name.clone(), want);
        }
        None => forget(app, name),
    }
    lock(&app.replicas.failed).remove(name);
}

/// Forgets endpoint `name` (deleted here).
pub(super) fn forget(app: &AppState, name: &str) {
    lock(&app.replicas.served).remove(name);
    lock(&app.replicas.failed).remove(name);
}

/// One reconcile pass: mirrors deletes, failures and creations in progress, applies weight
/// changes at once, and starts a background build for every deployment this replica does
/// not serve yet. Returns the builds it started.
pub async fn reconcile(app: &AppState) -> Result<Vec<tokio::task::JoinHandle<()>>, ApiError> {
    let mut builds = Vec::new();
    {
        let _guard = app.control.lock().await;
        let records: Vec<EndpointRecord> = app.db.list(Table::Endpoints).await?;
        let snapshot = app.serving.snapshot();
        let listed: HashSet<&str> = records
            .iter()
            .filter(|r| r.endpoint_status != EndpointStatus::Deleting)
            .map(|r| r.endpoint_name.as_str())
            .collect();
        let gone: Vec<String> = snapshot
            .names()
            .into_iter()
            .filter(|n| !listed.contains(n.as_str()))
            .collect();
        if !gone.is_empty() {
            app.serving.update(|s| {
                for name in &gone {
                    s.endpoints.remove(name);
                    s.creating.remove(name);
                    s.failed.remove(name);
                }
            });
            for name in &gone {
                forget(app, name);
                tracing::info!(endpoint = %name, "endpoint deleted by another replica; no longer served here");
            }
        }
        let served = app.replicas.served();
        for record in records {
            let name = record.endpoint_name.clone();
            let here = snapshot.endpoints.get(&name);
            match record.endpoint_status {
                EndpointStatus::Deleting => {} // handled as gone above
                EndpointStatus::Creating => {
                    if here.is_none() && !snapshot.creating.contains(&name) {
                        app.serving.update(|s| {
                            s.failed.remove(&name);
                            s.creating.insert(name.clone());
                        });
                    }
                }
                EndpointStatus::Failed => {
                    if here.is_none() && !snapshot.failed.contains(&name) {
                        app.serving.update(|s| {
                            s.creating.remove(&name);
                            s.failed.insert(name.clone());
                        });
                    }
                }
                EndpointStatus::InService | EndpointStatus::Updating => {
                    let Some(want) = Want::of(&record) else {
                        continue; // recorded before deployments were copied: restored at start
                    };
                    let have = served.get(&name).copied();
                    match (have, here) {
                        (Some(have), _) if have == want => {}
                        (Some(have), Some(serving)) if have.deployed == want.deployed => {
                            match reweigh(serving, &record) {
                                Ok(next) => {
                                    app.serving.update(|s| {
                                        s.endpoints.insert(name.clone(), Arc::new(next));
                                    });
                                    lock(&app.replicas.served).insert(name.clone(), want);
                                    tracing::info!(endpoint = %name, "weights changed by another replica applied");
                                }
                                Err(reason) => {
                                    tracing::warn!(endpoint = %name, %reason, "cannot apply the recorded weights; rebuilding");
                                    builds.push((record, want));
                                }
                            }
                        }
                        _ => builds.push((record, want)),
                    }
                }
            }
        }
    }
    let mut started = Vec::new();
    for (record, want) in builds {
        let name = record.endpoint_name.clone();
        if let Some((failed, at)) = lock(&app.replicas.failed).get(&name)
            && *failed == want
            && at.elapsed() < RETRY_AFTER
        {
            continue;
        }
        if !lock(&app.replicas.building).insert(name.clone()) {
            continue; // one build per endpoint at a time; the next pass sees the newest
        }
        let app = app.clone();
        started.push(tokio::spawn(async move {
            build_and_swap(&app, record, want).await;
            lock(&app.replicas.building).remove(&name);
        }));
    }
    Ok(started)
}

/// The same loaded models under the record's weights.
fn reweigh(
    serving: &crate::serving::EndpointServing,
    record: &EndpointRecord,
) -> Result<crate::serving::EndpointServing, String> {
    let weights = serving
        .variants
        .iter()
        .map(|v| {
            record
                .production_variants
                .iter()
                .find(|s| *s.variant_name == *v.name)
                .map(|s| s.current_weight)
                .ok_or_else(|| format!("the record has no variant {:?}", v.name))
        })
        .collect::<Result<Vec<f64>, String>>()?;
    let choice = WeightedChoice::new(&weights).map_err(|e| e.to_string())?;
    Ok(serving.with_weights(choice))
}

/// Loads and warms what `record` asks for, then swaps it in if the record still asks for it.
async fn build_and_swap(app: &AppState, record: EndpointRecord, want: Want) {
    let name = record.endpoint_name.clone();
    let Some(deployed) = record.pier_deployed.as_ref() else {
        return;
    };
    let started = Instant::now();
    let built = deploy::build(
        app,
        &name,
        &deployed.config,
        &deployed.models,
        Some(&record.production_variants),
        Some(&record.production_variants),
    )
    .await;
    let _guard = app.control.lock().await;
    let now: Option<EndpointRecord> = match app.db.get(Table::Endpoints, &name).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(endpoint = %name, error = %e, "cannot re-read the endpoint after building; the next pass retries");
            return;
        }
    };
    if now.as_ref().and_then(Want::of) != Some(want) {
        tracing::debug!(endpoint = %name, "the endpoint changed while it was built; the next pass builds the newest");
        return;
    }
    match built {
        Ok(serving) => {
            let config = serving.config_name.clone();
            app.serving.update(|s| {
                s.creating.remove(&name);
                s.failed.remove(&name);
                s.endpoints.insert(name.clone(), Arc::new(serving));
            });
            lock(&app.replicas.served).insert(name.clone(), want);
            lock(&app.replicas.failed).remove(&name);
            tracing::info!(
                endpoint = %name,
                %config,
                ms = started.elapsed().as_millis() as u64,
                "replica in sync: the recorded deployment is in service here"
            );
        }
        Err(reason) => {
            lock(&app.replicas.failed).insert(name.clone(), (want, Instant::now()));
            tracing::error!(
                endpoint = %name,
                %reason,
                "the recorded deployment cannot be built on this replica; it keeps serving what it served and retries"
            );
        }
    }
}

/// How many other replicas are live on this database.
pub async fn others_live(app: &AppState) -> Result<usize, ApiError> {
    let me = &app.config.replication.replica_id;
    let rows = app.db.live_replicas(live_for(app)).await?;
    Ok(rows.iter().filter(|r| &r.id != me).count())
}

/// Brings every recorded endpoint into service here and waits for the builds (a replica
/// joining replicas already serving: it does not rewrite their records).
pub async fn sync_now(app: &AppState) -> Result<usize, ApiError> {
    let builds = reconcile(app).await?;
    let n = builds.len();
    for build in builds {
        let _ = build.await;
    }
    Ok(n)
}

/// Runs [`reconcile`] every `--reconcile-every` and whenever `changes` announces a change
/// (a models change republishes the Models too), until `stop`.
pub async fn run(
    app: AppState,
    every: Duration,
    mut changes: Option<tokio::sync::broadcast::Receiver<Change>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<()> {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Models are republished on their own notification, and every tenth pass as the net.
    let mut passes: u64 = 0;
    loop {
        let mut models_changed = false;
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return Ok(()),
            change = recv(&mut changes) => match change {
                Some(change) => models_changed = touches_models(&change),
                None => changes = None,
            },
        }
        if *stop.borrow() {
            return Ok(());
        }
        passes += 1;
        if (models_changed || passes.is_multiple_of(10))
            && let Err(e) = deploy::publish_models(&app).await
        {
            tracing::warn!(error = %e, "cannot republish the Models; serving continues from the loaded snapshot");
        }
        match reconcile(&app).await {
            Ok(builds) if builds.is_empty() => {}
            Ok(builds) => tracing::debug!(builds = builds.len(), "reconcile pass started builds"),
            Err(e) => {
                tracing::warn!(error = %e, "reconcile pass failed; serving continues from the loaded snapshot")
            }
        }
    }
}

/// The next change, or `None` once the channel is gone (lagging counts as a change: the pass
/// reads everything anyway). Never resolves without a channel.
async fn recv(changes: &mut Option<tokio::sync::broadcast::Receiver<Change>>) -> Option<Change> {
    let Some(rx) = changes.as_mut() else {
        return std::future::pending().await;
    };
    match rx.recv().await {
        Ok(change) => Some(change),
        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => Some(Change {
            table: Change::ALL.into(),
            name: String::new(),
        }),
        Err(tokio::sync::broadcast::error::RecvError::Closed) => None,
    }
}

/// Whether `change` may have changed the Models (a reconnect's `*` may have changed anything).
fn touches_models(change: &Change) -> bool {
    change.table == "models" || change.is_all()
}

/// How long a replica's last heartbeat counts it as live.
pub fn live_for(app: &AppState) -> Duration {
    app.config.replication.heartbeat_every * 3 + Duration::from_secs(1)
}

/// What this replica serves, as its heartbeat records it: per endpoint, the config and the
/// digest of the record it serves.
fn serving_now(app: &AppState) -> serde_json::Value {
    let snapshot = app.serving.snapshot();
    let served = app.replicas.served();
    let endpoints: serde_json::Map<String, serde_json::Value> = snapshot
        .endpoints
        .iter()
        .map(|(name, serving)| {
            (
                name.clone(),
                serde_json::json!({
                    "EndpointConfigName": serving.config_name,
                    "Want": served.get(name).map(Want::label),
                }),
            )
        })
        .collect();
    serde_json::Value::Object(endpoints)
}

/// Records this replica's heartbeat every `--heartbeat` until `stop`, then removes it.
pub async fn beat(
    app: AppState,
    addresses: serde_json::Value,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<()> {
    let id = app.config.replication.replica_id.clone();
    let started_at = crate::records::now();
    let mut tick = tokio::time::interval(app.config.replication.heartbeat_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => {}
        }
        if *stop.borrow() {
            break;
        }
        let beat = ReplicaBeat {
            id: id.clone(),
            started_at,
            addresses: addresses.clone(),
            serving: serving_now(&app),
        };
        if let Err(e) = app.db.beat_replica(&beat).await {
            tracing::warn!(error = %e, "cannot record this replica's heartbeat; serving continues");
        }
    }
    if let Err(e) = app.db.remove_replica(&id).await {
        tracing::warn!(error = %e, "cannot remove this replica's heartbeat; it expires");
    }
    Ok(())
}

/// `PierReplicas` of DescribeEndpoint: every live replica, the config it serves for `record`
/// and whether that is what the record asks for.
pub(super) async fn describe(
    app: &AppState,
    record: &EndpointRecord,
) -> Result<Vec<serde_json::Value>, ApiError> {
    let want = Want::of(record).map(|w| w.label());
    let rows = app.db.live_replicas(live_for(app)).await?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let here = row.serving.get(&record.endpoint_name);
            let config = here.and_then(|h| h.get("EndpointConfigName")).cloned();
            let served = here.and_then(|h| h.get("Want")).and_then(|w| w.as_str());
            serde_json::json!({
                "ReplicaId": row.id,
                "Addresses": row.addresses,
                "EndpointConfigName": config,
                "InSync": want.is_some() && served == want.as_deref(),
                "StartTime": row.started_at,
                "LastHeartbeatTime": row.at,
            })
        })
        .collect())
}

/// Whether this replica runs the cluster-wide duties (the autoscaler): always when it is
/// alone; among replicas, the live one with the smallest id.
pub async fn leads(app: &AppState) -> bool {
    if app.config.replication.reconcile_every.is_none() {
        return true;
    }
    let me = &app.config.replication.replica_id;
    match app.db.live_replicas(live_for(app)).await {
        Ok(rows) => rows
            .iter()
            .map(|r| &r.id)
            .min()
            .is_none_or(|first| first >= me),
        Err(_) => false,
    }
}
