//! The job queue of `pier-db`: claims are exclusive under concurrent claimers, only the
//! holder writes, expired leases are reclaimed once, stop requests, and job logs; each on
//! SQLite and on PostgreSQL.

mod common;

use common::{Fixture, Kind};
use pier_db::{Db, JobKind, JobStatus, LogQuery, MetricPoint, StopOutcome};
use serde_json::{Value, json};

async fn db(kind: Kind) -> (Fixture, Db) {
    let f = Fixture::new(kind);
    let db = f.open().await;
    (f, db)
}

both!(
    claims_are_exclusive_and_oldest_first,
    only_the_holder_writes_and_expired_leases_are_reclaimed_once,
    stop_marks_held_jobs_stopping_and_ends_queued_ones,
    logs_read_in_order_from_either_end,
    metric_points_read_back_by_name_and_step_and_survive_reopen,
    logs_and_metric_points_append_in_batches_in_order,
);

async fn claims_are_exclusive_and_oldest_first(kind: Kind) {
    let (_f, db) = db(kind).await;
    for (i, name) in ["b", "a", "c"].iter().enumerate() {
        assert!(
            db.insert_job(JobKind::Training, name, i as f64, &json!({"n": name}))
                .await
                .unwrap()
        );
    }
    assert!(
        !db.insert_job(JobKind::Training, "a", 9.0, &json!({}))
            .await
            .unwrap()
    );
    // Many claimers at once over one pool (several connections): each job goes once.
    let mut tasks = Vec::new();
    for w in 0..8 {
        let db = db.clone();
        tasks.push(tokio::spawn(async move {
            db.claim_job::<Value>(JobKind::Training, &format!("w{w}"), 100.0, 10.0)
                .await
                .unwrap()
                .map(|j| j.name)
        }));
    }
    let mut got: Vec<String> = Vec::new();
    for t in tasks {
        got.extend(t.await.unwrap());
    }
    got.sort();
    assert_eq!(got, ["a", "b", "c"]);
    let a = db
        .get_job::<Value>(JobKind::Training, "a")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(a.attempts, 1);
    assert_eq!(a.lease_expires_at, Some(110.0));
    assert!(
        db.claim_job::<Value>(JobKind::Training, "x", 100.0, 10.0)
            .await
            .unwrap()
            .is_none()
    );
    // Other kinds are other queues.
    assert!(
        db.claim_job::<Value>(JobKind::Transform, "x", 100.0, 10.0)
            .await
            .unwrap()
            .is_none()
    );
}

async fn only_the_holder_writes_and_expired_leases_are_reclaimed_once(kind: Kind) {
    let (_f, db) = db(kind).await;
    db.insert_job(JobKind::Training, "j", 1.0, &json!({"v": 0}))
        .await
        .unwrap();
    let j = db
        .claim_job::<Value>(JobKind::Training, "w1", 10.0, 5.0)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(j.owner.as_deref(), Some("w1"));
    assert!(
        !db.update_job_body(JobKind::Training, "j", "w2", &json!({"v": 9}))
            .await
            .unwrap()
    );
    assert!(
        db.update_job_body(JobKind::Training, "j", "w1", &json!({"v": 1}))
            .await
            .unwrap()
    );
    assert_eq!(
        db.heartbeat(JobKind::Training, "j", "w1", 12.0, 5.0)
            .await
            .unwrap(),
        Some(JobStatus::InProgress)
    );
    assert!(
        db.expired_jobs::<Value>(JobKind::Training, 16.0)
            .await
            .unwrap()
            .is_empty()
    );
    let expired = db
        .expired_jobs::<Value>(JobKind::Training, 18.0)
        .await
        .unwrap();
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].body["v"], 1);
    assert!(
        db.reclaim(
            JobKind::Training,
            "j",
            "w1",
            18.0,
            JobStatus::InProgress,
            &json!({"v": 2})
        )
        .await
        .unwrap()
    );
    assert!(
        !db.reclaim(
            JobKind::Training,
            "j",
            "w1",
            18.0,
            JobStatus::Failed,
            &json!({})
        )
        .await
        .unwrap()
    );
    // The old holder lost it: its heartbeat and writes no longer land.
    assert_eq!(
        db.heartbeat(JobKind::Training, "j", "w1", 19.0, 5.0)
            .await
            .unwrap(),
        None
    );
    assert!(
        !db.finish_job(
            JobKind::Training,
            "j",
            "w1",
            JobStatus::Completed,
            &json!({})
        )
        .await
        .unwrap()
    );
    let again = db
        .claim_job::<Value>(JobKind::Training, "w2", 20.0, 5.0)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.attempts, 2);
    assert!(
        db.finish_job(
            JobKind::Training,
            "j",
            "w2",
            JobStatus::Completed,
            &json!({"v": 3})
        )
        .await
        .unwrap()
    );
    let done = db
        .get_job::<Value>(JobKind::Training, "j")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (done.status, done.body["v"].clone()),
        (JobStatus::Completed, json!(3))
    );
}

async fn stop_marks_held_jobs_stopping_and_ends_queued_ones(kind: Kind) {
    let (_f, db) = db(kind).await;
    db.insert_job(JobKind::Training, "q", 1.0, &json!({"s": "queued"}))
        .await
        .unwrap();
    db.insert_job(JobKind::Training, "r", 2.0, &json!({}))
        .await
        .unwrap();
    let stopped = db
        .stop_job::<Value>(JobKind::Training, "q", |mut b| {
            b["s"] = json!("stopped");
            b
        })
        .await
        .unwrap();
    assert_eq!(stopped, StopOutcome::Stopped);
    let q = db
        .get_job::<Value>(JobKind::Training, "q")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (q.status, q.body["s"].clone()),
        (JobStatus::Stopped, json!("stopped"))
    );
    let r = db
        .claim_job::<Value>(JobKind::Training, "w", 5.0, 5.0)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.name, "r", "a stopped job is not claimed");
    assert_eq!(
        db.stop_job::<Value>(JobKind::Training, "r", |b| b)
            .await
            .unwrap(),
        StopOutcome::Stopping
    );
    assert_eq!(
        db.heartbeat(JobKind::Training, "r", "w", 6.0, 5.0)
            .await
            .unwrap(),
        Some(JobStatus::Stopping)
    );
    assert_eq!(
        db.stop_job::<Value>(JobKind::Training, "r", |b| b)
            .await
            .unwrap(),
        StopOutcome::NotInProgress
    );
    assert_eq!(
        db.stop_job::<Value>(JobKind::Training, "nope", |b| b)
            .await
            .unwrap(),
        StopOutcome::NotInProgress
    );
}

async fn logs_read_in_order_from_either_end(kind: Kind) {
    let (_f, db) = db(kind).await;
    assert_eq!(db.log_span(JobKind::Training, "j").await.unwrap(), None);
    for i in 0..5 {
        db.append_log(JobKind::Training, "j", 1000 + i, &format!("line {i}"))
            .await
            .unwrap();
    }
    db.append_log(JobKind::Training, "other", 1, "x")
        .await
        .unwrap();
    let head = db
        .read_logs(
            JobKind::Training,
            "j",
            &LogQuery {
                limit: 2,
                from_head: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        head.iter().map(|e| e.message.as_str()).collect::<Vec<_>>(),
        ["line 0", "line 1"]
    );
    let tail = db
        .read_logs(
            JobKind::Training,
            "j",
            &LogQuery {
                limit: 2,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(tail.iter().map(|e| e.seq).collect::<Vec<_>>(), [4, 5]);
    let after = db
        .read_logs(
            JobKind::Training,
            "j",
            &LogQuery {
                after_seq: Some(4),
                limit: 10,
                from_head: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(after.len(), 1);
    assert_eq!(
        db.log_span(JobKind::Training, "j").await.unwrap(),
        Some((1000, 1004, 5))
    );
}

async fn metric_points_read_back_by_name_and_step_and_survive_reopen(kind: Kind) {
    let f = Fixture::new(kind);
    let db = f.open().await;
    let point = |name: &str, step: u64, value: f64| MetricPoint {
        name: name.into(),
        step,
        at: 100.0 + step as f64,
        value,
    };
    for p in [
        point("validation:auc", 2, 0.7),
        point("validation:auc", 1, 0.6),
        point("train:loss", 1, 0.9),
    ] {
        db.record_metric(JobKind::Training, "j", &p).await.unwrap();
    }
    // Another job's points and the same job name of another kind stay apart.
    db.record_metric(JobKind::Training, "k", &point("validation:auc", 1, 0.1))
        .await
        .unwrap();
    db.record_metric(JobKind::Transform, "j", &point("validation:auc", 1, 0.2))
        .await
        .unwrap();
    // The same step again replaces the value.
    db.record_metric(JobKind::Training, "j", &point("validation:auc", 2, 0.75))
        .await
        .unwrap();
    let auc = db
        .read_metrics(JobKind::Training, "j", Some("validation:auc"))
        .await
        .unwrap();
    assert_eq!(
        auc,
        vec![
            point("validation:auc", 1, 0.6),
            point("validation:auc", 2, 0.75)
        ]
    );
    db.close().await;
    let db = f.open().await;
    let all = db.read_metrics(JobKind::Training, "j", None).await.unwrap();
    let names: Vec<(&str, u64)> = all.iter().map(|p| (p.name.as_str(), p.step)).collect();
    assert_eq!(
        names,
        [
            ("train:loss", 1),
            ("validation:auc", 1),
            ("validation:auc", 2)
        ]
    );
}

async fn logs_and_metric_points_append_in_batches_in_order(kind: Kind) {
    let (_f, db) = db(kind).await;
    db.append_log(JobKind::Training, "j", 1, "first")
        .await
        .unwrap();
    let lines: Vec<(i64, String)> = (0..300).map(|i| (10 + i, format!("line {i}"))).collect();
    db.append_logs(JobKind::Training, "j", &lines)
        .await
        .unwrap();
    db.append_logs(JobKind::Training, "j", &[]).await.unwrap();
    let all = db
        .read_logs(
            JobKind::Training,
            "j",
            &LogQuery {
                limit: 1000,
                from_head: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(all.len(), 301);
    assert_eq!(all[0].message, "first");
    assert_eq!(all[300].message, "line 299");
    assert!(all.windows(2).all(|w| w[0].seq + 1 == w[1].seq));
    let points: Vec<MetricPoint> = (1..=3)
        .map(|step| MetricPoint {
            name: "train:loss".into(),
            step,
            at: step as f64,
            value: 1.0 / step as f64,
        })
        .collect();
    db.record_metrics(JobKind::Training, "j", &points)
        .await
        .unwrap();
    // The same steps again replace their values, as one by one.
    let mut again = points.clone();
    again[2].value = 0.25;
    db.record_metrics(JobKind::Training, "j", &again[2..])
        .await
        .unwrap();
    let read = db
        .read_metrics(JobKind::Training, "j", Some("train:loss"))
        .await
        .unwrap();
    assert_eq!(read, again);
}
