//! Content-type codecs: request bodies (`text/csv`, `application/json`,
//! `application/jsonlines`) to an `FP32` feature matrix, model outputs back to bytes, and
//! `Accept` negotiation.
//!
//! Decoders turn every malformed body into a [`CodecError`] naming the line, column or JSON
//! path at fault. They are pure functions of their input: safe anywhere, no shared state.

mod accept;
mod decode;
mod encode;

pub use accept::negotiate;
pub use decode::decode_features;
pub use encode::encode_outputs;

use std::fmt;

/// A body format Pier reads and writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    /// `text/csv`: one record per line, no header.
    Csv,
    /// `application/json`.
    Json,
    /// `application/jsonlines`: one JSON document per line.
    JsonLines,
}

impl Format {
    /// Every format, in order of preference when a client accepts anything.
    pub const ALL: [Format; 3] = [Format::Json, Format::Csv, Format::JsonLines];

    /// The canonical media type.
    pub fn mime(self) -> &'static str {
        match self {
            Self::Csv => "text/csv",
            Self::Json => "application/json",
            Self::JsonLines => "application/jsonlines",
        }
    }

    /// The format of a `Content-Type` value (parameters such as `charset` are ignored).
    pub fn from_content_type(content_type: &str) -> Result<Self, CodecError> {
        Self::from_media_type(media_type(content_type))
            .ok_or_else(|| CodecError::UnsupportedContentType(content_type.trim().to_owned()))
    }

    /// Compared without case and without a lowercased copy (every invocation reads one).
    fn from_media_type(mt: &str) -> Option<Self> {
        const NAMES: [(&str, Format); 8] = [
            ("text/csv", Format::Csv),
            ("application/json", Format::Json),
            ("text/x-csv", Format::Csv),
            ("application/csv", Format::Csv),
            ("application/jsonlines", Format::JsonLines),
            ("application/jsonl", Format::JsonLines),
            ("application/x-jsonlines", Format::JsonLines),
            ("application/x-ndjson", Format::JsonLines),
        ];
        NAMES
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(mt))
            .map(|&(_, format)| format)
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.mime())
    }
}

/// The media type of a header value, without parameters.
fn media_type(value: &str) -> &str {
    let end = value.bytes().position(|b| b == b';').unwrap_or(value.len());
    value[..end].trim_ascii()
}

/// A body that cannot be decoded or a response that cannot be encoded as asked.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum CodecError {
    /// A `Content-Type` Pier does not read.
    #[error(
        "unsupported content type {0:?}; send text/csv, application/json or application/jsonlines"
    )]
    UnsupportedContentType(String),
    /// An `Accept` header naming nothing Pier writes.
    #[error(
        "cannot produce any type in Accept {0:?}; Pier writes application/json, text/csv and application/jsonlines"
    )]
    UnsupportedAccept(String),
    /// No records at all.
    #[error("the request body has no records")]
    Empty,
    /// A body that is not UTF-8 text.
    #[error("the request body is not valid UTF-8 text (byte {0})")]
    NotUtf8(usize),
    /// A CSV field that is not a number.
    #[error("CSV line {line}, column {column}: {message}")]
    Csv {
        /// 1-based line.
        line: usize,
        /// 1-based column (field number).
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// JSON that does not parse or does not have a supported shape.
    #[error("invalid JSON body: {0}")]
    Json(String),
    /// A JSON Lines line that does not parse or has an unsupported shape.
    #[error("JSON Lines line {line}: {message}")]
    JsonLines {
        /// 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// Records of different lengths.
    #[error("record {record} has {actual} features but record 1 has {expected}")]
    Ragged {
        /// 1-based record number.
        record: usize,
        /// Features in the first record.
        expected: usize,
        /// Features in this record.
        actual: usize,
    },
    /// Records whose length is not what the model takes.
    #[error("record {record} has {actual} features but the model takes {expected}")]
    FeatureCount {
        /// 1-based record number.
        record: usize,
        /// Features the model takes.
        expected: usize,
        /// Features in this record.
        actual: usize,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_are_read_without_case_or_parameters() {
        let cases = [
            ("text/csv", Some(Format::Csv)),
            ("Text/CSV; charset=utf-8", Some(Format::Csv)),
            (" application/x-csv", None),
            ("APPLICATION/JSON", Some(Format::Json)),
            ("application/json;charset=UTF-8", Some(Format::Json)),
            ("application/x-NDJSON", Some(Format::JsonLines)),
            ("application/jsonl", Some(Format::JsonLines)),
            ("application/jsonx", None),
            ("text/csv2", None),
            ("", None),
        ];
        for (value, want) in cases {
            assert_eq!(Format::from_content_type(value).ok(), want, "{value:?}");
        }
        assert_eq!(
            Format::from_content_type(" image/png ").unwrap_err(),
            CodecError::UnsupportedContentType("image/png".into())
        );
    }
}
