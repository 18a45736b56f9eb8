//! Reading a channel: list its objects, stream each in key (or manifest) order through gzip
//! when asked, and parse as bytes arrive.
//!
//! Concurrency: one tokio task downloads the S3 objects in order (a large object as
//! [`RANGE_CONCURRENCY`] ranged GETs of [`RANGE_BYTES`] in flight, as S3 clients do) into a
//! bounded queue of chunks ([`PREFETCH_CHUNKS`], so a download runs at most that far ahead of
//! parsing and no object is held whole); one blocking thread pulls from it (or reads local files directly),
//! decompresses and parses. If parsing fails, the queue's receiver is dropped and the download
//! stops at its next chunk; if the caller drops the read, the download is aborted and the
//! parsing thread stops at its next chunk (as it does when the cancel flag is set).

use std::io::{self, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use futures::StreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{GetOptions, ObjectStore};
use pier_algorithms::builtin::{CsvReader, Dataset, TrainError};
use pier_model_store::ImportPolicy;
use tokio::sync::mpsc;

use super::ReadOptions;
use super::content::ContentType;
use super::error::ChannelError;
use super::location::{self, Object};
use super::recordio::RecordIoReader;
use super::spec::{Channel, Compression, DataType};

/// Chunks (as the store sends them, typically 8–64 KiB) a download may run ahead of parsing.
pub const PREFETCH_CHUNKS: usize = 256;

/// Objects larger than this are downloaded as ranges of this size.
pub const RANGE_BYTES: u64 = 8 << 20;

/// Ranges of one object in flight at once.
pub const RANGE_CONCURRENCY: usize = 4;

/// A downloaded range is queued in slices of this size.
const SLICE_BYTES: usize = 64 << 10;

/// Largest manifest file read.
pub const MAX_MANIFEST_BYTES: u64 = 16 << 20;

/// Bytes handed to the parser at a time.
const READ_BUF: usize = 1 << 20;

/// The objects of `channel`, in order: every object under an `S3Prefix`, or the objects a
/// `ManifestFile` lists; none at all is an error naming the channel.
pub(super) async fn list_objects(
    channel: &Channel,
    opts: &ReadOptions,
) -> Result<Vec<Object>, ChannelError> {
    let name = channel.name.as_str();
    let objects = match channel.data_type {
        DataType::S3Prefix => {
            location::list_prefix(name, &channel.uri, &channel.location, &opts.s3, &opts.local)
                .await?
        }
        DataType::ManifestFile => {
            let bytes = location::read_small(
                name,
                &channel.uri,
                &channel.location,
                &opts.s3,
                &opts.local,
                MAX_MANIFEST_BYTES,
            )
            .await?;
            location::parse_manifest(name, &channel.uri, &bytes, &opts.s3)?
        }
    };
    if objects.is_empty() {
        return Err(ChannelError::NoObjects {
            channel: name.to_owned(),
            location: channel.uri.clone(),
        });
    }
    Ok(objects)
}

pub(super) async fn read(
    channel: &Channel,
    content: ContentType,
    has_label: bool,
    opts: &ReadOptions,
) -> Result<Dataset, ChannelError> {
    let name = channel.name.as_str();
    let objects = list_objects(channel, opts).await?;
    let downloads: Vec<_> = objects
        .iter()
        .filter_map(|o| match o {
            Object::S3 {
                uri,
                bucket,
                store,
                path,
                listed,
            } => Some(Download {
                store: store.clone(),
                path: path.clone(),
                uri: uri.clone(),
                bucket: bucket.clone(),
                listed: listed.clone(),
            }),
            Object::Local(_) => None,
        })
        .collect();
    let (tx, rx) = mpsc::channel(PREFETCH_CHUNKS);
    // Stops the download and the parse if this future is dropped (the caller went away).
    let guard = Abandon {
        producer: tokio::spawn(download(name.to_owned(), downloads, tx)),
        flag: Arc::new(AtomicBool::new(false)),
    };
    let parse = Parse {
        channel: name.to_owned(),
        uri: channel.uri.clone(),
        gzip: channel.compression == Compression::Gzip,
        parser: match content {
            ContentType::Csv { header, .. } => Parser::Csv(CsvReader::new(has_label, header)),
            ContentType::RecordIo => Parser::RecordIo(RecordIoReader::new(has_label)),
        },
        max_bytes: opts.max_bytes,
        cancel: opts.cancel.clone(),
        abandoned: guard.flag.clone(),
        policy: opts.local.clone(),
    };
    let outcome = tokio::task::spawn_blocking(move || parse.run(objects, rx)).await;
    drop(guard);
    outcome.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}

/// On drop: aborts the download task and tells the parsing thread to stop.
struct Abandon {
    producer: tokio::task::JoinHandle<()>,
    flag: Arc<AtomicBool>,
}

impl Drop for Abandon {
    fn drop(&mut self) {
        self.flag.store(true, Ordering::Relaxed);
        self.producer.abort();
    }
}

/// What the download task sends.
pub(crate) enum Piece {
    Data(Bytes),
    End,
    Failed(ChannelError),
}

/// One S3 object to download.
pub(crate) struct Download {
    pub(crate) store: Arc<dyn ObjectStore>,
    pub(crate) path: ObjectPath,
    pub(crate) uri: String,
    pub(crate) bucket: String,
    /// Size and ETag from the listing.
    pub(crate) listed: Option<(u64, Option<String>)>,
}

/// Downloads `objects` in order into `tx`. An object whose size is known and larger than
/// [`RANGE_BYTES`] is fetched as ranges, [`RANGE_CONCURRENCY`] at a time, in order, each
/// conditional on the listed ETag (an object replaced meanwhile fails instead of mixing two
/// versions); other objects are one streamed GET.
pub(crate) async fn download(channel: String, objects: Vec<Download>, tx: mpsc::Sender<Piece>) {
    for d in objects {
        let failed = |e| Piece::Failed(location::store_error(&channel, &d.bucket, &d.uri, e));
        match &d.listed {
            Some((size, e_tag)) if *size > RANGE_BYTES => {
                let ranges = (0..*size)
                    .step_by(RANGE_BYTES as usize)
                    .map(|start| start..(start + RANGE_BYTES).min(*size));
                let mut parts = futures::stream::iter(ranges)
                    .map(|range| {
                        let (store, path) = (d.store.clone(), d.path.clone());
                        let options = GetOptions {
                            range: Some(range.into()),
                            if_match: e_tag.clone(),
                            ..Default::default()
                        };
                        async move { store.get_opts(&path, options).await?.bytes().await }
                    })
                    .buffered(RANGE_CONCURRENCY);
                while let Some(part) = parts.next().await {
                    let mut bytes = match part {
                        Ok(bytes) => bytes,
                        Err(e) => {
                            let _ = tx.send(failed(e)).await;
                            return;
                        }
                    };
                    // Slices of one buffer (no copy), so the queue bounds memory in bytes too.
                    while !bytes.is_empty() {
                        let slice = bytes.split_to(SLICE_BYTES.min(bytes.len()));
                        if tx.send(Piece::Data(slice)).await.is_err() {
                            return;
                        }
                    }
                }
            }
            _ => {
                let mut stream = match d.store.get(&d.path).await {
                    Ok(got) => got.into_stream(),
                    Err(e) => {
                        let _ = tx.send(failed(e)).await;
                        return;
                    }
                };
                while let Some(chunk) = stream.next().await {
                    let piece = match chunk {
                        Ok(bytes) => Piece::Data(bytes),
                        Err(e) => failed(e),
                    };
                    let stop = matches!(piece, Piece::Failed(_));
                    if tx.send(piece).await.is_err() || stop {
                        return;
                    }
                }
            }
        }
        if tx.send(Piece::End).await.is_err() {
            return;
        }
    }
}

/// One S3 object's bytes as a blocking [`Read`], from the download queue.
pub(crate) struct Queued<'a> {
    pub(crate) rx: &'a mut mpsc::Receiver<Piece>,
    pub(crate) current: Bytes,
    pub(crate) done: bool,
}

impl Read for Queued<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            if self.done {
                return Ok(0);
            }
            match self.rx.blocking_recv() {
                Some(Piece::Data(b)) => self.current = b,
                Some(Piece::End) => self.done = true,
                Some(Piece::Failed(e)) => return Err(io::Error::other(e)),
                None => return Err(io::Error::other("the download stopped")),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

enum Parser {
    Csv(CsvReader),
    RecordIo(RecordIoReader),
}

impl Parser {
    /// Feeds bytes; an error is (position, reason).
    fn feed(&mut self, data: &[u8]) -> Result<(), (String, String)> {
        match self {
            Parser::Csv(r) => r.feed(data).map_err(csv_position),
            Parser::RecordIo(r) => r
                .feed(data)
                .map_err(|e| (format!("record {}", e.record), e.reason)),
        }
    }

    fn end_object(&mut self) -> Result<(), (String, String)> {
        match self {
            Parser::Csv(r) => r.end_object().map_err(csv_position),
            Parser::RecordIo(r) => r
                .end_object()
                .map_err(|e| (format!("record {}", e.record), e.reason)),
        }
    }

    fn n_rows(&self) -> usize {
        match self {
            Parser::Csv(r) => r.n_rows(),
            Parser::RecordIo(r) => r.n_rows(),
        }
    }

    fn finish(self) -> Result<Dataset, TrainError> {
        match self {
            Parser::Csv(r) => r.finish(),
            Parser::RecordIo(r) => {
                let (features, width, labels) = r.into_parts();
                Dataset::new(features, width, labels)
            }
        }
    }
}

fn csv_position(e: TrainError) -> (String, String) {
    match e {
        TrainError::Csv {
            line,
            column: 0,
            reason,
        } => (format!("line {line}"), reason),
        TrainError::Csv {
            line,
            column,
            reason,
        } => (format!("line {line}, column {column}"), reason),
        other => ("".into(), other.to_string()),
    }
}

struct Parse {
    channel: String,
    uri: String,
    gzip: bool,
    parser: Parser,
    max_bytes: Option<u64>,
    cancel: Option<Arc<AtomicBool>>,
    /// Set when the caller's future was dropped.
    abandoned: Arc<AtomicBool>,
    policy: ImportPolicy,
}

impl Parse {
    fn run(
        mut self,
        objects: Vec<Object>,
        mut rx: mpsc::Receiver<Piece>,
    ) -> Result<Dataset, ChannelError> {
        let mut buf = vec![0u8; READ_BUF];
        let mut total = 0u64;
        for object in &objects {
            let name = object.name();
            let raw: Box<dyn Read + '_> = match object {
                Object::Local(path) => {
                    let resolved = location::check_local(&self.channel, &self.policy, path)?;
                    Box::new(std::fs::File::open(resolved).map_err(|e| self.io_error(&name, e))?)
                }
                Object::S3 { .. } => Box::new(Queued {
                    rx: &mut rx,
                    current: Bytes::new(),
                    done: false,
                }),
            };
            let mut reader: Box<dyn Read + '_> = if self.gzip {
                Box::new(flate2::read::MultiGzDecoder::new(raw))
            } else {
                raw
            };
            loop {
                if self
                    .cancel
                    .as_ref()
                    .is_some_and(|c| c.load(Ordering::Relaxed))
                    || self.abandoned.load(Ordering::Relaxed)
                {
                    return Err(ChannelError::Cancelled {
                        channel: self.channel.clone(),
                    });
                }
                let n = match reader.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(self.io_error(&name, e)),
                };
                total += n as u64;
                if let Some(limit) = self.max_bytes
                    && total > limit
                {
                    return Err(ChannelError::TooLarge {
                        channel: self.channel.clone(),
                        limit,
                    });
                }
                self.parser
                    .feed(&buf[..n])
                    .map_err(|(position, reason)| self.data_error(&name, position, reason))?;
            }
            self.parser
                .end_object()
                .map_err(|(position, reason)| self.data_error(&name, position, reason))?;
        }
        if self.parser.n_rows() == 0 {
            return Err(ChannelError::Empty {
                channel: self.channel,
                location: self.uri,
            });
        }
        self.parser.finish().map_err(|e| ChannelError::Invalid {
            channel: self.channel,
            reason: e.to_string(),
        })
    }

    fn data_error(&self, object: &str, position: String, reason: String) -> ChannelError {
        ChannelError::Data {
            channel: self.channel.clone(),
            object: object.to_owned(),
            position,
            reason,
        }
    }

    fn io_error(&self, object: &str, e: io::Error) -> ChannelError {
        if e.get_ref().is_some_and(|inner| inner.is::<ChannelError>()) {
            return *e
                .into_inner()
                .expect("checked above")
                .downcast::<ChannelError>()
                .expect("checked above");
        }
        match e.kind() {
            io::ErrorKind::NotFound => ChannelError::NotFound {
                channel: self.channel.clone(),
                location: object.to_owned(),
            },
            io::ErrorKind::InvalidInput
            | io::ErrorKind::InvalidData
            | io::ErrorKind::UnexpectedEof
                if self.gzip =>
            {
                self.data_error(object, "gzip".into(), format!("not valid gzip data: {e}"))
            }
            _ => ChannelError::Access {
                channel: self.channel.clone(),
                location: object.to_owned(),
                reason: e.to_string(),
            },
        }
    }
}
