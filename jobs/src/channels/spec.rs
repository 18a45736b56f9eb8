//! `InputDataConfig` entries as SageMaker's CreateTrainingJob sends them ([`ChannelSpec`],
//! deserialized from the request's JSON) and, once checked, as the reader takes them
//! ([`Channel`]). Checking names the field at fault in a SageMaker `ValidationException`
//! message; nothing behind this module sees an unchecked spec.
//!
//! Accepted: `S3DataSource` with `S3DataType` `S3Prefix` or `ManifestFile`;
//! `S3DataDistributionType` `FullyReplicated` or `ShardedByS3Key` (one instance reads every
//! shard); `CompressionType` `None` or `Gzip`; `RecordWrapperType` `None` (or `RecordIO` with
//! RecordIO-protobuf content, which is RecordIO already); `InputMode` `File`, and `Pipe` and
//! `FastFile` read as `File`. `FileSystemDataSource` (EFS, FSx) and `AugmentedManifestFile`
//! are refused.

use serde::{Deserialize, Serialize};

use super::content::ContentType;
use super::error::ChannelSpecError;
use super::location::Location;

/// One entry of `InputDataConfig`, in SageMaker's JSON shape.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ChannelSpec {
    /// `train`, `validation`, `test`, …
    pub channel_name: Option<String>,
    /// Where the data is.
    pub data_source: Option<DataSourceSpec>,
    /// MIME type with parameters, e.g. `text/csv;label_size=0`; absent: the algorithm's default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// `None` (default) or `Gzip`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compression_type: Option<String>,
    /// `None` (default) or `RecordIO`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record_wrapper_type: Option<String>,
    /// `File`, `Pipe` or `FastFile` (all read as `File`); absent: the job's mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_mode: Option<String>,
    /// Shuffling of `ShardedByS3Key` shards across instances: accepted, no effect on one
    /// instance.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shuffle_config: Option<serde_json::Value>,
}

/// `DataSource`: exactly one of its members.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DataSourceSpec {
    /// An S3 (or local) location.
    #[serde(rename = "S3DataSource", skip_serializing_if = "Option::is_none")]
    pub s3_data_source: Option<S3DataSourceSpec>,
    /// EFS or FSx: refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_system_data_source: Option<serde_json::Value>,
}

/// `S3DataSource`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct S3DataSourceSpec {
    /// `S3Prefix` or `ManifestFile`.
    #[serde(rename = "S3DataType")]
    pub s3_data_type: Option<String>,
    /// `s3://bucket/prefix`, `file:///abs/path` or a local path.
    #[serde(rename = "S3Uri")]
    pub s3_uri: Option<String>,
    /// `FullyReplicated` (default) or `ShardedByS3Key`.
    #[serde(
        rename = "S3DataDistributionType",
        skip_serializing_if = "Option::is_none"
    )]
    pub s3_data_distribution_type: Option<String>,
    /// Augmented manifests only: refused with them.
    #[serde(rename = "AttributeNames", skip_serializing_if = "Option::is_none")]
    pub attribute_names: Option<Vec<String>>,
    /// Heterogeneous clusters: accepted, no effect on one instance.
    #[serde(rename = "InstanceGroupNames", skip_serializing_if = "Option::is_none")]
    pub instance_group_names: Option<Vec<String>>,
}

/// How the objects of a channel are listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataType {
    /// Every object whose key starts with the prefix, in key order.
    S3Prefix,
    /// The objects a manifest file names, in its order.
    ManifestFile,
}

/// Whether each object is gzip-compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Plain.
    None,
    /// gzip, one stream (or several concatenated) per object.
    Gzip,
}

/// A checked channel, ready to read.
#[derive(Debug, Clone, PartialEq)]
pub struct Channel {
    /// The channel's name.
    pub name: String,
    /// The `S3Uri` as given (for messages).
    pub uri: String,
    /// Where its data is.
    pub location: Location,
    /// How its objects are listed.
    pub data_type: DataType,
    /// Its content type as given, if any.
    pub content_type: Option<ContentType>,
    /// Per-object compression.
    pub compression: Compression,
}

impl ChannelSpec {
    /// Checks the entry at `index` (0-based) of `InputDataConfig`.
    pub fn validate(&self, index: usize) -> Result<Channel, ChannelSpecError> {
        let at = |field: &str| format!("InputDataConfig.{index}.{field}");
        let name = self.channel_name.as_deref().ok_or_else(|| {
            ChannelSpecError::new(
                at("ChannelName"),
                format!("{} is required", at("ChannelName")),
            )
        })?;
        if name.is_empty()
            || name.len() > 64
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        {
            return Err(ChannelSpecError::new(
                at("ChannelName"),
                format!(
                    "Value '{name}' at '{}' failed to satisfy constraint: Member must have length between 1 and 64 and match the pattern [A-Za-z0-9\\.\\-_]+",
                    at("ChannelName")
                ),
            ));
        }
        let bad = |field: &str, what: String| {
            ChannelSpecError::new(at(field), format!("channel '{name}': {} {what}", at(field)))
        };
        let source = self
            .data_source
            .as_ref()
            .ok_or_else(|| bad("DataSource", "is required".into()))?;
        let s3 = match (&source.s3_data_source, &source.file_system_data_source) {
            (Some(s3), None) => s3,
            (None, Some(_)) => {
                return Err(bad(
                    "DataSource.FileSystemDataSource",
                    "(EFS or FSx) is not supported by Pier; use S3DataSource with an s3:// URI, a file:// URI or a local path".into(),
                ));
            }
            (Some(_), Some(_)) => {
                return Err(bad(
                    "DataSource",
                    "must have exactly one of S3DataSource and FileSystemDataSource".into(),
                ));
            }
            (None, None) => {
                return Err(bad(
                    "DataSource",
                    "must have S3DataSource (an s3:// URI, a file:// URI or a local path)".into(),
                ));
            }
        };
        let uri = s3
            .s3_uri
            .as_deref()
            .ok_or_else(|| bad("DataSource.S3DataSource.S3Uri", "is required".into()))?;
        let location = Location::parse(uri)
            .map_err(|reason| bad("DataSource.S3DataSource.S3Uri", format!("'{uri}' {reason}")))?;
        let data_type = match s3.s3_data_type.as_deref() {
            Some("S3Prefix") => DataType::S3Prefix,
            Some("ManifestFile") => DataType::ManifestFile,
            Some("AugmentedManifestFile") => {
                return Err(bad(
                    "DataSource.S3DataSource.S3DataType",
                    "'AugmentedManifestFile' is not supported; use S3Prefix or ManifestFile".into(),
                ));
            }
            Some(other) => {
                return Err(bad(
                    "DataSource.S3DataSource.S3DataType",
                    format!("'{other}' is not one of S3Prefix, ManifestFile"),
                ));
            }
            None => {
                return Err(bad(
                    "DataSource.S3DataSource.S3DataType",
                    "is required (S3Prefix or ManifestFile)".into(),
                ));
            }
        };
        if s3.attribute_names.is_some() {
            return Err(bad(
                "DataSource.S3DataSource.AttributeNames",
                "is for augmented manifests, which are not supported".into(),
            ));
        }
        match s3.s3_data_distribution_type.as_deref() {
            None | Some("FullyReplicated" | "ShardedByS3Key") => {}
            Some(other) => {
                return Err(bad(
                    "DataSource.S3DataSource.S3DataDistributionType",
                    format!("'{other}' is not one of FullyReplicated, ShardedByS3Key"),
                ));
            }
        }
        let content_type = match self.content_type.as_deref() {
            None => None,
            Some(ct) => Some(
                ContentType::parse(ct)
                    .map_err(|reason| bad("ContentType", format!("'{ct}': {reason}")))?,
            ),
        };
        let compression = match self.compression_type.as_deref() {
            None | Some("None") => Compression::None,
            Some("Gzip") => Compression::Gzip,
            Some(other) => {
                return Err(bad(
                    "CompressionType",
                    format!("'{other}' is not one of None, Gzip"),
                ));
            }
        };
        match self.record_wrapper_type.as_deref() {
            None | Some("None") => {}
            Some("RecordIO") if matches!(content_type, Some(ContentType::RecordIo)) => {}
            Some("RecordIO") => {
                return Err(bad(
                    "RecordWrapperType",
                    "'RecordIO' is supported only with ContentType application/x-recordio-protobuf"
                        .into(),
                ));
            }
            Some(other) => {
                return Err(bad(
                    "RecordWrapperType",
                    format!("'{other}' is not one of None, RecordIO"),
                ));
            }
        }
        match self.input_mode.as_deref() {
            None | Some("File" | "Pipe" | "FastFile") => {}
            Some(other) => {
                return Err(bad(
                    "InputMode",
                    format!("'{other}' is not one of File, Pipe, FastFile"),
                ));
            }
        }
        Ok(Channel {
            name: name.to_owned(),
            uri: uri.to_owned(),
            location,
            data_type,
            content_type,
            compression,
        })
    }
}

/// Checks every entry of `InputDataConfig`: each as [`ChannelSpec::validate`], and no channel
/// name twice.
pub fn validate_input_data_config(specs: &[ChannelSpec]) -> Result<Vec<Channel>, ChannelSpecError> {
    let mut channels: Vec<Channel> = Vec::with_capacity(specs.len());
    for (i, spec) in specs.iter().enumerate() {
        let channel = spec.validate(i)?;
        if channels.iter().any(|c| c.name == channel.name) {
            return Err(ChannelSpecError::new(
                format!("InputDataConfig.{i}.ChannelName"),
                format!(
                    "InputDataConfig.{i}.ChannelName: the channel name '{}' is given twice",
                    channel.name
                ),
            ));
        }
        channels.push(channel);
    }
    Ok(channels)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> ChannelSpec {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn reads_sagemaker_json() {
        let c = spec(
            r#"{"ChannelName":"train","DataSource":{"S3DataSource":{"S3DataType":"S3Prefix",
            "S3Uri":"s3://bucket/data/","S3DataDistributionType":"FullyReplicated"}},
            "ContentType":"text/csv;label_size=0","CompressionType":"Gzip",
            "RecordWrapperType":"None","InputMode":"Pipe"}"#,
        )
        .validate(0)
        .unwrap();
        assert_eq!(c.name, "train");
        assert_eq!(c.compression, Compression::Gzip);
        assert_eq!(c.data_type, DataType::S3Prefix);
        assert_eq!(
            c.content_type,
            Some(ContentType::Csv {
                label_size: Some(0),
                header: false
            })
        );
    }

    #[test]
    fn names_the_field() {
        let cases = [
            (
                r#"{"DataSource":{}}"#,
                "InputDataConfig.0.ChannelName is required",
            ),
            (
                r#"{"ChannelName":"tr ain","DataSource":{}}"#,
                "Value 'tr ain' at 'InputDataConfig.0.ChannelName' failed to satisfy constraint",
            ),
            (
                r#"{"ChannelName":"train","DataSource":{"FileSystemDataSource":{}}}"#,
                "channel 'train': InputDataConfig.0.DataSource.FileSystemDataSource (EFS or FSx) is not supported",
            ),
            (
                r#"{"ChannelName":"train","DataSource":{"S3DataSource":{"S3DataType":"S3Prefix","S3Uri":"http://x/y"}}}"#,
                "channel 'train': InputDataConfig.0.DataSource.S3DataSource.S3Uri 'http://x/y' ",
            ),
            (
                r#"{"ChannelName":"train","DataSource":{"S3DataSource":{"S3DataType":"Foo","S3Uri":"s3://bkt/p"}}}"#,
                "channel 'train': InputDataConfig.0.DataSource.S3DataSource.S3DataType 'Foo' is not one of S3Prefix, ManifestFile",
            ),
            (
                r#"{"ChannelName":"train","DataSource":{"S3DataSource":{"S3DataType":"S3Prefix","S3Uri":"s3://bkt/p"}},"ContentType":"application/json"}"#,
                "channel 'train': InputDataConfig.0.ContentType 'application/json': ",
            ),
            (
                r#"{"ChannelName":"train","DataSource":{"S3DataSource":{"S3DataType":"S3Prefix","S3Uri":"s3://bkt/p"}},"CompressionType":"Zip"}"#,
                "channel 'train': InputDataConfig.0.CompressionType 'Zip' is not one of None, Gzip",
            ),
            (
                r#"{"ChannelName":"train","DataSource":{"S3DataSource":{"S3DataType":"S3Prefix","S3Uri":"s3://bkt/p"}},"InputMode":"Stream"}"#,
                "channel 'train': InputDataConfig.0.InputMode 'Stream' is not one of File, Pipe, FastFile",
            ),
        ];
        for (json, want) in cases {
            let e = spec(json).validate(0).unwrap_err();
            assert!(e.to_string().starts_with(want), "{json}: {e}");
        }
    }

    #[test]
    fn refuses_a_name_twice() {
        let one = spec(
            r#"{"ChannelName":"train","DataSource":{"S3DataSource":{"S3DataType":"S3Prefix","S3Uri":"/data"}}}"#,
        );
        let e = validate_input_data_config(&[one.clone(), one]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "InputDataConfig.1.ChannelName: the channel name 'train' is given twice"
        );
    }
}
