//! Reading a job's channels into a [`Dataset`]: a minimal local reader (a `text/csv` file, or
//! a folder of them read in name order as one data set; `file://` URLs or plain paths; Gzip;
//! `header=present`). It is the seam the full channel reader (`s3://` through
//! `object_store`, manifests, RecordIO-protobuf) replaces: [`read_channel`] keeps its
//! signature.
//!
//! Errors name the channel, the object (file) and the line.
//!
//! Blocking; the runner calls it on a blocking thread.

use std::io::Read;
use std::path::{Path, PathBuf};

use pier_algorithms::builtin::Dataset;

use super::record::Channel;
use crate::error::{JobsError, Result};

/// How a channel's records are read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadOptions {
    /// Whether the first column is the label (supervised algorithms).
    pub has_label: bool,
}

fn channel_err(channel: &str, reason: impl Into<String>) -> JobsError {
    JobsError::Channel {
        channel: channel.to_owned(),
        reason: reason.into(),
    }
}

/// Reads one channel as one data set.
pub fn read_channel(channel: &Channel, options: &ReadOptions) -> Result<Dataset> {
    let name = channel.channel_name.as_str();
    let Some(s3) = &channel.data_source.s3_data_source else {
        return Err(channel_err(name, "no S3DataSource"));
    };
    let uri = s3.s3_uri.as_str();
    if uri.starts_with("s3://") {
        return Err(channel_err(
            name,
            format!("{uri}: this build of Pier reads channels from local paths only"),
        ));
    }
    if s3.s3_data_type != "S3Prefix" {
        return Err(channel_err(
            name,
            format!(
                "S3DataType {} is not read from local paths yet",
                s3.s3_data_type
            ),
        ));
    }
    let content_type = channel.content_type.as_deref().unwrap_or("text/csv");
    let mut params = content_type.split(';');
    let base = params.next().unwrap_or("").trim();
    if base != "text/csv" {
        return Err(channel_err(
            name,
            format!("ContentType {content_type} is not read from local paths yet"),
        ));
    }
    let mut header = false;
    for param in params {
        match param.split_once('=').map(|(k, v)| (k.trim(), v.trim())) {
            Some(("header", "present")) => header = true,
            Some(("header", "absent")) => {}
            Some(("label_size", "1")) if options.has_label => {}
            Some(("label_size", "0")) if !options.has_label => {}
            Some(("label_size", v)) => {
                return Err(channel_err(
                    name,
                    format!(
                        "ContentType label_size={v}: this algorithm reads {} label column",
                        if options.has_label { "one" } else { "no" }
                    ),
                ));
            }
            _ => {
                return Err(channel_err(
                    name,
                    format!("ContentType parameter {param:?} is not understood"),
                ));
            }
        }
    }
    let gzip = channel.compression_type.as_deref() == Some("Gzip");
    let path = PathBuf::from(uri.strip_prefix("file://").unwrap_or(uri));
    let objects = list_objects(name, &path)?;
    if objects.is_empty() {
        return Err(channel_err(
            name,
            format!("no objects under {}", path.display()),
        ));
    }
    let mut features = Vec::new();
    let mut labels = options.has_label.then(Vec::new);
    let mut width = None;
    for object in &objects {
        let set = read_object(name, object, gzip, header, options.has_label)?;
        if set.n_rows() == 0 {
            continue;
        }
        if *width.get_or_insert(set.n_cols()) != set.n_cols() {
            return Err(channel_err(
                name,
                format!(
                    "object {}: CSV line {}: {} features where earlier objects have {}",
                    object.display(),
                    1 + usize::from(header),
                    set.n_cols(),
                    width.unwrap_or(0)
                ),
            ));
        }
        features.extend_from_slice(set.features());
        if let (Some(all), Some(l)) = (labels.as_mut(), set.labels()) {
            all.extend_from_slice(l);
        }
    }
    let Some(width) = width else {
        return Err(channel_err(
            name,
            format!("{} holds no records", path.display()),
        ));
    };
    Dataset::new(features, width, labels).map_err(|e| channel_err(name, e.to_string()))
}

/// A file, or every regular file under a folder (recursively) in path order, hidden files
/// skipped.
fn list_objects(channel: &str, path: &Path) -> Result<Vec<PathBuf>> {
    let meta = std::fs::metadata(path)
        .map_err(|e| channel_err(channel, format!("cannot read {}: {e}", path.display())))?;
    if meta.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut out = Vec::new();
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = std::fs::read_dir(&dir)
            .map_err(|e| channel_err(channel, format!("cannot list {}: {e}", dir.display())))?;
        for entry in entries {
            let entry = entry
                .map_err(|e| channel_err(channel, format!("cannot list {}: {e}", dir.display())))?;
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.is_file() {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

fn read_object(
    channel: &str,
    object: &Path,
    gzip: bool,
    header: bool,
    has_label: bool,
) -> Result<Dataset> {
    let what = format!("object {}", object.display());
    let raw = std::fs::read(object).map_err(|e| channel_err(channel, format!("{what}: {e}")))?;
    let bytes = if gzip {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|e| channel_err(channel, format!("{what}: not valid gzip: {e}")))?;
        out
    } else {
        raw
    };
    let (body, skipped) = if header {
        match bytes.iter().position(|&b| b == b'\n') {
            Some(i) => (&bytes[i + 1..], 1),
            None => (&[][..], 1),
        }
    } else {
        (&bytes[..], 0)
    };
    Dataset::from_csv(body, has_label).map_err(|e| {
        let message = match e {
            pier_algorithms::builtin::TrainError::Csv {
                line,
                column,
                reason,
            } => format!("CSV line {}, column {column}: {reason}", line + skipped),
            other => other.to_string(),
        };
        channel_err(channel, format!("{what}: {message}"))
    })
}

/// Reads one local `text/csv` file as `pier train` does; errors name the channel and file.
pub fn read_csv_file(channel: &'static str, path: &Path, has_label: bool) -> Result<Dataset> {
    read_object(channel, path, false, false, has_label)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::training::record::{DataSource, S3DataSource};

    fn channel(uri: &str, content_type: &str) -> Channel {
        Channel {
            channel_name: "train".into(),
            data_source: DataSource {
                s3_data_source: Some(S3DataSource {
                    s3_data_type: "S3Prefix".into(),
                    s3_uri: uri.into(),
                    ..Default::default()
                }),
                file_system_data_source: None,
            },
            content_type: Some(content_type.into()),
            ..Default::default()
        }
    }

    #[test]
    fn folders_read_in_name_order_with_headers_and_errors_name_object_and_line() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("b.csv"), "y,x1,x2\n0,3,4\n").unwrap();
        std::fs::write(dir.path().join("a.csv"), "y,x1,x2\n1,1,2\n").unwrap();
        let opts = ReadOptions { has_label: true };
        let uri = format!("file://{}", dir.path().display());
        let set = read_channel(&channel(&uri, "text/csv;header=present"), &opts).unwrap();
        assert_eq!(set.features(), &[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(set.labels().unwrap(), &[1.0, 0.0]);
        std::fs::write(dir.path().join("c.csv"), "y,x1,x2\n1,1,2\n1,1\n").unwrap();
        let err = read_channel(&channel(&uri, "text/csv;header=present"), &opts)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("channel train: object "), "{err}");
        assert!(err.contains("c.csv: CSV line 3"), "{err}");
        let empty = tempfile::tempdir().unwrap();
        let err = read_channel(
            &channel(&empty.path().display().to_string(), "text/csv"),
            &opts,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("no objects under"), "{err}");
    }
}
