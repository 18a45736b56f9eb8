//! `Accept` header negotiation with q-values and wildcards.

use super::{CodecError, Format, media_type};

/// Chooses the response format for an `Accept` header. No header, an empty one, or `*/*`
/// gives `default`; otherwise the supported type with the highest q-value wins (ties go to
/// the earlier entry).
pub fn negotiate(accept: Option<&str>, default: Format) -> Result<Format, CodecError> {
    let Some(accept) = accept.map(str::trim).filter(|a| !a.is_empty()) else {
        return Ok(default);
    };
    let mut best: Option<(f32, Format)> = None;
    for range in accept.split(',') {
        let mt = media_type(range).to_ascii_lowercase();
        let q = range
            .split(';')
            .skip(1)
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        if q <= 0.0 {
            continue;
        }
        let candidate = match mt.as_str() {
            "*/*" | "" => Some(default),
            "application/*" => Some(if default == Format::Csv {
                Format::Json
            } else {
                default
            }),
            "text/*" => Some(Format::Csv),
            other => Format::from_media_type(other),
        };
        if let Some(format) = candidate
            && best.is_none_or(|(bq, _)| q > bq)
        {
            best = Some((q, format));
        }
    }
    best.map(|(_, f)| f)
        .ok_or_else(|| CodecError::UnsupportedAccept(accept.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_exact_types() {
        assert_eq!(negotiate(None, Format::Json).unwrap(), Format::Json);
        assert_eq!(negotiate(Some(""), Format::Csv).unwrap(), Format::Csv);
        assert_eq!(negotiate(Some("*/*"), Format::Csv).unwrap(), Format::Csv);
        assert_eq!(
            negotiate(Some("text/csv"), Format::Json).unwrap(),
            Format::Csv
        );
        assert_eq!(
            negotiate(Some("application/jsonlines"), Format::Json).unwrap(),
            Format::JsonLines
        );
        assert_eq!(
            negotiate(Some("application/json; charset=utf-8"), Format::Csv).unwrap(),
            Format::Json
        );
    }

    #[test]
    fn q_values_and_unsupported_entries() {
        let a = "application/x-protobuf, text/csv;q=0.5, application/json;q=0.9";
        assert_eq!(negotiate(Some(a), Format::Csv).unwrap(), Format::Json);
        assert_eq!(
            negotiate(Some("application/json;q=0, text/*"), Format::Json).unwrap(),
            Format::Csv
        );
        let err = negotiate(Some("image/png"), Format::Json).unwrap_err();
        assert!(err.to_string().contains("image/png"));
    }
}
