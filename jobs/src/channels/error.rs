//! The errors of reading a channel: each names the channel and, where one is at fault, the
//! object (its `s3://` URI or local path) and the 1-based line (CSV) or record (RecordIO), so a
//! job's `FailureReason` can be the error's `Display` as it is.

use thiserror::Error;

/// A field of an `InputDataConfig` entry that is missing, malformed or not supported. Its
/// `Display` is a SageMaker `ValidationException` message naming the field.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("{message}")]
pub struct ChannelSpecError {
    /// The field at fault, as SageMaker spells it (`InputDataConfig.0.ContentType`).
    pub field: String,
    /// The whole message, naming the field.
    pub message: String,
}

impl ChannelSpecError {
    pub(crate) fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Why a channel could not be read.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum ChannelError {
    /// The channel's spec is refused.
    #[error(transparent)]
    Spec(#[from] ChannelSpecError),
    /// The channel's content type is not one the algorithm reads.
    #[error(
        "channel '{channel}': content type '{content_type}' is not supported by this algorithm; it reads {accepted}"
    )]
    UnsupportedContentType {
        /// The channel's name.
        channel: String,
        /// The channel's `ContentType` as given.
        content_type: String,
        /// The content types the algorithm reads, comma-separated.
        accepted: String,
    },
    /// An `s3://` URI's bucket does not exist.
    #[error("channel '{channel}': the bucket '{bucket}' does not exist ({uri})")]
    NoSuchBucket {
        /// The channel's name.
        channel: String,
        /// The bucket.
        bucket: String,
        /// The URI that names it.
        uri: String,
    },
    /// A prefix (or local folder) holds no objects.
    #[error("channel '{channel}': no objects under {location}")]
    NoObjects {
        /// The channel's name.
        channel: String,
        /// The `S3Uri` as given.
        location: String,
    },
    /// An object, file or manifest that does not exist.
    #[error("channel '{channel}': {location} does not exist")]
    NotFound {
        /// The channel's name.
        channel: String,
        /// The object's URI or path.
        location: String,
    },
    /// A local path the read policy does not allow (outside the import roots, a system
    /// folder, local paths off).
    #[error("channel '{channel}': {location} may not be read: {reason}")]
    Refused {
        /// The channel's name.
        channel: String,
        /// The path as named.
        location: String,
        /// Why.
        reason: String,
    },
    /// The store or the file system refused or failed a request.
    #[error("channel '{channel}': cannot read {location}: {reason}")]
    Access {
        /// The channel's name.
        channel: String,
        /// The object's URI or path.
        location: String,
        /// The store's or the OS's error.
        reason: String,
    },
    /// A manifest file that is not SageMaker's manifest JSON.
    #[error("channel '{channel}': bad manifest {location}: {reason}")]
    Manifest {
        /// The channel's name.
        channel: String,
        /// The manifest's URI or path.
        location: String,
        /// What is wrong.
        reason: String,
    },
    /// An object whose content does not parse: a CSV line or a RecordIO record at fault.
    #[error("channel '{channel}', {object}, {position}: {reason}")]
    Data {
        /// The channel's name.
        channel: String,
        /// The object's URI or path.
        object: String,
        /// `line N, column M` (CSV), `record N` (RecordIO) or `byte N` (gzip).
        position: String,
        /// What is wrong.
        reason: String,
    },
    /// Objects were read but held no record.
    #[error("channel '{channel}': no records in {location}")]
    Empty {
        /// The channel's name.
        channel: String,
        /// The `S3Uri` as given.
        location: String,
    },
    /// The records read do not make a data set (e.g. no feature column).
    #[error("channel '{channel}': {reason}")]
    Invalid {
        /// The channel's name.
        channel: String,
        /// What is wrong.
        reason: String,
    },
    /// The channel holds more bytes than [`crate::channels::ReadOptions::max_bytes`].
    #[error("channel '{channel}': more than {limit} bytes (after decompression)")]
    TooLarge {
        /// The channel's name.
        channel: String,
        /// The limit in bytes.
        limit: u64,
    },
    /// The reader's cancel flag was set (the job is stopping).
    #[error("channel '{channel}': reading was cancelled")]
    Cancelled {
        /// The channel's name.
        channel: String,
    },
}
