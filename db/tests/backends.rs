//! What differs between the backends, tested on both: records and migrations, replica
//! heartbeats, change notifications (PostgreSQL `NOTIFY`; none on SQLite), an unreachable
//! database (at start, and lost and back while in use), URLs, and claims by many processes.

mod common;

use std::time::Duration;

use common::{Fixture, Kind};
use pier_db::{Change, Db, DbError, JobKind, ReplicaBeat, Table};
use serde_json::{Value, json};
use tokio::sync::broadcast;

both!(
    records_survive_reopen_and_migrations_apply_once,
    replicas_beat_list_and_leave,
    claims_by_many_processes_take_every_job_once,
);

async fn records_survive_reopen_and_migrations_apply_once(kind: Kind) {
    let f = Fixture::new(kind);
    let db = f.open().await;
    assert!(
        db.insert(Table::Models, "a", &json!({"x": 1}))
            .await
            .unwrap()
    );
    assert!(
        !db.insert(Table::Models, "a", &json!({"x": 2}))
            .await
            .unwrap(),
        "names are unique"
    );
    db.update(Table::Models, "a", &json!({"x": 3}))
        .await
        .unwrap();
    db.close().await;
    // Opening again applies nothing new and finds the record.
    let db = f.open().await;
    let got: Value = db.get(Table::Models, "a").await.unwrap().unwrap();
    assert_eq!(got["x"], 3);
    assert_eq!(db.list::<Value>(Table::Models).await.unwrap().len(), 1);
    assert!(db.delete(Table::Models, "a").await.unwrap());
    assert!(!db.delete(Table::Models, "a").await.unwrap());
    db.close().await;
    let applied = match kind {
        Kind::Postgres => f.pg().psql(
            "pier",
            "SELECT version FROM _sqlx_migrations ORDER BY version",
        ),
        Kind::Sqlite => {
            let out = std::process::Command::new("sqlite3")
                .arg(f.dir.path().join("pier.db"))
                .arg("SELECT version FROM _sqlx_migrations ORDER BY version")
                .output();
            match out {
                Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).into_owned(),
                // No sqlite3 CLI: ask through sqlx itself.
                _ => {
                    use sqlx::Connection;
                    let mut c = sqlx::SqliteConnection::connect(&f.url).await.unwrap();
                    let v: Vec<(i64,)> =
                        sqlx::query_as("SELECT version FROM _sqlx_migrations ORDER BY version")
                            .fetch_all(&mut c)
                            .await
                            .unwrap();
                    v.iter().map(|(v,)| format!("{v}\n")).collect()
                }
            }
        }
    };
    assert_eq!(applied, "1\n2\n", "each migration once");
}

async fn replicas_beat_list_and_leave(kind: Kind) {
    let f = Fixture::new(kind);
    let db = f.open().await;
    let beat = |id: &str, serving: Value| ReplicaBeat {
        id: id.to_owned(),
        started_at: 1_700_000_000.5,
        addresses: json!({"http": format!("{id}:8080")}),
        serving,
    };
    let clock = db.clock().await.unwrap();
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        (clock - wall).abs() < 5.0,
        "database clock {clock}, ours {wall}"
    );
    db.beat_replica(&beat("r1", json!({"e": 1}))).await.unwrap();
    db.beat_replica(&beat("r2", json!({"e": 1}))).await.unwrap();
    db.beat_replica(&beat("r1", json!({"e": 2}))).await.unwrap();
    let live = db.live_replicas(Duration::from_secs(10)).await.unwrap();
    assert_eq!(
        live.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["r1", "r2"]
    );
    assert_eq!(live[0].serving, json!({"e": 2}), "a beat replaces the row");
    assert_eq!(live[0].addresses["http"], "r1:8080");
    assert_eq!(live[0].started_at, 1_700_000_000.5);
    assert!((live[0].at - clock).abs() < 5.0, "{live:?}");
    assert!(db.remove_replica("r2").await.unwrap());
    assert!(!db.remove_replica("r2").await.unwrap());
    // A replica that stops beating drops out of the live list, then is pruned.
    tokio::time::sleep(Duration::from_millis(600)).await;
    db.beat_replica(&beat("r3", json!({}))).await.unwrap();
    let live = db.live_replicas(Duration::from_millis(400)).await.unwrap();
    assert_eq!(live.len(), 1, "{live:?}");
    assert_eq!(live[0].id, "r3");
    assert_eq!(
        db.prune_replicas(Duration::from_millis(400)).await.unwrap(),
        1
    );
    assert_eq!(
        db.live_replicas(Duration::from_secs(60))
            .await
            .unwrap()
            .len(),
        1
    );
}

/// Two "processes" (pools) with four claimers each race over 24 jobs: each job is claimed
/// exactly once and none is left (on PostgreSQL no claimer waits on another's pick and
/// comes back empty while jobs remain).
async fn claims_by_many_processes_take_every_job_once(kind: Kind) {
    let f = Fixture::new(kind);
    let a = f.open().await;
    let b = f.open().await;
    for i in 0..24 {
        a.insert_job(
            JobKind::Training,
            &format!("j{i:02}"),
            f64::from(i),
            &json!({}),
        )
        .await
        .unwrap();
    }
    let mut tasks = Vec::new();
    for w in 0..8 {
        let db = if w % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(job) = db
                .claim_job::<Value>(JobKind::Training, &format!("w{w}"), 100.0, 10.0)
                .await
                .unwrap()
            {
                got.push(job.name);
            }
            got
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort();
    let want: Vec<String> = (0..24).map(|i| format!("j{i:02}")).collect();
    assert_eq!(all, want);
    for job in a.list_jobs::<Value>(JobKind::Training).await.unwrap() {
        assert_eq!(job.attempts, 1, "{} claimed once", job.name);
    }
}

async fn next_change(rx: &mut broadcast::Receiver<Change>) -> Change {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("no change announced within 10 s")
        .unwrap()
}

fn change(table: &str, name: &str) -> Change {
    Change {
        table: table.to_owned(),
        name: name.to_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_announces_each_committed_write_to_every_replica() {
    let f = Fixture::new(Kind::Postgres);
    let writer = f.open().await;
    let reader = f.open().await;
    let mut rx = reader.subscribe_changes();
    let first = next_change(&mut rx).await;
    assert!(
        first.is_all(),
        "listening starts with a full reconcile: {first:?}"
    );
    let mut own = writer.subscribe_changes();
    assert!(next_change(&mut own).await.is_all());

    writer
        .insert(Table::Endpoints, "ep", &json!({}))
        .await
        .unwrap();
    assert_eq!(next_change(&mut rx).await, change("endpoints", "ep"));
    assert_eq!(
        next_change(&mut own).await,
        change("endpoints", "ep"),
        "the writer hears its own writes too"
    );
    // A name taken writes nothing and announces nothing: the next change is the update.
    assert!(
        !writer
            .insert(Table::Endpoints, "ep", &json!({}))
            .await
            .unwrap()
    );
    writer
        .update(Table::Endpoints, "ep", &json!({"v": 2}))
        .await
        .unwrap();
    assert_eq!(next_change(&mut rx).await, change("endpoints", "ep"));
    let arn = "arn:aws:sagemaker:us-east-1:000000000000:endpoint/ep";
    writer.insert(Table::Tags, arn, &json!([])).await.unwrap();
    assert_eq!(
        next_change(&mut rx).await,
        change("tags", arn),
        "names keep their colons"
    );
    for (table, name) in [
        (Table::Models, "m"),
        (Table::EndpointConfigs, "c"),
        (Table::ScalableTargets, "t"),
        (Table::ScalingPolicies, "p"),
        (Table::ScalingActivities, "a"),
    ] {
        writer.insert(table, name, &json!({})).await.unwrap();
        assert_eq!(next_change(&mut rx).await, change(table.name(), name));
    }
    // An injected failure writes nothing, announces nothing.
    writer.fail_next_writes(1);
    writer.delete(Table::Endpoints, "ep").await.unwrap_err();
    assert!(writer.delete(Table::Endpoints, "ep").await.unwrap());
    assert_eq!(next_change(&mut rx).await, change("endpoints", "ep"));
    assert!(!writer.delete(Table::Endpoints, "ep").await.unwrap());
    writer
        .insert(Table::Models, "last", &json!({}))
        .await
        .unwrap();
    assert_eq!(next_change(&mut rx).await, change("models", "last"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_subscribers_never_yield() {
    let f = Fixture::new(Kind::Sqlite);
    let db = f.open().await;
    let mut rx = db.subscribe_changes();
    db.insert(Table::Models, "m", &json!({})).await.unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(300), rx.recv())
            .await
            .is_err(),
        "nothing is announced on SQLite, and the receiver stays open"
    );
}

/// PostgreSQL goes away while in use: statements fail as unavailable (not as failed
/// statements), and once it is back the same handle works again and its listener
/// reconnects and asks for a full reconcile, with no restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_database_is_unavailable_and_recovers_without_restart() {
    let f = Fixture::new(Kind::Postgres);
    let db = f.open().await;
    let mut rx = db.subscribe_changes();
    assert!(next_change(&mut rx).await.is_all());
    db.insert(Table::Models, "before", &json!({}))
        .await
        .unwrap();
    assert_eq!(next_change(&mut rx).await, change("models", "before"));

    f.pg().stop();
    let err = db
        .insert(Table::Models, "during", &json!({}))
        .await
        .unwrap_err();
    assert!(err.is_unavailable(), "{err:?}");
    let err = db.get::<Value>(Table::Models, "before").await.unwrap_err();
    assert!(err.is_unavailable(), "{err:?}");
    assert!(err.to_string().contains("read of models"), "{err}");

    f.pg().restart();
    let back = next_change(&mut rx).await;
    assert!(
        back.is_all(),
        "a reconnect asks for a full reconcile: {back:?}"
    );
    let got: Option<Value> = db.get(Table::Models, "before").await.unwrap();
    assert!(got.is_some());
    db.insert(Table::Models, "after", &json!({})).await.unwrap();
    assert_eq!(next_change(&mut rx).await, change("models", "after"));
}

#[tokio::test]
async fn an_unreachable_database_at_start_names_the_url_without_its_password() {
    // A loopback port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://pier:hunter2@127.0.0.1:{port}/pier");
    let err = Db::connect(&url).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, DbError::Connect { .. }), "{err:?}");
    assert!(err.is_unavailable());
    assert!(
        text.starts_with(&format!(
            "cannot connect to the database postgres://pier:***@127.0.0.1:{port}/pier: "
        )),
        "{text}"
    );
    assert!(!text.contains("hunter2"), "{text}");
    assert!(text.to_lowercase().contains("refused"), "{text}");

    for (bad, why) in [
        ("mysql://db/pier", "expected sqlite://PATH or postgres://"),
        ("sqlite://", "name the database file"),
        ("sqlite::memory:", "name the database file"),
        (
            "postgres://pier:pw@db:notaport/pier",
            "invalid database URL postgres://pier:***@",
        ),
    ] {
        let err = Db::connect(bad).await.unwrap_err();
        assert!(matches!(err, DbError::Url { .. }), "{bad}: {err:?}");
        assert!(err.to_string().contains(why), "{bad}: {err}");
        assert!(!err.to_string().contains(":pw@"), "{err}");
        assert!(!err.is_unavailable());
    }
}

#[tokio::test]
async fn sqlite_urls_name_the_file_and_serving_locks_its_folder() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sub/state.db");
    let url = format!("sqlite://{}", file.display());
    let served = Db::connect_serving(&url).await.unwrap();
    assert!(file.is_file());
    let err = Db::connect_serving(&url).await.unwrap_err();
    assert!(matches!(err, DbError::InUse { .. }), "{err}");
    // Other openers share it.
    let other = Db::connect(&url).await.unwrap();
    served.insert(Table::Models, "m", &json!({})).await.unwrap();
    assert!(
        other
            .get::<Value>(Table::Models, "m")
            .await
            .unwrap()
            .is_some()
    );
    served.close().await;
    Db::connect_serving(&url).await.unwrap().close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_servers_share_the_database_without_a_lock() {
    let f = Fixture::new(Kind::Postgres);
    let a = Db::connect_serving(&f.url).await.unwrap();
    let b = Db::connect_serving(&f.url).await.unwrap();
    a.insert(Table::Models, "m", &json!({})).await.unwrap();
    assert!(b.get::<Value>(Table::Models, "m").await.unwrap().is_some());
}

/// A data folder made before migrations existed (its tables created by `CREATE TABLE IF NOT
/// EXISTS` at open, `attempts INTEGER`) opens as it is: the first migration finds its tables,
/// the second adds `replicas`, and its rows read back.
#[tokio::test]
async fn a_data_folder_from_before_migrations_opens_with_its_rows() {
    use sqlx::Connection;
    let dir = tempfile::tempdir().unwrap();
    let url = Db::default_url(dir.path());
    {
        let options = url
            .parse::<sqlx::sqlite::SqliteConnectOptions>()
            .unwrap()
            .create_if_missing(true);
        let mut c = sqlx::SqliteConnection::connect_with(&options)
            .await
            .unwrap();
        for sql in [
            "CREATE TABLE models (name TEXT PRIMARY KEY, body TEXT NOT NULL)",
            "CREATE TABLE jobs (kind TEXT NOT NULL, name TEXT NOT NULL, status TEXT NOT NULL,
                owner TEXT, lease_expires_at DOUBLE PRECISION, heartbeat_at DOUBLE PRECISION,
                attempts INTEGER NOT NULL DEFAULT 0, created_at DOUBLE PRECISION NOT NULL,
                body TEXT NOT NULL, PRIMARY KEY (kind, name))",
            "INSERT INTO models VALUES ('old', '{\"x\": 7}')",
            "INSERT INTO jobs VALUES ('training', 'j', 'Completed', 'w', NULL, 1.0, 3, 1.0, '{}')",
        ] {
            sqlx::query(sql).execute(&mut c).await.unwrap();
        }
        c.close().await.unwrap();
    }
    let db = Db::open(dir.path()).await.unwrap();
    let old: Value = db.get(Table::Models, "old").await.unwrap().unwrap();
    assert_eq!(old["x"], 7);
    let j = db
        .get_job::<Value>(JobKind::Training, "j")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(j.attempts, 3);
    assert!(db.insert(Table::Endpoints, "e", &json!({})).await.unwrap());
    db.beat_replica(&ReplicaBeat {
        id: "r".into(),
        started_at: 0.0,
        addresses: json!({}),
        serving: json!({}),
    })
    .await
    .unwrap();
}

/// How long a write takes to reach another replica's subscriber (from the writer starting
/// its write, the transaction and NOTIFY, to the receiver waking), over 50 writes: printed, and bounded well inside the
/// 2 s in which a change must be in service on every replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_reach_another_replica_well_within_two_seconds() {
    let f = Fixture::new(Kind::Postgres);
    let writer = f.open().await;
    let reader = f.open().await;
    let mut rx = reader.subscribe_changes();
    assert!(next_change(&mut rx).await.is_all());
    let mut delays = Vec::new();
    for i in 0..50 {
        let name = format!("e{i}");
        let t = std::time::Instant::now();
        writer
            .insert(Table::Endpoints, &name, &json!({}))
            .await
            .unwrap();
        assert_eq!(next_change(&mut rx).await, change("endpoints", &name));
        delays.push(t.elapsed());
    }
    delays.sort();
    let (p50, max) = (delays[delays.len() / 2], delays[delays.len() - 1]);
    eprintln!("NOTIFY to subscriber over 50 writes: p50 {p50:?}, max {max:?}");
    assert!(max < Duration::from_millis(500), "p50 {p50:?}, max {max:?}");
}
