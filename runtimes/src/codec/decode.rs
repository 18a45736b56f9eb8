//! Request bodies to a dense `FP32` feature matrix `[records, features]`.
//!
//! Missing values become NaN, as SageMaker's XGBoost users send them: an empty CSV field or a
//! JSON `null`.

use serde_json::Value;

use super::{CodecError, Format};
use crate::tensor::Tensor;

/// Decodes `body` in `format` into a `[records, features]` `FP32` tensor.
///
/// `expected_features`, when the model's feature count is known, is checked for every
/// record; otherwise all records must agree with the first.
pub fn decode_features(
    format: Format,
    body: &[u8],
    expected_features: Option<usize>,
) -> Result<Tensor, CodecError> {
    let text = std::str::from_utf8(body).map_err(|e| CodecError::NotUtf8(e.valid_up_to()))?;
    let mut rows = Rows::new(expected_features);
    match format {
        Format::Csv => decode_csv(text, &mut rows)?,
        Format::Json => decode_json(text, &mut rows)?,
        Format::JsonLines => decode_json_lines(text, &mut rows)?,
    }
    rows.finish()
}

/// Accumulates records, checking their lengths.
struct Rows {
    values: Vec<f32>,
    width: Option<usize>,
    expected: Option<usize>,
    count: usize,
}

impl Rows {
    fn new(expected: Option<usize>) -> Self {
        Self {
            values: Vec::new(),
            width: expected,
            expected,
            count: 0,
        }
    }

    /// Closes a record whose values were pushed since the last call.
    fn end_record(&mut self, start: usize) -> Result<(), CodecError> {
        let len = self.values.len() - start;
        self.count += 1;
        match (self.width, self.expected) {
            (Some(w), Some(expected)) if w != len => {
                return Err(CodecError::FeatureCount {
                    record: self.count,
                    expected,
                    actual: len,
                });
            }
            (Some(w), None) if w != len => {
                return Err(CodecError::Ragged {
                    record: self.count,
                    expected: w,
                    actual: len,
                });
            }
            (None, _) => self.width = Some(len),
            _ => {}
        }
        Ok(())
    }

    fn finish(self) -> Result<Tensor, CodecError> {
        if self.count == 0 {
            return Err(CodecError::Empty);
        }
        let width = self.width.unwrap_or(0);
        Ok(Tensor::from_f32_rows(self.count, width, self.values).expect("record lengths checked"))
    }
}

/// CSV records into `rows`, in one pass over each line's bytes: a plain decimal field
/// (`[+-]digits[.digits]`, ending at `,` or the line's end) is parsed on the spot by
/// [`plain_decimal`]; any other field (spaces, quotes, exponents, `inf`, long mantissas ...)
/// goes through the general path, which trims, unquotes and uses `str::parse::<f32>`. Both
/// give the same `f32`, bit for bit.
fn decode_csv(text: &str, rows: &mut Rows) -> Result<(), CodecError> {
    let mut reserved = false;
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let start = rows.values.len();
        let bytes = line.as_bytes();
        let (mut at, mut column) = (0usize, 0usize);
        loop {
            column += 1;
            let (value, next) = match plain_decimal(bytes, at) {
                Some(parsed) => parsed,
                None => general_field(line, at, i + 1, column)?,
            };
            rows.values.push(value);
            match next {
                Some(comma) => at = comma + 1,
                None => break,
            }
        }
        rows.end_record(start).map_err(|e| at_line(e, i + 1))?;
        if !reserved {
            // The whole body's worth of values, estimated from the first record, at once.
            reserved = true;
            let records = text.len() / (line.len() + 1) + 1;
            rows.values
                .reserve(records.saturating_mul(rows.values.len() - start));
        }
    }
    Ok(())
}

/// Exact powers of ten in `f32` (10^10 = 2^10 * 5^10, and 5^10 < 2^24).
const POW10: [f32; 11] = [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10];

/// Parses the field of `line` starting at `at` when it is empty (NaN) or a plain decimal
/// `[+-]digits[.digits]` (at least one digit) followed by `,` or the line's end, whose value
/// is exact in one `f32` division: an integer of at most 19 digits (one correctly rounded
/// conversion), or a mantissa of at most 2^24 over at most 10 fraction digits (two exact
/// `f32`s, one correctly rounded division). `str::parse::<f32>` is correctly rounded too, so
/// the results are the same bits. Returns the value and the position of the `,` after the
/// field, if any; `None` sends the field to [`general_field`].
#[inline]
fn plain_decimal(line: &[u8], at: usize) -> Option<(f32, Option<usize>)> {
    let mut i = at;
    let end = |i: usize| -> Option<Option<usize>> {
        match line.get(i) {
            None => Some(None),
            Some(b',') => Some(Some(i)),
            Some(_) => None,
        }
    };
    if let Some(next) = end(i) {
        return Some((f32::NAN, next));
    }
    let negative = match line[i] {
        b'-' => {
            i += 1;
            true
        }
        b'+' => {
            i += 1;
            false
        }
        _ => false,
    };
    // Accumulates the run of digits from `i` into `mantissa`; the index after it.
    let run = |mut i: usize, mantissa: &mut u64| {
        while let Some(&b) = line.get(i).filter(|b| b.is_ascii_digit()) {
            *mantissa = mantissa.wrapping_mul(10).wrapping_add(u64::from(b - b'0'));
            i += 1;
        }
        i
    };
    let mut mantissa = 0u64;
    let after = run(i, &mut mantissa);
    let (mut digits, mut fraction) = (after - i, 0usize);
    i = after;
    if line.get(i) == Some(&b'.') {
        let after = run(i + 1, &mut mantissa);
        fraction = after - (i + 1);
        digits += fraction;
        i = after;
    }
    let next = end(i)?;
    if digits == 0 || digits > 19 {
        return None;
    }
    let value = if fraction == 0 {
        mantissa as f32
    } else if fraction < POW10.len() && mantissa <= 1 << 24 {
        mantissa as f32 / POW10[fraction]
    } else {
        return None;
    };
    Some((if negative { -value } else { value }, next))
}

/// Any CSV field (from `at` to the next `,`): trimmed, unquoted, trimmed again; empty is NaN,
/// else `str::parse::<f32>`. Returns the value and the position of the `,` after it, if any.
#[cold]
fn general_field(
    line: &str,
    at: usize,
    line_no: usize,
    column: usize,
) -> Result<(f32, Option<usize>), CodecError> {
    let rest = &line[at..];
    let (field, next) = match rest.find(',') {
        Some(k) => (&rest[..k], Some(at + k)),
        None => (rest, None),
    };
    let field = field.trim();
    let field = field
        .strip_prefix('"')
        .and_then(|f| f.strip_suffix('"'))
        .unwrap_or(field)
        .trim();
    if field.is_empty() {
        return Ok((f32::NAN, next));
    }
    let value = field.parse::<f32>().map_err(|_| CodecError::Csv {
        line: line_no,
        column,
        message: format!("{field:?} is not a number"),
    })?;
    Ok((value, next))
}

/// Rewords a record-count error to name the line (CSV and JSON Lines number by line).
fn at_line(err: CodecError, line: usize) -> CodecError {
    match err {
        CodecError::FeatureCount {
            expected, actual, ..
        } => CodecError::Csv {
            line,
            column: actual.min(expected) + 1,
            message: format!("the record has {actual} features but the model takes {expected}"),
        },
        CodecError::Ragged {
            expected, actual, ..
        } => CodecError::Csv {
            line,
            column: actual.min(expected) + 1,
            message: format!(
                "the record has {actual} features but the first record has {expected}"
            ),
        },
        other => other,
    }
}

fn decode_json(text: &str, rows: &mut Rows) -> Result<(), CodecError> {
    if text.trim().is_empty() {
        return Err(CodecError::Empty);
    }
    let value: Value = serde_json::from_str(text).map_err(|e| CodecError::Json(e.to_string()))?;
    let (records, path) = match &value {
        Value::Object(map) => {
            if let Some(instances) = map.get("instances") {
                (instances, "instances")
            } else if map.contains_key("features") {
                return record(&value, "$", rows).map_err(CodecError::Json);
            } else {
                let keys: Vec<&str> = map.keys().map(String::as_str).collect();
                return Err(CodecError::Json(format!(
                    "expected {{\"instances\": [...]}}, {{\"features\": [...]}} or an array; found an object with keys {keys:?}"
                )));
            }
        }
        Value::Array(_) => (&value, "$"),
        other => {
            return Err(CodecError::Json(format!(
                "expected an object or array, found {}",
                kind(other)
            )));
        }
    };
    let Value::Array(items) = records else {
        return Err(CodecError::Json(format!(
            "{path} must be an array, found {}",
            kind(records)
        )));
    };
    if items.is_empty() {
        return Err(CodecError::Empty);
    }
    // A flat list of numbers is one record, unless the model takes a single feature.
    if items.iter().all(|v| v.is_number() || v.is_null()) && rows.expected != Some(1) {
        return record(records, path, rows).map_err(CodecError::Json);
    }
    for (i, item) in items.iter().enumerate() {
        let item_path = format!("{path}[{i}]");
        if rows.expected == Some(1) && (item.is_number() || item.is_null()) {
            record(&Value::Array(vec![item.clone()]), &item_path, rows)
                .map_err(CodecError::Json)?;
        } else {
            record(item, &item_path, rows).map_err(CodecError::Json)?;
        }
    }
    Ok(())
}

fn decode_json_lines(text: &str, rows: &mut Rows) -> Result<(), CodecError> {
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let value: Value = serde_json::from_str(line).map_err(|e| CodecError::JsonLines {
            line: i + 1,
            message: e.to_string(),
        })?;
        record(&value, "$", rows).map_err(|message| CodecError::JsonLines {
            line: i + 1,
            message,
        })?;
    }
    Ok(())
}

/// One record: an array of numbers/nulls, or `{"features": [...]}`.
fn record(value: &Value, path: &str, rows: &mut Rows) -> Result<(), String> {
    let (array, path) = match value {
        Value::Array(a) => (a, path.to_owned()),
        Value::Object(map) => match map.get("features") {
            Some(Value::Array(a)) => (a, format!("{path}.features")),
            Some(other) => {
                return Err(format!(
                    "{path}.features must be an array, found {}",
                    kind(other)
                ));
            }
            None => {
                return Err(format!(
                    "{path} must be an array or have a \"features\" array"
                ));
            }
        },
        other => {
            return Err(format!(
                "{path} must be an array of numbers, found {}",
                kind(other)
            ));
        }
    };
    let start = rows.values.len();
    for (j, v) in array.iter().enumerate() {
        let x = match v {
            Value::Number(n) => n.as_f64().unwrap_or(f64::NAN) as f32,
            Value::Null => f32::NAN,
            other => {
                return Err(format!(
                    "{path}[{j}] must be a number or null, found {}",
                    kind(other)
                ));
            }
        };
        rows.values.push(x);
    }
    rows.end_record(start).map_err(|e| format!("{path}: {e}"))
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f32s(t: &Tensor) -> Vec<f32> {
        t.as_f32().unwrap().to_vec()
    }

    #[test]
    fn csv_records_with_missing_values() {
        let t = decode_features(Format::Csv, b"1,2,3\n4,,6\r\n\n", Some(3)).unwrap();
        assert_eq!(t.shape(), &[2, 3]);
        let v = f32s(&t);
        assert_eq!(v[3], 4.0);
        assert!(v[4].is_nan());
    }

    #[test]
    fn csv_errors_name_line_and_column() {
        let err = decode_features(Format::Csv, b"1,2\n3,x\n", None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "CSV line 2, column 2: \"x\" is not a number"
        );
        let err = decode_features(Format::Csv, b"1,2\n3,4,5\n", None).unwrap_err();
        assert!(err.to_string().starts_with("CSV line 2"), "{err}");
        let err = decode_features(Format::Csv, b"1,2\n", Some(3)).unwrap_err();
        assert!(err.to_string().contains("the model takes 3"), "{err}");
        assert_eq!(
            decode_features(Format::Csv, b"\n \n", None).unwrap_err(),
            CodecError::Empty
        );
    }

    #[test]
    fn json_shapes() {
        for body in [
            &br#"{"instances": [[1, 2], [3, null]]}"#[..],
            br#"{"instances": [{"features": [1, 2]}, {"features": [3, null]}]}"#,
            br#"[[1, 2], [3, null]]"#,
        ] {
            let t = decode_features(Format::Json, body, Some(2)).unwrap();
            assert_eq!(t.shape(), &[2, 2], "{}", String::from_utf8_lossy(body));
            assert!(f32s(&t)[3].is_nan());
        }
        let one = decode_features(Format::Json, br#"{"instances": [1, 2, 3]}"#, None).unwrap();
        assert_eq!(one.shape(), &[1, 3]);
        let single = decode_features(Format::Json, br#"{"features": [1, 2, 3]}"#, None).unwrap();
        assert_eq!(single.shape(), &[1, 3]);
        let column =
            decode_features(Format::Json, br#"{"instances": [1, 2, 3]}"#, Some(1)).unwrap();
        assert_eq!(column.shape(), &[3, 1]);
    }

    #[test]
    fn json_errors_name_the_path() {
        let err = decode_features(Format::Json, br#"{"instances": [[1, 2], [3, "a"]]}"#, None)
            .unwrap_err();
        assert!(
            err.to_string().contains("instances[1][1] must be a number"),
            "{err}"
        );
        let err =
            decode_features(Format::Json, br#"{"instances": [[1, 2], [3]]}"#, None).unwrap_err();
        assert!(err.to_string().contains("record 2 has 1 features"), "{err}");
        let err = decode_features(Format::Json, br#"{"inputs": []}"#, None).unwrap_err();
        assert!(err.to_string().contains("\"inputs\""), "{err}");
        assert!(matches!(
            decode_features(Format::Json, b"{", None),
            Err(CodecError::Json(_))
        ));
        assert_eq!(
            decode_features(Format::Json, br#"{"instances": []}"#, None).unwrap_err(),
            CodecError::Empty
        );
        assert_eq!(
            decode_features(Format::Json, b"", None).unwrap_err(),
            CodecError::Empty
        );
    }

    #[test]
    fn json_lines() {
        let t =
            decode_features(Format::JsonLines, b"[1,2]\n{\"features\":[3,4]}\n", Some(2)).unwrap();
        assert_eq!(f32s(&t), vec![1.0, 2.0, 3.0, 4.0]);
        let err = decode_features(Format::JsonLines, b"[1,2]\n[3,true]\n", None).unwrap_err();
        assert!(err.to_string().starts_with("JSON Lines line 2"), "{err}");
    }

    /// The old decoder, field by field: what the fast one must give, bit for bit.
    fn reference(line: &str) -> Vec<Result<u32, ()>> {
        line.split(',')
            .map(|field| {
                let field = field.trim();
                let field = field
                    .strip_prefix('"')
                    .and_then(|f| f.strip_suffix('"'))
                    .unwrap_or(field)
                    .trim();
                if field.is_empty() {
                    Ok(f32::NAN.to_bits())
                } else {
                    field.parse::<f32>().map(f32::to_bits).map_err(|_| ())
                }
            })
            .collect()
    }

    fn check_line(line: &str) {
        let want = reference(line);
        let got = decode_features(Format::Csv, line.as_bytes(), None);
        match (want.iter().all(Result::is_ok), got) {
            (true, Ok(t)) => {
                let got: Vec<u32> = f32s(&t).into_iter().map(f32::to_bits).collect();
                let want: Vec<u32> = want.into_iter().map(Result::unwrap).collect();
                assert_eq!(got, want, "{line:?}");
            }
            (false, Err(CodecError::Csv { column, .. })) => {
                let first_bad = want.iter().position(Result::is_err).unwrap() + 1;
                assert_eq!(column, first_bad, "{line:?}");
            }
            (ok, got) => panic!("{line:?}: reference ok {ok}, fast {got:?}"),
        }
    }

    #[test]
    fn csv_fields_parse_as_str_parse_does() {
        for line in [
            "0,-0,+0,-0.0,0.,.5,-.5,5.,1.0000001,16777216,16777217,0.16777217,1677721.7",
            "123456789012345678,1234567890123456789,12345678901234567890,99999999999999999999",
            "3.4028235e38,3.5e38,1e-45,1e-46,0.0000000001,0.00000000001,1.17549435e-38",
            " 1 , \"2\" ,\" 3 \",,\"\",inf,-inf,NaN,1E5,1e+5",
            "0.1,0.2,0.3,99.999,12.345,-98.765,0.0000001,1234567.8,16777.216,7.0000005",
            "-,+,.,-.,1..2,1.2.3,--1,1-,x,1x,0x10,1_0",
            "1,2,",
            ",",
            "\t4\t,5\r",
        ] {
            check_line(line);
        }
    }

    proptest::proptest! {
        #[test]
        fn csv_decimals_are_bit_identical(
            fields in proptest::collection::vec(
                (proptest::bool::ANY, 0u64..100_000_000_000, 0usize..14, proptest::bool::ANY),
                1..8,
            )
        ) {
            let line: Vec<String> = fields
                .iter()
                .map(|&(neg, m, frac, dot)| {
                    let digits = m.to_string();
                    let sign = if neg { "-" } else { "" };
                    if !dot || frac == 0 {
                        format!("{sign}{digits}")
                    } else if frac >= digits.len() {
                        format!("{sign}0.{}{digits}", "0".repeat(frac - digits.len()))
                    } else {
                        let (a, b) = digits.split_at(digits.len() - frac);
                        format!("{sign}{a}.{b}")
                    }
                })
                .collect();
            check_line(&line.join(","));
        }

        #[test]
        fn csv_any_ascii_fields_agree(line in "[-+0-9.,eE x\"]{0,40}") {
            if !line.trim().is_empty() {
                check_line(&line);
            }
        }

        #[test]
        fn csv_random_floats_round_trip(bits in proptest::collection::vec(proptest::num::u32::ANY, 1..8)) {
            let line: Vec<String> = bits.iter().map(|&b| f32::from_bits(b).to_string()).collect();
            check_line(&line.join(","));
        }
    }

    #[test]
    fn not_utf8() {
        assert!(matches!(
            decode_features(Format::Csv, &[0x31, 0xff], None),
            Err(CodecError::NotUtf8(1))
        ));
    }
}
