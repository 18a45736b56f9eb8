//! Training channels: SageMaker `InputDataConfig` entries read into a
//! [`pier_algorithms::builtin::Dataset`].
//!
//! # API
//!
//! - [`ChannelSpec`] is an `InputDataConfig` entry as CreateTrainingJob's JSON has it;
//!   [`ChannelSpec::validate`] (or [`validate_input_data_config`] for the whole list) checks it
//!   into a [`Channel`], or a [`ChannelSpecError`] whose `Display` is a `ValidationException`
//!   message naming the field (`InputDataConfig.0.CompressionType …`).
//! - [`read_channel`]`(&channel, &ReadOptions)` lists the channel's objects, streams them and
//!   parses them into one `Dataset`; a [`ChannelError`]'s `Display` names the channel, the
//!   object and the line or record, fit for a job's `FailureReason` as it is.
//! - [`ReadOptions`] carries what the algorithm reads (its content types, whether it is
//!   supervised), how to reach S3 ([`S3Config::from_env`]), which local paths may be read
//!   (the model store's [`ImportPolicy`], the same roots as CreateModel's local imports), a
//!   byte limit and a cancel flag (checked between chunks, so StopTrainingJob stops a
//!   download).
//!
//! # What is read
//!
//! Locations (`S3Uri`): `s3://bucket/prefix` (every object whose key starts with the prefix,
//! in key order, empty objects and folder markers left out), `file:///abs/path` or a plain path
//! (a file, or every file under a folder in path order). `ManifestFile`: SageMaker's manifest
//! (`[{"prefix": "s3://bucket/p/"}, "key1", …]`), objects in its order. `CompressionType
//! Gzip`: every object is gzip (concatenated members allowed). Content: `text/csv` (label first
//! unless `label_size=0`; `header=present` skips each object's first line) and
//! `application/x-recordio-protobuf` (see [`recordio`]). `InputMode` `Pipe` and `FastFile`
//! are read as `File`: the whole channel is read before training starts.
//!
//! Without a `ContentType`, a channel is read as the algorithm's first content type; without
//! `label_size`, CSV has a label column exactly when [`ReadOptions::has_label`].

mod content;
mod download;
mod error;
pub(crate) mod location;
pub(crate) mod read;
pub mod recordio;
mod spec;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use pier_algorithms::builtin::Dataset;
use pier_model_store::ImportPolicy;

pub use content::{ContentKind, ContentType};
pub use download::{Downloaded, download_channel};
pub use error::{ChannelError, ChannelSpecError};
pub use location::{Location, S3Config};
pub use read::{MAX_MANIFEST_BYTES, PREFETCH_CHUNKS, RANGE_BYTES, RANGE_CONCURRENCY};
pub use spec::{
    Channel, ChannelSpec, Compression, DataSourceSpec, DataType, S3DataSourceSpec,
    validate_input_data_config,
};

/// What the algorithm expects of a channel, and how to reach it.
#[derive(Clone, Debug)]
pub struct ReadOptions {
    /// Whether records carry a label (supervised algorithms): CSV's first column unless the
    /// channel's `label_size` says otherwise; RecordIO's `label` tensor, required.
    pub has_label: bool,
    /// The content types the algorithm reads; the first is the default. Empty: both.
    pub accepts: Vec<ContentKind>,
    /// How to reach S3.
    pub s3: S3Config,
    /// Most bytes (after decompression) read from the channel; `None`: no limit.
    pub max_bytes: Option<u64>,
    /// Set to stop reading (checked between chunks): the read ends with
    /// [`ChannelError::Cancelled`].
    pub cancel: Option<Arc<AtomicBool>>,
    /// Which local paths (`file://` URIs, plain paths, a local manifest's objects) may be
    /// read: the server's import roots, as for CreateModel's `ModelDataUrl`. Every local file
    /// is resolved (links included) and checked before it is opened.
    pub local: ImportPolicy,
}

impl ReadOptions {
    /// Options for an algorithm reading `accepts`, S3 from the environment, no limit.
    pub fn new(has_label: bool, accepts: &[ContentKind]) -> Self {
        Self {
            has_label,
            accepts: accepts.to_vec(),
            s3: S3Config::from_env(),
            max_bytes: None,
            cancel: None,
            local: ImportPolicy::anywhere(),
        }
    }

    /// The content type `channel` is read as, or the error saying the algorithm does not
    /// read it. Call at CreateTrainingJob to refuse early.
    pub fn content_type(&self, channel: &Channel) -> Result<ContentType, ChannelError> {
        let default = match self.accepts.first() {
            Some(ContentKind::RecordIo) => ContentType::RecordIo,
            Some(ContentKind::Csv) | None => ContentType::Csv {
                label_size: None,
                header: false,
            },
        };
        let content = channel.content_type.unwrap_or(default);
        if !self.accepts.is_empty() && !self.accepts.contains(&content.kind()) {
            return Err(ChannelError::UnsupportedContentType {
                channel: channel.name.clone(),
                content_type: content.kind().mime().to_owned(),
                accepted: self
                    .accepts
                    .iter()
                    .map(|k| k.mime())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        Ok(content)
    }
}

/// An `object_store` error with its sources (for messages).
pub(crate) fn location_error_text(e: &object_store::Error) -> String {
    location::error_chain(e)
}

/// Reads every object of `channel` into one data set; see the module docs.
pub async fn read_channel(channel: &Channel, opts: &ReadOptions) -> Result<Dataset, ChannelError> {
    let content = opts.content_type(channel)?;
    let has_label = match content {
        ContentType::Csv {
            label_size: Some(n),
            ..
        } => n == 1,
        _ => opts.has_label,
    };
    read::read(channel, content, has_label, opts).await
}
