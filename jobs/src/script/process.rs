//! A managed process: a script (or `pip`) in its own process group, its stdout and stderr
//! read line by line into the job's log, stopped with SIGTERM to the whole group and SIGKILL
//! after a grace period, and never leaving a process behind.
//!
//! Concurrency: three plain threads per process (one per pipe, reading lines into a bounded
//! channel, so a script that prints faster than the log is written waits; one blocked in
//! `wait`), and the caller's task, which [`drive`]s: it hands lines to a [`LineSink`], polls
//! the cancel flag every 50 ms, and sends the signals.
//!
//! No orphans: every process started for a job carries `PIER_JOB_MARKER=<marker>` in its
//! environment. When the main process ends (or is killed), what is left of its group is
//! killed, and then [`sweep`] kills any process of this user whose environment holds the
//! marker (one that left the group with `setsid` but kept its environment).

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process, kill_process_group};
use tokio::sync::{mpsc, oneshot};

use crate::runner::now;

/// The environment variable that marks a job's processes.
pub const MARKER_VARIABLE: &str = "PIER_JOB_MARKER";

/// Longest log line kept; longer lines are split.
pub const MAX_LINE: usize = 16 << 10;

/// Lines in flight between the pipe readers and the log writer.
const LINE_QUEUE: usize = 1024;

/// How long output is still read after the main process ended and its group was killed.
const DRAIN: Duration = Duration::from_secs(5);

/// What to run.
#[derive(Clone, Debug)]
pub struct Spec {
    /// The program.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// Variables added to the runner's environment.
    pub env: Vec<(String, String)>,
    /// The working folder.
    pub cwd: PathBuf,
    /// The job's marker (see the module docs).
    pub marker: String,
}

/// Which pipe a line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    /// stdout.
    Stdout,
    /// stderr.
    Stderr,
}

/// One line of output.
#[derive(Clone, Debug)]
pub struct Line {
    /// The pipe.
    pub stream: Stream,
    /// The text (lossy UTF-8, no line end).
    pub text: String,
    /// When it was read (seconds since the epoch).
    pub at: f64,
}

/// Where [`drive`] hands lines.
pub(crate) trait LineSink {
    /// Takes one line.
    async fn line(&mut self, line: Line);
    /// Writes what it holds (called every 50 ms and at the end).
    async fn flush(&mut self);
}

/// How a managed process ended.
#[derive(Debug)]
pub struct Finished {
    /// Its exit status.
    pub status: std::io::Result<ExitStatus>,
    /// Whether the cancel flag stopped it (SIGTERM sent).
    pub stopped: bool,
    /// Whether it needed SIGKILL after the grace period.
    pub killed: bool,
    /// Processes of the job [`sweep`] found and killed after the group was gone.
    pub swept: usize,
}

/// A started process.
pub(crate) struct Managed {
    pgid: Pid,
    lines: mpsc::Receiver<Line>,
    exit: oneshot::Receiver<std::io::Result<ExitStatus>>,
    marker: String,
}

/// Starts `spec` in a process group of its own, stdin closed, stdout and stderr piped.
pub(crate) fn spawn(spec: &Spec) -> std::io::Result<Managed> {
    use std::os::unix::process::CommandExt;
    let mut command = std::process::Command::new(&spec.program);
    command
        .args(&spec.args)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .env(MARKER_VARIABLE, &spec.marker)
        .current_dir(&spec.cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = command.spawn()?;
    let pid = i32::try_from(child.id()).unwrap_or(0);
    let pgid = Pid::from_raw(pid).ok_or_else(|| std::io::Error::other("the child has no pid"))?;
    let (tx, lines) = mpsc::channel(LINE_QUEUE);
    if let Some(out) = child.stdout.take() {
        read_lines(out, Stream::Stdout, tx.clone());
    }
    if let Some(err) = child.stderr.take() {
        read_lines(err, Stream::Stderr, tx);
    }
    let (done, exit) = oneshot::channel();
    std::thread::Builder::new()
        .name("pier-script-wait".into())
        .spawn(move || {
            let _ = done.send(child.wait());
        })?;
    Ok(Managed {
        pgid,
        lines,
        exit,
        marker: spec.marker.clone(),
    })
}

fn read_lines(pipe: impl Read + Send + 'static, stream: Stream, tx: mpsc::Sender<Line>) {
    let spawned = std::thread::Builder::new()
        .name("pier-script-log".into())
        .spawn(move || {
            let mut reader = BufReader::with_capacity(64 << 10, pipe);
            let mut line: Vec<u8> = Vec::new();
            loop {
                let (consumed, ended, eof) = match reader.fill_buf() {
                    Ok([]) => (0, !line.is_empty(), true),
                    Ok(buf) => match buf.iter().position(|&b| b == b'\n') {
                        Some(i) if line.len() + i <= MAX_LINE => {
                            line.extend_from_slice(&buf[..i]);
                            (i + 1, true, false)
                        }
                        _ => {
                            let room = MAX_LINE - line.len();
                            let take = buf.len().min(room);
                            line.extend_from_slice(&buf[..take]);
                            (take, line.len() >= MAX_LINE, false)
                        }
                    },
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(_) => (0, !line.is_empty(), true),
                };
                reader.consume(consumed);
                if ended {
                    if line.last() == Some(&b'\r') {
                        line.pop();
                    }
                    let text = String::from_utf8_lossy(&line).into_owned();
                    line.clear();
                    let sent = tx.blocking_send(Line {
                        stream,
                        text,
                        at: now(),
                    });
                    if sent.is_err() {
                        return;
                    }
                }
                if eof {
                    return;
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start a log reader thread");
    }
}

/// Runs a started process to its end: lines go to `sink`; when `cancel` is set, SIGTERM goes
/// to the group, and SIGKILL `grace` later if it still runs. When the main process has
/// ended, what is left of the group is killed and the job's marker swept.
pub(crate) async fn drive(
    mut managed: Managed,
    cancel: &AtomicBool,
    grace: Duration,
    sink: &mut impl LineSink,
) -> Finished {
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut term_at, mut killed) = (None::<Instant>, false);
    let mut status: Option<std::io::Result<ExitStatus>> = None;
    let mut drain_until: Option<Instant> = None;
    let mut lines_open = true;
    loop {
        if status.is_some() && !lines_open {
            break;
        }
        tokio::select! {
            line = managed.lines.recv(), if lines_open => match line {
                Some(line) => sink.line(line).await,
                None => lines_open = false,
            },
            exit = &mut managed.exit, if status.is_none() => {
                status = Some(exit.unwrap_or_else(|_| Err(std::io::Error::other("the wait thread ended"))));
                // The main process is gone: so is whatever it left in its group.
                let _ = kill_process_group(managed.pgid, Signal::KILL);
                drain_until = Some(Instant::now() + DRAIN);
            }
            _ = tick.tick() => {
                sink.flush().await;
                if status.is_none() && cancel.load(Ordering::SeqCst) {
                    match term_at {
                        None => {
                            tracing::info!(pgid = managed.pgid.as_raw_pid(), "stopping a script: SIGTERM to its process group");
                            let _ = kill_process_group(managed.pgid, Signal::TERM);
                            term_at = Some(Instant::now());
                        }
                        Some(at) if !killed && at.elapsed() >= grace => {
                            tracing::info!(pgid = managed.pgid.as_raw_pid(), "grace period over: SIGKILL to the process group");
                            let _ = kill_process_group(managed.pgid, Signal::KILL);
                            killed = true;
                        }
                        Some(_) => {}
                    }
                }
                if drain_until.is_some_and(|d| Instant::now() >= d) {
                    // Output held open by a process that left the group: the sweep ends it.
                    break;
                }
            }
        }
    }
    sink.flush().await;
    let marker = managed.marker.clone();
    let swept = tokio::task::spawn_blocking(move || sweep(&marker))
        .await
        .unwrap_or(0);
    Finished {
        status: status.unwrap_or_else(|| Err(std::io::Error::other("no exit status"))),
        stopped: term_at.is_some(),
        killed,
        swept,
    }
}

/// Kills (SIGKILL) every process of this user whose environment holds `PIER_JOB_MARKER=marker`;
/// returns how many. Linux only (reads `/proc`); elsewhere none are found.
pub fn sweep(marker: &str) -> usize {
    let needle = format!("{MARKER_VARIABLE}={marker}");
    let mut killed = 0;
    for _ in 0..3 {
        let found = marked(&needle);
        if found.is_empty() {
            break;
        }
        for pid in found {
            if kill_process(pid, Signal::KILL).is_ok() {
                killed += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    killed
}

/// Processes whose environment holds `needle` (a `NAME=value` entry), this one excepted.
fn marked(needle: &str) -> Vec<Pid> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let me = std::process::id().to_string();
    dir.filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            if name == me || !name.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let environ = std::fs::read(e.path().join("environ")).ok()?;
            environ
                .split(|&b| b == 0)
                .any(|entry| entry == needle.as_bytes())
                .then(|| name.parse().ok().and_then(Pid::from_raw))
                .flatten()
        })
        .collect()
}

/// Whether process `pid` exists and is not a zombie (for tests and reconciliation).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}
