//! UpdateEndpoint under load: 32 clients keep requests in flight for 5 s while the endpoint
//! swaps to a new model version. No request may fail, every answer comes from the old or the
//! new version, and no request sent after the swap completed is answered by the old one.

use crate::common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{IRIS_CSV, TestServer};
use serde_json::json;

const CLIENTS: usize = 32;
const LOAD: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_endpoint_under_load_drops_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Arc::new(TestServer::start(dir.path()).await);
    server.create_model("old", "iris-logreg").await;
    server.create_model("new", "iris-mlp").await;
    server.create_config("c-old", &[("main", "old", 1.0)]).await;
    server.create_config("c-new", &[("main", "new", 1.0)]).await;
    server.create_endpoint("swap", "c-old").await;

    let start = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (server, stop) = (server.clone(), stop.clone());
            tokio::spawn(async move {
                let mut seen = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let sent = start.elapsed();
                    let r = server.invoke("swap", "text/csv", IRIS_CSV, &[]).await;
                    assert_eq!(
                        r.status, 200,
                        "a request failed during the swap: {}",
                        r.body
                    );
                    seen.push((sent, r.model.unwrap()));
                }
                seen
            })
        })
        .collect();

    tokio::time::sleep(LOAD / 3).await;
    server
        .ok(
            "UpdateEndpoint",
            json!({"EndpointName": "swap", "EndpointConfigName": "c-new"}),
        )
        .await;
    let described = server.wait_endpoint("swap").await;
    let swapped_at = start.elapsed();
    assert_eq!(described["EndpointStatus"], "InService");
    assert_eq!(described["EndpointConfigName"], "c-new", "{described}");
    assert!(described.get("FailureReason").is_none(), "{described}");
    assert_eq!(described["ProductionVariants"][0]["PierArtifact"], "new/1");

    tokio::time::sleep(LOAD.saturating_sub(start.elapsed())).await;
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    let (mut old, mut new) = (0, 0);
    for c in clients {
        for (sent, model) in c.await.unwrap() {
            total += 1;
            match model.as_str() {
                "old/1" => {
                    old += 1;
                    assert!(
                        sent < swapped_at,
                        "request sent at {sent:?}, after the swap completed at {swapped_at:?}, was answered by the old version"
                    );
                }
                "new/1" => new += 1,
                other => panic!("answered by unexpected model {other}"),
            }
        }
    }
    assert!(
        old > 0 && new > 0,
        "both versions served: old {old}, new {new}"
    );
    assert!(start.elapsed() >= LOAD);
    eprintln!(
        "{total} requests in {:?}: {old} old, {new} new, swap completed at {swapped_at:?}",
        start.elapsed()
    );

    // The old version is released once nothing holds it.
    let state = &server.server.as_ref().unwrap().state;
    assert_eq!(state.serving.cache.live(), 1);
}
