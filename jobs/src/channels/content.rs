//! A channel's `ContentType`: `text/csv` with SageMaker's `label_size` (0 or 1) and
//! `header=present` parameters, or `application/x-recordio-protobuf`.

use std::fmt;

/// A content type the channel reader parses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentType {
    /// `text/csv`: one record a line, the label first unless `label_size=0`.
    Csv {
        /// `label_size` as given: `Some(0)` no label column, `Some(1)` the first column is the
        /// label, `None` the algorithm's default.
        label_size: Option<u8>,
        /// `header=present`: each object's first line is a header and is skipped.
        header: bool,
    },
    /// `application/x-recordio-protobuf`: SageMaker's RecordIO-wrapped `aialgs.data.Record`s.
    RecordIo,
}

/// The kinds of content, without parameters (what an algorithm declares it reads).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentKind {
    /// `text/csv`.
    Csv,
    /// `application/x-recordio-protobuf`.
    RecordIo,
}

impl ContentKind {
    /// The MIME type.
    pub fn mime(self) -> &'static str {
        match self {
            ContentKind::Csv => "text/csv",
            ContentKind::RecordIo => "application/x-recordio-protobuf",
        }
    }
}

impl fmt::Display for ContentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.mime())
    }
}

impl ContentType {
    /// Parses a `ContentType`; the error says what is wrong (without naming the field).
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut parts = s.split(';');
        let mime = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        match mime.as_str() {
            "text/csv" => {
                let (mut label_size, mut header) = (None, false);
                for param in parts {
                    let param = param.trim();
                    if param.is_empty() {
                        continue;
                    }
                    let (key, value) = param
                        .split_once('=')
                        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim()))
                        .ok_or_else(|| format!("parameter '{param}' has no value"))?;
                    match key.as_str() {
                        "label_size" => {
                            label_size = Some(match value {
                                "0" => 0,
                                "1" => 1,
                                _ => {
                                    return Err(format!(
                                        "label_size={value} is not supported (0 or 1)"
                                    ));
                                }
                            })
                        }
                        "header" => {
                            header = match value.to_ascii_lowercase().as_str() {
                                "present" => true,
                                "absent" => false,
                                _ => {
                                    return Err(format!(
                                        "header={value} is not supported (present or absent)"
                                    ));
                                }
                            }
                        }
                        "charset" if value.eq_ignore_ascii_case("utf-8") => {}
                        _ => return Err(format!("unknown parameter '{param}'")),
                    }
                }
                Ok(ContentType::Csv { label_size, header })
            }
            "application/x-recordio-protobuf" => match parts.map(str::trim).find(|p| !p.is_empty())
            {
                None => Ok(ContentType::RecordIo),
                Some(p) => Err(format!("unknown parameter '{p}'")),
            },
            _ => {
                Err("is not supported; use text/csv or application/x-recordio-protobuf".to_owned())
            }
        }
    }

    /// The kind, without parameters.
    pub fn kind(self) -> ContentKind {
        match self {
            ContentType::Csv { .. } => ContentKind::Csv,
            ContentType::RecordIo => ContentKind::RecordIo,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sagemaker_parameters() {
        assert_eq!(
            ContentType::parse("text/csv; label_size=1; header=present"),
            Ok(ContentType::Csv {
                label_size: Some(1),
                header: true
            })
        );
        assert_eq!(
            ContentType::parse("application/x-recordio-protobuf"),
            Ok(ContentType::RecordIo)
        );
        assert_eq!(
            ContentType::parse("text/csv;label_size=2").unwrap_err(),
            "label_size=2 is not supported (0 or 1)"
        );
        assert_eq!(
            ContentType::parse("text/csv;sep=;").unwrap_err(),
            "unknown parameter 'sep='"
        );
    }
}
