//! A 200 MB `text/csv` channel read from a real S3-compatible server (`s3s-fs`, on loopback)
//! against the same file read from local disk, in one run: wall and CPU seconds of each, the
//! server's CPU, and the ratios. The target is S3 ≤ 1.5x local.
//!
//! `cargo run --release --example channel_bench [MEGABYTES] [ROUNDS]` (default 200 MB, 2
//! rounds, alternating local and S3). Needs `s3s-fs` (see `.ci/run`). CPU time is read from
//! `/proc` (Linux).

#[path = "../tests/common/mod.rs"]
mod common;

use std::io::Write;
use std::time::Instant;

use object_store::path::Path as ObjectPath;
use pier_jobs::channels::{ChannelSpec, ContentKind, ReadOptions, read_channel};

const COLUMNS: usize = 20;

/// utime + stime of `pid` ("self" for this process), in seconds.
fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // fields[0] is field 3 (state): utime is field 14 -> index 11.
    (ticks(11) + ticks(12)) / 100.0
}

fn write_csv(path: &std::path::Path, megabytes: usize) -> (usize, u64) {
    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path).unwrap());
    let target = (megabytes as u64) << 20;
    let (mut written, mut rows) = (0u64, 0usize);
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    let mut line = String::with_capacity(256);
    while written < target {
        line.clear();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        line.push_str(if x & 1 == 0 { "0" } else { "1" });
        for _ in 1..COLUMNS {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let v = (x >> 11) as f64 / (1u64 << 53) as f64 * 200.0 - 100.0;
            line.push(',');
            line.push_str(&format!("{v:.5}"));
        }
        line.push('\n');
        out.write_all(line.as_bytes()).unwrap();
        written += line.len() as u64;
        rows += 1;
    }
    out.flush().unwrap();
    (rows, written)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let megabytes: usize = args.get(1).map_or(200, |a| a.parse().expect("MEGABYTES"));
    let rounds: usize = args.get(2).map_or(2, |a| a.parse().expect("ROUNDS"));

    let server = common::S3Server::start(common::BUCKET);
    // The file goes up with one PUT through the S3 API (so the server keeps its ETag, as S3
    // does, instead of hashing the object on every GET); s3s-fs stores it as a plain file
    // under its root, and the local read takes that same file.
    let scratch = tempfile::tempdir().unwrap();
    let generated = scratch.path().join("train.csv");
    let started = Instant::now();
    let (rows, bytes) = write_csv(&generated, megabytes);
    println!(
        "generated {rows} rows x {COLUMNS} columns, {:.1} MB, in {:.1} s",
        bytes as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    let body = std::fs::read(&generated).unwrap();
    std::fs::remove_file(&generated).unwrap();
    server
        .client(common::BUCKET)
        .put(&ObjectPath::from("bench/train.csv"), body.into())
        .await
        .expect("PUT the data set");
    println!("PUT it in {:.1} s", started.elapsed().as_secs_f64());
    let path = server
        .root
        .path()
        .join(common::BUCKET)
        .join("bench/train.csv");
    assert_eq!(std::fs::metadata(&path).unwrap().len(), bytes);

    let spec = |uri: String| {
        serde_json::from_value::<ChannelSpec>(serde_json::json!({
            "ChannelName": "train",
            "ContentType": "text/csv",
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": uri}},
        }))
        .unwrap()
        .validate(0)
        .unwrap()
    };
    let local = spec(path.display().to_string());
    let s3 = spec(format!("s3://{}/bench/", common::BUCKET));
    let mut opts = ReadOptions::new(true, &[ContentKind::Csv]);
    opts.s3 = server.config();
    let server_pid = server_pid(&server);

    let mut best = [(f64::MAX, 0.0, 0.0), (f64::MAX, 0.0, 0.0)];
    for round in 1..=rounds {
        for (i, (what, channel)) in [("local", &local), ("s3s-fs", &s3)].into_iter().enumerate() {
            let (cpu0, srv0, t0) = (
                cpu_seconds("self"),
                cpu_seconds(&server_pid),
                Instant::now(),
            );
            let d = read_channel(channel, &opts).await.expect("read");
            let wall = t0.elapsed().as_secs_f64();
            let (cpu, srv) = (cpu_seconds("self") - cpu0, cpu_seconds(&server_pid) - srv0);
            assert_eq!(d.n_rows(), rows);
            println!(
                "round {round} {what:7}: wall {wall:6.2} s, reader cpu {cpu:6.2} s, server cpu {srv:5.2} s, {:.0} MB/s",
                bytes as f64 / 1e6 / wall
            );
            if wall < best[i].0 {
                best[i] = (wall, cpu, srv);
            }
            drop(d);
        }
    }
    let [(lw, lc, _), (sw, sc, ss)] = best;
    println!(
        "best: local wall {lw:.2} s cpu {lc:.2} s | s3s-fs wall {sw:.2} s cpu {sc:.2} s (+ server {ss:.2} s) | ratio wall {:.2}x, reader cpu {:.2}x, reader+server cpu {:.2}x",
        sw / lw,
        sc / lc,
        (sc + ss) / lc
    );
}

fn server_pid(server: &common::S3Server) -> String {
    server.pid().to_string()
}
