//! One input object through the transform pipeline: read → split → decode → predict → encode
//! → write, bounded.
//!
//! Concurrency: the calling thread reads and splits the object into requests (a record, a
//! `MaxPayloadInMB` of records, or the whole object); `workers` scoped threads decode, predict
//! and encode them; one writer thread puts the answers back in input order and writes them.
//! At most `2 × workers` requests are between the reader and the writer (a token is taken per
//! request and returned once written), so memory stays near `2 × workers × MaxPayloadInMB`
//! (input and output) whatever the object's size. A worker hands a predicted request's input
//! buffer back to the reader (at most `workers` wait), so the next request fills memory that is
//! already paged in; lines are found in a reused read buffer (`LineReader`). A request is
//! decoded straight from its bytes into one batch tensor (no per-record allocation) by the
//! server's codecs ([`pier_runtimes::codec`]), checked with the server's input policy and
//! predicted in one call, so its output bytes are what `POST /invocations` answers for the same
//! payload.
//!
//! A request that fails is retried record by record to find the line at fault: that line fails
//! the object, or, with `PIER_SKIP_BAD_RECORDS`, goes to the errors output with its reason
//! while the good records are written. The cancel flag is checked between requests.

use std::io::{BufReader, Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crossbeam_channel::{Receiver, bounded};
use pier_runtimes::codec::{self, CodecError, Format};
use pier_runtimes::{DataType, Model, Tensor, values};

use super::filter::join_json;
use super::{Plan, Split, Strategy};

/// Bytes read from the object at a time.
const READ_BUF: usize = 1 << 20;

/// The model's side of a transform: the same decode, policy, predict and encode steps as a
/// SageMaker invocation of one payload.
#[derive(Debug, Clone)]
pub struct Predictor {
    model: Arc<dyn Model>,
    input: String,
    dtype: DataType,
    features: Option<usize>,
}

impl Predictor {
    /// Wraps a loaded model; refuses one whose inputs are not one feature matrix.
    pub fn new(model: Arc<dyn Model>) -> Result<Self, String> {
        let signature = model.signature();
        let [spec] = signature.inputs.as_slice() else {
            return Err(format!(
                "the model takes {} inputs; batch transform feeds one feature matrix",
                signature.inputs.len()
            ));
        };
        Ok(Self {
            input: spec.name.clone(),
            dtype: spec.dtype,
            features: spec.features(),
            model: model.clone(),
        })
    }

    /// The model.
    pub fn model(&self) -> &Arc<dyn Model> {
        &self.model
    }

    /// Decodes `body`, applies the input policy and predicts; returns the outputs in
    /// signature order.
    pub fn predict(&self, format: Format, body: &[u8]) -> Result<Vec<Tensor>, String> {
        let features =
            codec::decode_features(format, body, self.features).map_err(|e| codec_reason(&e))?;
        self.predict_features(features)
    }

    /// Predicts decoded features (a rows × features matrix): the input policy, then the
    /// model; returns the outputs in signature order.
    pub fn predict_features(&self, features: Tensor) -> Result<Vec<Tensor>, String> {
        if let (Some(want), Some(&got)) = (self.features, features.shape().get(1))
            && want != got
        {
            return Err(format!("{got} features where the model takes {want}"));
        }
        if !matches!(self.dtype, DataType::Fp32 | DataType::Fp64) {
            values::check_values(&self.input, &features, false).map_err(|e| e.to_string())?;
        }
        let tensor = features.cast(self.dtype).map_err(|e| e.to_string())?;
        let inputs = vec![tensor];
        let signature = self.model.signature();
        let rows = signature.check_inputs(&inputs).map_err(|e| e.to_string())?;
        values::check_inputs(self.model.as_ref(), &inputs).map_err(|e| e.to_string())?;
        let outputs = self.model.predict(inputs).map_err(|e| e.to_string())?;
        if outputs.len() != signature.outputs.len() {
            return Err(format!(
                "the model gave {} outputs but its signature declares {}",
                outputs.len(),
                signature.outputs.len()
            ));
        }
        if let Some(t) = outputs.iter().find(|t| t.shape().first() != Some(&rows)) {
            return Err(format!(
                "the model answered {:?} rows for {rows} records",
                t.shape().first()
            ));
        }
        Ok(outputs)
    }

    /// Encodes outputs as a response in `accept`.
    pub fn encode(&self, accept: Format, outputs: &[Tensor]) -> Result<Vec<u8>, String> {
        let names = &self.model.signature().outputs;
        let named: Vec<(&str, &Tensor)> = names
            .iter()
            .zip(outputs)
            .map(|(s, t)| (s.name.as_str(), t))
            .collect();
        codec::encode_outputs(accept, &named, &self.model.json_layout()).map_err(|e| e.to_string())
    }

    /// [`predict`](Self::predict) then [`encode`](Self::encode): what `POST /invocations`
    /// answers for `body`.
    pub fn respond(&self, format: Format, body: &[u8], accept: Format) -> Result<Vec<u8>, String> {
        let outputs = self.predict(format, body)?;
        self.encode(accept, &outputs)
    }
}

/// A codec error in words that make sense for one record of an object (positions within the
/// request are replaced by the object's line, which the caller names).
fn codec_reason(e: &CodecError) -> String {
    match e {
        CodecError::Csv {
            column, message, ..
        } => format!("column {column}: {message}"),
        CodecError::JsonLines { message, .. } => message.clone(),
        CodecError::Json(m) => format!("not a record: {m}"),
        CodecError::Empty => "no record".into(),
        other => other.to_string(),
    }
}

/// Why an object could not be transformed. The caller names the object.
#[derive(Debug, Clone, PartialEq)]
pub enum ObjectError {
    /// A record the codec or the model refused.
    Record {
        /// What `line` counts: `line`, or `record` (RecordIO).
        unit: &'static str,
        /// 1-based line or record (1 for a whole-object request).
        line: u64,
        /// Why.
        reason: String,
    },
    /// A record (or a whole object, `SplitType None`) larger than `MaxPayloadInMB`.
    TooLarge {
        /// 1-based line.
        line: u64,
        /// The limit in bytes.
        limit: usize,
        /// Whether the whole object is the record.
        whole: bool,
    },
    /// The object holds no record.
    Empty,
    /// Reading failed (the store, the file, or gzip).
    Read(String),
    /// Writing the output failed.
    Write(String),
    /// The cancel flag was set.
    Cancelled,
}

impl std::fmt::Display for ObjectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ObjectError::Record { unit, line, reason } => write!(f, "{unit} {line}: {reason}"),
            ObjectError::TooLarge {
                whole: true, limit, ..
            } => write!(
                f,
                "the object is larger than MaxPayloadInMB ({} MB) and SplitType is None; split it by Line",
                limit >> 20
            ),
            ObjectError::TooLarge { line, limit, .. } => write!(
                f,
                "line {line}: the record is larger than MaxPayloadInMB ({} MB)",
                limit >> 20
            ),
            ObjectError::Empty => write!(f, "holds no records"),
            ObjectError::Read(r) => write!(f, "cannot be read: {r}"),
            ObjectError::Write(r) => write!(f, "its output cannot be written: {r}"),
            ObjectError::Cancelled => write!(f, "cancelled"),
        }
    }
}

/// Counters shared with the job's heartbeat.
#[derive(Debug, Default)]
pub struct Progress {
    /// Records written.
    pub records: AtomicU64,
    /// Records skipped into `.errors`.
    pub failed: AtomicU64,
    /// Input bytes read, as stored.
    pub bytes: AtomicU64,
    /// Objects finished.
    pub objects: AtomicU64,
}

/// What one object gave.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ObjectStats {
    /// Records transformed.
    pub records: u64,
    /// Records skipped into `.errors`.
    pub failed: u64,
}

/// A request: records of one object, each ending in `\n` in `bytes`.
struct Batch {
    seq: u64,
    bytes: Vec<u8>,
    /// (start, end without the line end, line) of each record.
    records: Vec<(usize, usize, u64)>,
}

/// What a worker hands the writer.
struct Done {
    out: Vec<u8>,
    errors: Vec<u8>,
    records: u64,
    failed: u64,
}

/// Counts bytes read into `progress.bytes`.
pub struct Counting<'a, R> {
    inner: R,
    counter: &'a AtomicU64,
}

impl<'a, R> Counting<'a, R> {
    /// Wraps `inner`.
    pub fn new(inner: R, counter: &'a AtomicU64) -> Self {
        Self { inner, counter }
    }
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.counter.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Transforms one object: reads `input` (already decompressed), writes the assembled output to
/// `out` and bad records (with `plan.skip_bad`) to `errors` as `line N: reason` lines.
pub fn transform_object(
    predictor: &Predictor,
    plan: &Plan,
    input: &mut (dyn Read + Send),
    out: &mut (dyn Write + Send),
    errors: &mut (dyn Write + Send),
    progress: &Progress,
    cancel: &AtomicBool,
) -> Result<ObjectStats, ObjectError> {
    let workers = plan.workers.max(1);
    let (batch_tx, batch_rx) = bounded::<Batch>(workers);
    let (done_tx, done_rx) = bounded::<(u64, Result<Done, ObjectError>)>(workers * 2);
    let (token_tx, token_rx) = bounded::<()>(workers * 2);
    for _ in 0..workers * 2 {
        let _ = token_tx.send(());
    }
    // Input buffers the workers are done with, for the reader's next requests: a request's
    // buffer is megabytes, and a new one is page-faulted in as it fills.
    let (spare_tx, spare_rx) = bounded::<Vec<u8>>(workers);
    let failed = AtomicBool::new(false);
    std::thread::scope(|s| {
        for _ in 0..workers {
            let (rx, tx, spare_tx) = (batch_rx.clone(), done_tx.clone(), spare_tx.clone());
            s.spawn(move || {
                for batch in rx {
                    let done = process(predictor, plan, &batch);
                    let _ = spare_tx.try_send(batch.bytes);
                    if tx.send((batch.seq, done)).is_err() {
                        return;
                    }
                }
            });
        }
        drop(spare_tx);
        drop((batch_rx, done_tx));
        let failed = &failed;
        let writer = s.spawn(move || {
            let mut pending = std::collections::BTreeMap::new();
            let mut next = 0u64;
            let mut stats = ObjectStats::default();
            for (seq, done) in done_rx {
                pending.insert(seq, done);
                while let Some(done) = pending.remove(&next) {
                    next += 1;
                    let result = done.and_then(|d| {
                        out.write_all(&d.out)
                            .and_then(|_| errors.write_all(&d.errors))
                            .map_err(|e| ObjectError::Write(e.to_string()))?;
                        Ok(d)
                    });
                    match result {
                        Ok(d) => {
                            stats.records += d.records;
                            stats.failed += d.failed;
                            progress.records.fetch_add(d.records, Ordering::Relaxed);
                            progress.failed.fetch_add(d.failed, Ordering::Relaxed);
                            let _ = token_tx.send(());
                        }
                        Err(e) => {
                            failed.store(true, Ordering::SeqCst);
                            return Err(e);
                        }
                    }
                }
            }
            Ok(stats)
        });
        let read = split(plan, input, &spare_rx, |batch| {
            if cancel.load(Ordering::Relaxed) {
                return Err(ObjectError::Cancelled);
            }
            if token_rx.recv().is_err() || failed.load(Ordering::SeqCst) {
                return Err(ObjectError::Cancelled);
            }
            batch_tx.send(batch).map_err(|_| ObjectError::Cancelled)
        });
        drop(batch_tx);
        let written = writer
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p));
        match (read, written) {
            // The writer's error is the cause when it stopped the reader.
            (_, Err(e)) => Err(e),
            (Err(e), _) => Err(e),
            (Ok(0), _) => Err(ObjectError::Empty),
            (Ok(_), Ok(stats)) => {
                if cancel.load(Ordering::Relaxed) {
                    return Err(ObjectError::Cancelled);
                }
                Ok(stats)
            }
        }
    })
}

/// Splits `input` into requests as `plan` says and hands each to `emit`; returns how many
/// records there were.
fn split(
    plan: &Plan,
    input: &mut (dyn Read + Send),
    spares: &Receiver<Vec<u8>>,
    mut emit: impl FnMut(Batch) -> Result<(), ObjectError>,
) -> Result<u64, ObjectError> {
    let limit = plan.max_payload;
    let read_err = |e: std::io::Error| ObjectError::Read(e.to_string());
    if plan.split == Split::None {
        let mut bytes = Vec::new();
        input
            .take(limit as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(read_err)?;
        if bytes.len() > limit {
            return Err(ObjectError::TooLarge {
                line: 1,
                limit,
                whole: true,
            });
        }
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(0);
        }
        let end = bytes.len();
        emit(Batch {
            seq: 0,
            bytes,
            records: vec![(0, end, 1)],
        })?;
        return Ok(1);
    }
    if plan.split == Split::RecordIo {
        return split_recordio(plan, input, emit);
    }
    let single = plan.strategy == Strategy::SingleRecord;
    let capacity = batch_capacity(plan);
    // A buffer a worker is done with, else a new one.
    let new_buffer = || {
        spares.try_recv().map_or_else(
            |_| Vec::with_capacity(capacity),
            |mut spare| {
                spare.clear();
                spare
            },
        )
    };
    let mut reader = LineReader::new(input);
    let mut batch = Batch {
        seq: 0,
        bytes: new_buffer(),
        records: Vec::new(),
    };
    let (mut line, mut records, mut seq) = (0u64, 0u64, 0u64);
    // A record may be `limit` bytes plus its line end (`\r\n`); one more byte read without
    // a line end shows it is longer.
    while let Some(read) = reader.next_line(limit + 2).map_err(read_err)? {
        let start = batch.bytes.len();
        let n = read.len();
        batch.bytes.extend_from_slice(read);
        line += 1;
        let ends = batch.bytes.last() == Some(&b'\n');
        let mut end = batch.bytes.len() - usize::from(ends);
        if end > start && batch.bytes[end - 1] == b'\r' {
            end -= 1;
        }
        if end - start > limit || (!ends && n > limit + 1) {
            return Err(ObjectError::TooLarge {
                line,
                limit,
                whole: false,
            });
        }
        if batch.bytes[start..end].iter().all(u8::is_ascii_whitespace) {
            batch.bytes.truncate(start);
            continue;
        }
        if !ends {
            batch.bytes.push(b'\n');
        }
        records += 1;
        if batch.bytes.len() > limit && !batch.records.is_empty() {
            // This record goes first in the next request.
            let mut next = new_buffer();
            next.extend_from_slice(&batch.bytes[start..]);
            batch.bytes.truncate(start);
            let full = std::mem::replace(
                &mut batch,
                Batch {
                    seq: seq + 1,
                    bytes: next,
                    records: Vec::new(),
                },
            );
            emit(full)?;
            seq += 1;
            batch.records.push((0, end - start, line));
        } else {
            batch.records.push((start, end, line));
        }
        if single || batch.bytes.len() >= limit {
            let full = std::mem::replace(
                &mut batch,
                Batch {
                    seq: seq + 1,
                    bytes: new_buffer(),
                    records: Vec::new(),
                },
            );
            emit(full)?;
            seq += 1;
        }
    }
    if !batch.records.is_empty() {
        emit(batch)?;
    }
    Ok(records)
}

/// Lines of an object, found with `memchr` in a reused read buffer: what `BufRead::read_until`
/// does, without a reader call, a `Take` and a bounds dance per line (a transform splits
/// millions of lines of a few dozen bytes).
struct LineReader<'r> {
    input: &'r mut (dyn Read + Send),
    buf: Vec<u8>,
    /// `buf[pos..filled]` is read and not yet returned.
    pos: usize,
    filled: usize,
    eof: bool,
}

impl<'r> LineReader<'r> {
    fn new(input: &'r mut (dyn Read + Send)) -> Self {
        Self {
            input,
            buf: vec![0; READ_BUF],
            pos: 0,
            filled: 0,
            eof: false,
        }
    }

    /// The next line with its `\n` (the last may lack it), or at most `max` bytes of a line
    /// longer than that; `None` at the end.
    fn next_line(&mut self, max: usize) -> std::io::Result<Option<&[u8]>> {
        let mut searched = 0;
        loop {
            let pending = &self.buf[self.pos..self.filled];
            if let Some(at) = memchr::memchr(b'\n', &pending[searched..]) {
                let len = (searched + at + 1).min(max);
                let line = self.pos..self.pos + len;
                self.pos += len;
                return Ok(Some(&self.buf[line]));
            }
            searched = pending.len();
            if searched >= max || self.eof {
                if searched == 0 {
                    return Ok(None);
                }
                let len = searched.min(max);
                let line = self.pos..self.pos + len;
                self.pos += len;
                return Ok(Some(&self.buf[line]));
            }
            // Keep the unfinished line at the front, make room (a line may be up to `max`
            // bytes), and read more behind it.
            if self.pos > 0 {
                self.buf.copy_within(self.pos..self.filled, 0);
                self.filled -= self.pos;
                self.pos = 0;
            }
            if self.buf.len() - self.filled < READ_BUF / 2 {
                let grown = (self.buf.len() * 2).min(max.max(READ_BUF) + READ_BUF);
                self.buf.resize(grown.max(self.filled + READ_BUF / 2), 0);
            }
            let n = loop {
                match self.input.read(&mut self.buf[self.filled..]) {
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    read => break read?,
                }
            };
            self.filled += n;
            self.eof = n == 0;
        }
    }
}

/// The starting buffer of a request batch: one record's worth for SingleRecord, else up to
/// the payload limit (at most eight read buffers).
fn batch_capacity(plan: &Plan) -> usize {
    if plan.strategy == Strategy::SingleRecord {
        4096
    } else {
        plan.max_payload.min(READ_BUF * 8)
    }
}

/// [`split`] for `SplitType RecordIO`: each frame's payload is a record (a text record gets a
/// line end, so the text codecs read it as a line); requests as for lines.
fn split_recordio(
    plan: &Plan,
    input: &mut (dyn Read + Send),
    mut emit: impl FnMut(Batch) -> Result<(), ObjectError>,
) -> Result<u64, ObjectError> {
    let limit = plan.max_payload;
    let single = plan.strategy == Strategy::SingleRecord;
    let capacity = batch_capacity(plan);
    let mut reader = BufReader::with_capacity(READ_BUF, input);
    let fresh = |seq| Batch {
        seq,
        bytes: Vec::with_capacity(capacity),
        records: Vec::new(),
    };
    let (mut batch, mut records, mut seq) = (fresh(0), 0u64, 0u64);
    loop {
        let start = batch.bytes.len();
        let more = super::recordio::read_record(&mut reader, &mut batch.bytes, limit).map_err(
            |reason| ObjectError::Record {
                unit: "record",
                line: records + 1,
                reason,
            },
        )?;
        if !more {
            break;
        }
        records += 1;
        let end = batch.bytes.len();
        if !plan.protobuf && batch.bytes[start..end].iter().all(u8::is_ascii_whitespace) {
            batch.bytes.truncate(start);
            records -= 1;
            continue;
        }
        if !plan.protobuf {
            batch.bytes.push(b'\n');
        }
        if batch.bytes.len() > limit && !batch.records.is_empty() {
            // This record goes first in the next request.
            let mut next = fresh(seq + 1);
            next.bytes.extend_from_slice(&batch.bytes[start..]);
            batch.bytes.truncate(start);
            emit(std::mem::replace(&mut batch, next))?;
            seq += 1;
            batch.records.push((0, end - start, records));
        } else {
            batch.records.push((start, end, records));
        }
        if single || batch.bytes.len() >= limit {
            emit(std::mem::replace(&mut batch, fresh(seq + 1)))?;
            seq += 1;
        }
    }
    if !batch.records.is_empty() {
        emit(batch)?;
    }
    Ok(records)
}

/// The features of recordio-protobuf records (`records` of `batch`) as one matrix.
fn protobuf_features(batch: &Batch, records: &[(usize, usize, u64)]) -> Result<Tensor, String> {
    let (values, width) =
        super::recordio::protobuf_rows(records.iter().map(|&(s, e, _)| &batch.bytes[s..e]))
            .map_err(|(at, reason)| {
                if records.len() > 1 {
                    format!("record {at} of the request: {reason}")
                } else {
                    reason
                }
            })?;
    Tensor::from_f32_rows(records.len(), width, values).map_err(|e| e.to_string())
}

/// Decodes, predicts and encodes one request; on failure, record by record.
fn process(predictor: &Predictor, plan: &Plan, batch: &Batch) -> Result<Done, ObjectError> {
    match respond(predictor, plan, batch, &batch.records) {
        Ok(out) => Ok(Done {
            out,
            errors: Vec::new(),
            records: batch.records.len() as u64,
            failed: 0,
        }),
        Err(_) if batch.records.len() > 1 || plan.skip_bad => {
            let mut done = Done {
                out: Vec::new(),
                errors: Vec::new(),
                records: 0,
                failed: 0,
            };
            for record in &batch.records {
                match respond(predictor, plan, batch, std::slice::from_ref(record)) {
                    Ok(out) => {
                        done.out.extend_from_slice(&out);
                        done.records += 1;
                    }
                    Err(reason) if plan.skip_bad => {
                        done.errors.extend_from_slice(
                            format!("{} {}: {reason}\n", plan.unit(), record.2).as_bytes(),
                        );
                        done.failed += 1;
                    }
                    Err(reason) => {
                        return Err(ObjectError::Record {
                            unit: plan.unit(),
                            line: record.2,
                            reason,
                        });
                    }
                }
            }
            Ok(done)
        }
        Err(reason) => Err(ObjectError::Record {
            unit: plan.unit(),
            line: batch.records.first().map_or(1, |r| r.2),
            reason,
        }),
    }
}

/// The output of `records` (a run of `batch`'s records).
fn respond(
    predictor: &Predictor,
    plan: &Plan,
    batch: &Batch,
    records: &[(usize, usize, u64)],
) -> Result<Vec<u8>, String> {
    if plan.protobuf {
        // No filters or joins (they need SplitType Line): predict and encode.
        let outputs = predictor.predict_features(protobuf_features(batch, records)?)?;
        let mut out = predictor.encode(plan.accept, &outputs)?;
        if plan.assemble_line && out.last() != Some(&b'\n') {
            out.push(b'\n');
        }
        return Ok(out);
    }
    let whole = records.len() == batch.records.len();
    let filtered;
    let body: &[u8] = match &plan.input_filter {
        Some(f) => {
            let mut b = Vec::with_capacity(batch.bytes.len());
            for &(s, e, _) in records {
                let record = &batch.bytes[s..e];
                if plan.format == Format::Csv {
                    f.select_csv(record, &mut b)?;
                } else {
                    let v: serde_json::Value = serde_json::from_slice(record)
                        .map_err(|e| format!("not a JSON record: {e}"))?;
                    serde_json::to_writer(&mut b, &f.select(&v)?).map_err(|e| e.to_string())?;
                }
                b.push(b'\n');
            }
            filtered = b;
            &filtered
        }
        None if whole => &batch.bytes,
        None => {
            let (s, _, _) = records[0];
            let (_, e, _) = records[records.len() - 1];
            &batch.bytes[s..e]
        }
    };
    let outputs = predictor.predict(plan.format, body)?;
    if !plan.per_record() {
        let mut out = predictor.encode(plan.accept, &outputs)?;
        if plan.assemble_line && out.last() != Some(&b'\n') {
            out.push(b'\n');
        }
        return Ok(out);
    }
    // A record per line: each output row, joined to its input record, filtered.
    let rows_format = if plan.accept == Format::Csv {
        Format::Csv
    } else {
        Format::JsonLines
    };
    let encoded = predictor.encode(rows_format, &outputs)?;
    let rows: Vec<&[u8]> = encoded
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    if rows.len() != records.len() {
        return Err(format!(
            "the model answered {} rows for {} records",
            rows.len(),
            records.len()
        ));
    }
    let mut out = Vec::with_capacity(encoded.len() * 2);
    for (row, &(s, e, _)) in rows.into_iter().zip(records) {
        let input = &batch.bytes[s..e];
        if rows_format == Format::Csv {
            let mut joined = Vec::with_capacity(input.len() + row.len() + 1);
            if plan.join {
                joined.extend_from_slice(input);
                joined.push(b',');
            }
            joined.extend_from_slice(row);
            match &plan.output_filter {
                Some(f) => f.select_csv(&joined, &mut out)?,
                None => out.extend_from_slice(&joined),
            }
        } else {
            let value: serde_json::Value =
                serde_json::from_slice(row).map_err(|e| e.to_string())?;
            let mut value = if plan.join {
                let input: serde_json::Value =
                    serde_json::from_slice(input).map_err(|e| format!("not a JSON record: {e}"))?;
                join_json(input, value)
            } else {
                value
            };
            if let Some(f) = &plan.output_filter {
                value = f.select(&value)?;
            }
            serde_json::to_writer(&mut out, &value).map_err(|e| e.to_string())?;
        }
        out.push(b'\n');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transform::record::*;
    use pier_runtimes::{Signature, TensorSpec};

    /// Sums each row of two features; refuses a row whose first feature is 13.
    #[derive(Debug)]
    struct Sum(Signature);

    impl Model for Sum {
        fn signature(&self) -> &Signature {
            &self.0
        }
        fn predict(&self, inputs: Vec<Tensor>) -> pier_runtimes::Result<Vec<Tensor>> {
            let x = inputs[0].as_f32().unwrap();
            if x.chunks(2).any(|r| r[0] == 13.0) {
                return Err(pier_runtimes::RuntimeError::Predict("13 is unlucky".into()));
            }
            let y: Vec<f32> = x.chunks(2).map(|r| r[0] + r[1]).collect();
            Ok(vec![Tensor::from_f32_rows(y.len(), 1, y).unwrap()])
        }
        fn backend(&self) -> &'static str {
            "test"
        }
    }

    fn predictor() -> Predictor {
        let sig = Signature {
            inputs: vec![TensorSpec::new("x", DataType::Fp32, vec![-1, 2])],
            outputs: vec![TensorSpec::new("y", DataType::Fp32, vec![-1, 1])],
        };
        Predictor::new(Arc::new(Sum(sig))).unwrap()
    }

    fn plan(f: impl FnOnce(&mut TransformJob)) -> Plan {
        let mut job = TransformJob {
            model_name: "m".into(),
            transform_input: TransformInput {
                data_source: TransformDataSource {
                    s3_data_source: TransformS3DataSource {
                        s3_data_type: "S3Prefix".into(),
                        s3_uri: "/in".into(),
                    },
                },
                split_type: Some("Line".into()),
                ..Default::default()
            },
            transform_output: TransformOutput {
                s3_output_path: "/out".into(),
                assemble_with: Some("Line".into()),
                ..Default::default()
            },
            transform_resources: TransformResources {
                instance_type: "ml.m5.large".into(),
                instance_count: 1,
                ..Default::default()
            },
            ..Default::default()
        };
        f(&mut job);
        crate::transform::check(&job).unwrap()
    }

    fn run(plan: &Plan, input: &[u8]) -> Result<(String, String, ObjectStats), ObjectError> {
        let (mut out, mut errors) = (Vec::new(), Vec::new());
        let stats = transform_object(
            &predictor(),
            plan,
            &mut &input[..],
            &mut out,
            &mut errors,
            &Progress::default(),
            &AtomicBool::new(false),
        )?;
        Ok((
            String::from_utf8(out).unwrap(),
            String::from_utf8(errors).unwrap(),
            stats,
        ))
    }

    fn rows(n: usize) -> (String, String) {
        // Even first features: never the unlucky 13.
        let input: String = (0..n).map(|i| format!("{},1\n", 2 * i)).collect();
        let want: String = (0..n).map(|i| format!("{}\n", 2 * i + 1)).collect();
        (input, want)
    }

    /// Gives at most `step` bytes a read, as a slow stream does.
    struct Trickle<'a> {
        data: &'a [u8],
        step: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.step.min(buf.len()).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    #[test]
    fn lines_are_what_read_until_gives_across_reads_and_past_the_limit() {
        use std::io::BufRead;
        let long = format!("{}\n", "x".repeat(READ_BUF + 5));
        let cases = [
            (
                "a,b\n\nc\r\n  \n0123456789abcdef\nlast",
                vec![1, 2, 3, 7, usize::MAX],
            ),
            ("", vec![1, usize::MAX]),
            ("\n\n", vec![1, usize::MAX]),
            (long.as_str(), vec![4096, READ_BUF - 1, usize::MAX]),
        ];
        for (text, steps) in cases {
            for max in [4, 10, READ_BUF * 3] {
                let mut want = Vec::new();
                let mut reference = std::io::BufReader::new(text.as_bytes());
                loop {
                    let mut line = Vec::new();
                    let n = (&mut reference)
                        .take(max as u64)
                        .read_until(b'\n', &mut line)
                        .unwrap();
                    if n == 0 {
                        break;
                    }
                    want.push(line);
                }
                for &step in &steps {
                    let mut input = Trickle {
                        data: text.as_bytes(),
                        step,
                    };
                    let mut reader = LineReader::new(&mut input);
                    let mut got = Vec::new();
                    while let Some(line) = reader.next_line(max).unwrap() {
                        got.push(line.to_vec());
                    }
                    assert!(got == want, "{} bytes, max {max}, step {step}", text.len());
                }
            }
        }
    }

    #[test]
    fn many_requests_come_back_in_order() {
        // ~1 MB payloads over ~2.4 MB of records, 4 workers, then one record per request.
        let (input, want) = rows(300_000);
        let p = plan(|j| {
            j.max_payload_in_mb = Some(1);
            j.max_concurrent_transforms = Some(4);
        });
        let (out, errors, stats) = run(&p, input.as_bytes()).unwrap();
        assert_eq!(stats.records, 300_000);
        assert!(out == want && errors.is_empty());
        let p = plan(|j| {
            j.batch_strategy = Some("SingleRecord".into());
            j.max_concurrent_transforms = Some(3);
        });
        let (input, want) = rows(500);
        assert_eq!(run(&p, input.as_bytes()).unwrap().0, want);
    }

    #[test]
    fn blank_lines_crlf_and_no_final_line_end() {
        let p = plan(|_| {});
        let (out, _, stats) = run(&p, b"1,2\r\n\n  \n3,4").unwrap();
        assert_eq!(out, "3\n7\n");
        assert_eq!(stats.records, 2);
        assert_eq!(run(&p, b"\n\n").unwrap_err(), ObjectError::Empty);
    }

    #[test]
    fn bad_records_are_named_by_line_or_skipped() {
        let p = plan(|_| {});
        let input = b"1,2\n\n3,x\n5,6\n";
        assert_eq!(
            run(&p, input).unwrap_err(),
            ObjectError::Record {
                unit: "line",
                line: 3,
                reason: "column 2: \"x\" is not a number".into()
            }
        );
        let e = run(&p, b"1,2\n13,1\n").unwrap_err();
        assert!(
            matches!(&e, ObjectError::Record { line: 2, reason, .. } if reason.contains("unlucky")),
            "{e:?}"
        );
        let skip = plan(|j| {
            j.environment
                .insert("PIER_SKIP_BAD_RECORDS".into(), "true".into());
        });
        let (out, errors, stats) = run(&skip, b"1,2\n13,1\n3,x\n5,6\n").unwrap();
        assert_eq!(out, "3\n11\n");
        assert_eq!(
            errors,
            "line 2: model failed: 13 is unlucky\nline 3: column 2: \"x\" is not a number\n"
        );
        assert_eq!((stats.records, stats.failed), (2, 2));
    }

    /// A dense recordio-protobuf `Record` of float32 features, as the SageMaker SDK writes one.
    fn protobuf_record(features: &[f32]) -> Vec<u8> {
        let mut values = vec![0x0a, (features.len() * 4) as u8];
        for f in features {
            values.extend_from_slice(&f.to_le_bytes());
        }
        let mut value = vec![0x12, values.len() as u8];
        value.extend(values);
        let mut entry = vec![0x0a, 6];
        entry.extend_from_slice(b"values");
        entry.push(0x12);
        entry.push(value.len() as u8);
        entry.extend(value);
        let mut record = vec![0x0a, entry.len() as u8];
        record.extend(entry);
        record
    }

    fn recordio(records: &[Vec<u8>]) -> Vec<u8> {
        let mut out = Vec::new();
        for r in records {
            crate::channels::recordio::write_frame(&mut out, r);
        }
        out
    }

    #[test]
    fn recordio_protobuf_records_are_predicted_in_order_and_named_by_record() {
        let protobuf = |f: &dyn Fn(&mut TransformJob)| {
            plan(|j| {
                j.transform_input.content_type = Some("application/x-recordio-protobuf".into());
                j.transform_input.split_type = Some("RecordIO".into());
                j.transform_output.accept = Some("text/csv".into());
                f(j);
            })
        };
        // 50,000 records over 1 MB payloads and 3 workers, then one record per request.
        let records: Vec<Vec<u8>> = (0..50_000)
            .map(|i| protobuf_record(&[2.0 * i as f32, 0.5]))
            .collect();
        let want: String = (0..50_000)
            .map(|i| format!("{}\n", 2.0 * i as f32 + 0.5))
            .collect();
        let p = protobuf(&|j| {
            j.max_payload_in_mb = Some(1);
            j.max_concurrent_transforms = Some(3);
        });
        let (out, errors, stats) = run(&p, &recordio(&records)).unwrap();
        assert_eq!(stats.records, 50_000);
        assert!(out == want && errors.is_empty(), "{}", &out[..80]);
        let single = protobuf(&|j| j.batch_strategy = Some("SingleRecord".into()));
        assert_eq!(
            run(&single, &recordio(&records[..100])).unwrap().0,
            want.lines()
                .take(100)
                .map(|l| format!("{l}\n"))
                .collect::<String>()
        );
        // SplitType None: the object is still RecordIO frames.
        let none = protobuf(&|j| j.transform_input.split_type = Some("None".into()));
        assert_eq!(none.split, Split::RecordIo);
        assert_eq!(
            run(&none, &recordio(&records[..2])).unwrap().0,
            "0.5\n2.5\n"
        );
        // The model's refusal, a wrong feature count and a broken frame name the record.
        let bad = recordio(&[protobuf_record(&[1.0, 2.0]), protobuf_record(&[13.0, 1.0])]);
        let e = run(&single, &bad).unwrap_err();
        assert!(
            matches!(&e, ObjectError::Record { unit: "record", line: 2, reason } if reason.contains("unlucky")),
            "{e:?}"
        );
        assert!(e.to_string().starts_with("record 2: "), "{e}");
        let wide = recordio(&[
            protobuf_record(&[1.0, 2.0]),
            protobuf_record(&[1.0, 2.0, 3.0]),
        ]);
        let e = run(&p, &wide).unwrap_err();
        assert!(
            matches!(&e, ObjectError::Record { line: 2, reason, .. } if reason.contains("3 features")),
            "{e:?}"
        );
        let mut cut = recordio(&records[..3]);
        cut.truncate(cut.len() - 5);
        let e = run(&p, &cut).unwrap_err();
        assert!(
            matches!(&e, ObjectError::Record { line: 3, reason, .. } if reason.contains("ends inside")),
            "{e:?}"
        );
        let skip = protobuf(&|j| {
            j.environment
                .insert("PIER_SKIP_BAD_RECORDS".into(), "true".into());
        });
        let (out, errors, _) = run(&skip, &bad).unwrap();
        assert_eq!(
            (out.as_str(), errors.as_str()),
            ("3\n", "record 2: model failed: 13 is unlucky\n")
        );
        // CSV records in RecordIO frames.
        let csv = plan(|j| j.transform_input.split_type = Some("RecordIO".into()));
        let framed = recordio(&[b"1,2".to_vec(), b"3,4\n".to_vec()]);
        assert_eq!(run(&csv, &framed).unwrap().0, "3\n7\n");
    }

    #[test]
    fn recordio_protobuf_is_checked_at_create() {
        let err = |f: &dyn Fn(&mut TransformJob)| {
            let mut job = TransformJob {
                model_name: "m".into(),
                ..Default::default()
            };
            job.transform_input.data_source.s3_data_source = TransformS3DataSource {
                s3_data_type: "S3Prefix".into(),
                s3_uri: "/in".into(),
            };
            job.transform_output.s3_output_path = "/out".into();
            job.transform_resources.instance_count = 1;
            job.transform_input.content_type = Some("application/x-recordio-protobuf".into());
            f(&mut job);
            crate::transform::check(&job).map(|p| p.accept)
        };
        assert_eq!(err(&|_| {}).unwrap(), Format::Json, "JSON by default");
        let line = err(&|j| j.transform_input.split_type = Some("Line".into()));
        assert!(
            line.unwrap_err()
                .to_string()
                .contains("split by RecordIO, not Line")
        );
        let accept =
            err(&|j| j.transform_output.accept = Some("application/x-recordio-protobuf".into()));
        assert!(
            accept
                .unwrap_err()
                .to_string()
                .contains("TransformOutput.Accept")
        );
        let tf = err(&|j| j.transform_input.split_type = Some("TFRecord".into()));
        assert!(tf.unwrap_err().to_string().contains("TFRecord"));
    }

    #[test]
    fn records_and_objects_larger_than_the_payload_fail() {
        let p = plan(|j| j.max_payload_in_mb = Some(1));
        let long = format!("1,2\n{}1\n", "0".repeat(2 << 20));
        assert_eq!(
            run(&p, long.as_bytes()).unwrap_err(),
            ObjectError::TooLarge {
                line: 2,
                limit: 1 << 20,
                whole: false
            }
        );
        let whole = plan(|j| {
            j.max_payload_in_mb = Some(1);
            j.transform_input.split_type = Some("None".into());
        });
        let (input, _) = rows(200_000);
        assert!(matches!(
            run(&whole, input.as_bytes()).unwrap_err(),
            ObjectError::TooLarge { whole: true, .. }
        ));
        let (input, want) = rows(10);
        assert_eq!(run(&whole, input.as_bytes()).unwrap().0, want);
    }

    #[test]
    fn filters_and_joins_per_record() {
        let p = plan(|j| {
            j.transform_output.accept = Some("text/csv".into());
            j.data_processing = Some(DataProcessing {
                input_filter: Some("$[1:]".into()),
                output_filter: Some("$[0,-1]".into()),
                join_source: Some("Input".into()),
            });
        });
        let (out, _, _) = run(&p, b"a,1,2\nb,3,4\n").unwrap();
        assert_eq!(out, "a,3\nb,7\n");
        let j = plan(|j| {
            j.transform_input.content_type = Some("application/jsonlines".into());
            j.transform_output.accept = Some("application/jsonlines".into());
            j.data_processing = Some(DataProcessing {
                input_filter: Some("$.x".into()),
                join_source: Some("Input".into()),
                ..Default::default()
            });
        });
        let (out, _, _) = run(&j, b"{\"id\":\"a\",\"x\":[1,2]}\n").unwrap();
        let got: serde_json::Value = serde_json::from_str(out.trim_end()).unwrap();
        assert_eq!(
            got,
            serde_json::json!({"id": "a", "x": [1, 2], "SageMakerOutput": [3]})
        );
    }

    #[test]
    fn cancel_stops_between_requests() {
        let (input, _) = rows(1000);
        let p = plan(|j| j.batch_strategy = Some("SingleRecord".into()));
        let (mut out, mut errors) = (Vec::new(), Vec::new());
        let r = transform_object(
            &predictor(),
            &p,
            &mut input.as_bytes(),
            &mut out,
            &mut errors,
            &Progress::default(),
            &AtomicBool::new(true),
        );
        assert_eq!(r.unwrap_err(), ObjectError::Cancelled);
    }
}
