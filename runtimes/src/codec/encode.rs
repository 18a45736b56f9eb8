//! Model outputs to response bodies. JSON is written by hand: `f32` values print in their
//! shortest round-trip form (`0.3`, not `0.30000001192092896`) and NaN/infinity as `null`.

use std::fmt::Write as _;

use super::Format;
use crate::error::{Result, RuntimeError};
use crate::model::JsonLayout;
use crate::tensor::{Tensor, TensorData};

/// Encodes named outputs, one entry per row.
///
/// - JSON: `{"<layout.key>": [row, ...]}`, where a row is the bare value of a single output
///   or an object keyed by output name (always an object if `layout.always_objects`).
/// - JSON Lines: one row per line, as above.
/// - CSV: one line per row; the values of all outputs, flattened, comma-separated.
pub fn encode_outputs(
    format: Format,
    outputs: &[(&str, &Tensor)],
    layout: &JsonLayout,
) -> Result<Vec<u8>> {
    let rows = outputs.first().map_or(0, |(_, t)| t.rows());
    if let Some((name, t)) = outputs
        .iter()
        .find(|(_, t)| t.rows() != rows || t.shape().is_empty())
    {
        return Err(RuntimeError::Predict(format!(
            "output {name:?} has shape {:?}, not {rows} rows like the others",
            t.shape()
        )));
    }
    let mut out = String::with_capacity(rows * 16 * outputs.len().max(1) + 32);
    match format {
        Format::Json => {
            out.push_str("{\"");
            out.push_str(layout.key);
            out.push_str("\":[");
            for r in 0..rows {
                if r > 0 {
                    out.push(',');
                }
                json_row(&mut out, outputs, r, layout);
            }
            out.push_str("]}");
        }
        Format::JsonLines => {
            for r in 0..rows {
                json_row(&mut out, outputs, r, layout);
                out.push('\n');
            }
        }
        Format::Csv => {
            for r in 0..rows {
                let mut first = true;
                for (_, t) in outputs {
                    let n = t.row_len();
                    for i in r * n..(r + 1) * n {
                        if !first {
                            out.push(',');
                        }
                        first = false;
                        csv_value(&mut out, t.data(), i);
                    }
                }
                out.push('\n');
            }
        }
    }
    Ok(out.into_bytes())
}

fn json_row(out: &mut String, outputs: &[(&str, &Tensor)], r: usize, layout: &JsonLayout) {
    if outputs.len() == 1 && !layout.always_objects {
        json_tensor_row(out, outputs[0].1, r);
        return;
    }
    out.push('{');
    for (k, (name, t)) in outputs.iter().enumerate() {
        if k > 0 {
            out.push(',');
        }
        json_string(out, name.as_bytes());
        out.push(':');
        json_tensor_row(out, t, r);
    }
    out.push('}');
}

/// Row `r` of a tensor: a scalar for rank 1, nested arrays for higher ranks.
fn json_tensor_row(out: &mut String, t: &Tensor, r: usize) {
    let dims = &t.shape()[1..];
    let n = t.row_len();
    json_nested(out, t.data(), r * n, dims);
}

fn json_nested(out: &mut String, data: &TensorData, start: usize, dims: &[usize]) {
    let Some((&d, rest)) = dims.split_first() else {
        json_value(out, data, start);
        return;
    };
    let stride: usize = rest.iter().product();
    out.push('[');
    for i in 0..d {
        if i > 0 {
            out.push(',');
        }
        json_nested(out, data, start + i * stride, rest);
    }
    out.push(']');
}

fn json_value(out: &mut String, data: &TensorData, i: usize) {
    match data {
        TensorData::Bool(v) => out.push_str(if v[i] { "true" } else { "false" }),
        TensorData::Fp32(v) if v[i].is_finite() => display_f32(out, v[i]),
        TensorData::Fp32(_) => out.push_str("null"),
        TensorData::Fp64(v) => float(out, v[i].is_finite(), v[i]),
        TensorData::Bytes(v) => json_string(out, &v[i]),
        other => {
            let _ = write!(out, "{}", other.get_f64(i).unwrap_or(0.0) as i64);
        }
    }
}

fn float(out: &mut String, finite: bool, v: impl std::fmt::Display) {
    if finite {
        let _ = write!(out, "{v}");
    } else {
        out.push_str("null");
    }
}

fn json_string(out: &mut String, bytes: &[u8]) {
    let s = String::from_utf8_lossy(bytes);
    out.push_str(&serde_json::to_string(&*s).expect("strings serialize"));
}

/// `|v|` as `m × 2^e` exactly.
fn binary_parts(v: f32) -> (u128, i32) {
    let bits = v.abs().to_bits();
    let (field, fraction) = (bits >> 23, u128::from(bits & 0x7f_ffff));
    if field == 0 {
        (fraction, -149)
    } else {
        (fraction | 1 << 23, field as i32 - 150)
    }
}

/// Whether `|v|` can lie halfway between two decimals whose last digits are worth `10^k`:
/// halfway means `2|v| = (2d ± 1) × 10^k`, so `2|v| / 10^k = m × 2^(e + 1 - k) / 5^k` is an
/// odd integer, which it can only be if its power of two is 0. The cheap test that settles
/// almost every value before any digit is read.
fn may_be_halfway(v: f32, k: i32) -> bool {
    let (m, e) = binary_parts(v);
    e + 1 - k + m.trailing_zeros() as i32 == 0
}

/// Whether `|v|` lies exactly halfway between the decimal `0.digits × 10^point` and its
/// neighbour one unit of the last digit away; `None` when the exact check overflows `u128`.
fn halfway(v: f32, digits: &[u8], point: i32) -> Option<bool> {
    // The candidate is d × 10^k.
    let k = point - digits.len() as i32;
    if !may_be_halfway(v, k) {
        return Some(false);
    }
    let (m, e) = binary_parts(v);
    let d = digits.iter().try_fold(0u128, |d, &b| {
        d.checked_mul(10)?.checked_add(u128::from(b - b'0'))
    })?;
    let pow2 = |n: i32| 1u128.checked_shl(n.max(0) as u32);
    let pow10 = |n: i32| 10u128.checked_pow(n.max(0) as u32);
    let left = (2 * m).checked_mul(pow2(e)?)?.checked_mul(pow10(-k)?)?;
    let scale = pow2(-e)?.checked_mul(pow10(k)?)?;
    let below = (2 * d - 1).checked_mul(scale)?;
    let above = (2 * d + 1).checked_mul(scale)?;
    Some(left == below || left == above)
}

fn csv_value(out: &mut String, data: &TensorData, i: usize) {
    match data {
        TensorData::Bool(v) => out.push_str(if v[i] { "1" } else { "0" }),
        TensorData::Fp32(v) if v[i].is_finite() => display_f32(out, v[i]),
        TensorData::Fp32(_) => out.push_str("nan"),
        TensorData::Fp64(v) => float_csv(out, v[i].is_finite(), v[i]),
        TensorData::Bytes(v) => {
            let s = String::from_utf8_lossy(&v[i]);
            if s.contains([',', '"', '\n', '\r']) {
                out.push('"');
                out.push_str(&s.replace('"', "\"\""));
                out.push('"');
            } else {
                out.push_str(&s);
            }
        }
        other => {
            let mut buffer = itoa::Buffer::new();
            out.push_str(buffer.format(other.get_f64(i).unwrap_or(0.0) as i64));
        }
    }
}

fn float_csv(out: &mut String, finite: bool, v: impl std::fmt::Display) {
    if finite {
        let _ = write!(out, "{v}");
    } else {
        out.push_str("nan");
    }
}

/// A finite `f32` exactly as `format!("{v}")` writes it (shortest round-trip digits, never an
/// exponent: `0.0000001`, `100000000000000000000`, `1`, `-0`), at a fraction of its cost:
/// `zmij` (already serde_json's) finds the shortest digits closest to the value, written here
/// in `Display`'s layout. Where two shortest candidates are equally close (`312985.125`:
/// `…12` or `…13`) `zmij` and `Display` break the tie differently, so a tie, or a value whose
/// tie check does not fit in 128 bits, is written by `Display` itself. The encoders' tests
/// compare the two over many values.
fn display_f32(out: &mut String, v: f32) {
    let mut buffer = zmij::Buffer::new();
    let text = buffer.format_finite(v);
    if !display_f32_short(out, v, text) {
        display_f32_exact(out, v, text.as_bytes());
    }
}

/// The short way of [`display_f32`], taken by almost every value: `zmij`'s `text`
/// (`[-]I.F`, `[-]I.0`, or `[-]D[.F]e±XX` with one digit `D`) rearranged into `Display`'s
/// layout piece by piece, once the cheap tie test ([`may_be_halfway`]) has ruled a tie out.
/// Writes nothing and returns false where that test cannot, or the text is not of that shape.
fn display_f32_short(out: &mut String, v: f32, text: &str) -> bool {
    // One pass over the bytes (a dozen at most): `str`'s pattern searches cost more here than
    // the rest of the function.
    let bytes = text.as_bytes();
    let negative = bytes.first() == Some(&b'-');
    let (mut dot, mut e) = (None, bytes.len());
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'.' {
            dot = Some(i);
        } else if b == b'e' {
            e = i;
            break;
        }
    }
    let start = usize::from(negative);
    let (int, fraction) = match dot {
        Some(dot) => (&text[start..dot], &text[dot + 1..e]),
        None => (&text[start..e], ""),
    };
    // `zmij` ends a fraction in a zero only as `.0`, an integer.
    let fraction = match fraction.as_bytes() {
        b"0" => "",
        [.., b'0'] => return false,
        _ => fraction,
    };
    if e == bytes.len() {
        // `[-]I.F` is already `Display`'s layout; `[-]I.0` is `[-]I`.
        let k = if fraction.is_empty() {
            int.bytes().rev().take_while(|&b| b == b'0').count() as i32
        } else {
            -(fraction.len() as i32)
        };
        if v != 0.0 && may_be_halfway(v, k) {
            return false;
        }
        let shown = if fraction.is_empty() {
            &text[..start + int.len()]
        } else {
            text
        };
        out.push_str(shown);
        return true;
    }
    let Some(exponent) = small_exponent(&bytes[e + 1..]) else {
        return false;
    };
    if int.len() != 1 || may_be_halfway(v, exponent - fraction.len() as i32) {
        return false;
    }
    if negative {
        out.push('-');
    }
    match usize::try_from(exponent) {
        // `D.F × 10^-n`: `0.` then n - 1 zeros, then the digits.
        Err(_) => {
            out.push_str("0.");
            (1..exponent.unsigned_abs()).for_each(|_| out.push('0'));
            out.push_str(int);
            out.push_str(fraction);
        }
        // `D.F × 10^n`: the point moves n digits right, past the digits into zeros.
        Ok(n) if n >= fraction.len() => {
            out.push_str(int);
            out.push_str(fraction);
            (fraction.len()..n).for_each(|_| out.push('0'));
        }
        Ok(n) => {
            out.push_str(int);
            out.push_str(&fraction[..n]);
            out.push('.');
            out.push_str(&fraction[n..]);
        }
    }
    true
}

/// A decimal exponent as `zmij` writes it for an `f32` (a sign, then two digits: `e+20`,
/// `e-05`); no sign or a third digit are read too, anything else is `None`.
fn small_exponent(text: &[u8]) -> Option<i32> {
    let (negative, digits) = match text {
        [b'-', digits @ ..] => (true, digits),
        [b'+', digits @ ..] => (false, digits),
        digits => (false, digits),
    };
    if digits.is_empty() || digits.len() > 3 {
        return None;
    }
    let value = digits.iter().try_fold(0i32, |n, &b| {
        b.is_ascii_digit().then(|| n * 10 + i32::from(b - b'0'))
    })?;
    Some(if negative { -value } else { value })
}

/// The general way of [`display_f32`]: the digits and the point's place read from `zmij`'s
/// `text`, checked for an exact tie, and laid out as `Display` does.
fn display_f32_exact(out: &mut String, v: f32, text: &[u8]) {
    let (negative, text) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    let (mantissa, exponent) = match text.iter().position(|&b| b == b'e') {
        Some(e) => (
            &text[..e],
            std::str::from_utf8(&text[e + 1..])
                .ok()
                .and_then(|x| x.parse::<i32>().ok())
                .unwrap_or(0),
        ),
        None => (text, 0),
    };
    // The digits without the point, and where the point goes among them.
    let mut digits = [0u8; 48];
    let (mut len, mut point) = (0usize, None);
    for &b in mantissa {
        if b == b'.' {
            point = Some(len);
        } else if len < digits.len() {
            digits[len] = b;
            len += 1;
        }
    }
    let mut point = point.unwrap_or(len) as i32 + exponent;
    let mut digits = &digits[..len];
    while let Some((b'0', rest)) = digits.split_first() {
        digits = rest;
        point -= 1;
    }
    while let Some((b'0', rest)) = digits.split_last() {
        digits = rest;
    }
    if !digits.is_empty() && halfway(v, digits, point) != Some(false) {
        let _ = write!(out, "{v}");
        return;
    }
    if negative {
        out.push('-');
    }
    // ASCII digits throughout.
    let digits = std::str::from_utf8(digits).unwrap_or("0");
    if digits.is_empty() {
        out.push('0');
    } else if point <= 0 {
        out.push_str("0.");
        (0..-point).for_each(|_| out.push('0'));
        out.push_str(digits);
    } else if point as usize >= digits.len() {
        out.push_str(digits);
        (digits.len()..point as usize).for_each(|_| out.push('0'));
    } else {
        out.push_str(&digits[..point as usize]);
        out.push('.');
        out.push_str(&digits[point as usize..]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(shape: Vec<usize>, data: TensorData) -> Tensor {
        Tensor::new(shape, data).unwrap()
    }

    #[test]
    fn single_output_rows_are_bare() {
        let p = t(vec![2, 2], TensorData::Fp32(vec![0.1, 0.9, 0.3, f32::NAN]));
        let json = encode_outputs(Format::Json, &[("p", &p)], &JsonLayout::default()).unwrap();
        assert_eq!(
            String::from_utf8(json).unwrap(),
            r#"{"predictions":[[0.1,0.9],[0.3,null]]}"#
        );
        let csv = encode_outputs(Format::Csv, &[("p", &p)], &JsonLayout::default()).unwrap();
        assert_eq!(String::from_utf8(csv).unwrap(), "0.1,0.9\n0.3,nan\n");
    }

    #[test]
    fn several_outputs_make_objects() {
        let label = t(vec![2], TensorData::Int64(vec![1, 0]));
        let score = t(vec![2], TensorData::Fp32(vec![0.75, 0.25]));
        let outs = [("predicted_label", &label), ("score", &score)];
        let json = encode_outputs(Format::Json, &outs, &JsonLayout::default()).unwrap();
        assert_eq!(
            String::from_utf8(json).unwrap(),
            r#"{"predictions":[{"predicted_label":1,"score":0.75},{"predicted_label":0,"score":0.25}]}"#
        );
        let lines = encode_outputs(Format::JsonLines, &outs, &JsonLayout::default()).unwrap();
        assert_eq!(String::from_utf8(lines).unwrap().lines().count(), 2);
        let csv = encode_outputs(Format::Csv, &outs, &JsonLayout::default()).unwrap();
        assert_eq!(String::from_utf8(csv).unwrap(), "1,0.75\n0,0.25\n");
    }

    #[test]
    fn layout_key_and_forced_objects() {
        let p = t(vec![1, 2], TensorData::Fp64(vec![1.5, -2.0]));
        let layout = JsonLayout {
            key: "projections",
            always_objects: true,
        };
        let json = encode_outputs(Format::Json, &[("projection", &p)], &layout).unwrap();
        assert_eq!(
            String::from_utf8(json).unwrap(),
            r#"{"projections":[{"projection":[1.5,-2]}]}"#
        );
    }

    #[test]
    fn f32_values_print_as_display_does() {
        let mut values = vec![
            0.0f32,
            -0.0,
            1.0,
            -1.0,
            0.1,
            0.3,
            1e-7,
            1e-5,
            1.5e-5,
            9.9e-6,
            1e15,
            1e16,
            1.5e17,
            1e20,
            123456.79,
            16777216.0,
            16777217.0,
            f32::MAX,
            f32::MIN,
            f32::MIN_POSITIVE,
            f32::EPSILON,
            f32::from_bits(1),
            f32::from_bits(0x007f_ffff),
            0.99812347,
            1.0 - f32::EPSILON,
            // Ties, where zmij and `Display` pick different neighbours (written as a sum:
            // the literal has more digits than `Display`'s shortest text of it).
            312985.0 + 0.125,
            -312985.0 - 0.125,
            0.3125,
            100.0,
            1e9,
            -1e-3,
        ];
        // Pseudo-random bit patterns, every exponent, and runs of neighbours in [0, 1].
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..200_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            values.push(f32::from_bits(state as u32));
        }
        for start in [0.0f32, 1e-6, 0.001, 0.1, 0.25, 0.5, 0.75, 0.999] {
            let base = start.to_bits();
            values.extend((0..20_000).map(|k| f32::from_bits(base + k)));
        }
        for exp in 0..255u32 {
            values.extend((0..64).map(|k| f32::from_bits((exp << 23) | (k * 131_071))));
        }
        let mut out = String::new();
        for v in values.into_iter().filter(|v| v.is_finite()) {
            out.clear();
            display_f32(&mut out, v);
            assert_eq!(out, v.to_string(), "{:#x}", v.to_bits());
        }
    }

    #[test]
    fn common_values_take_the_short_way_and_ties_do_not() {
        let short = |v: f32| {
            let mut buffer = zmij::Buffer::new();
            let mut out = String::new();
            let taken = display_f32_short(&mut out, v, buffer.format_finite(v));
            (taken, out)
        };
        for v in [
            0.25f32, 0.9812, 1.5e-5, 3.2e-12, -7.0, 6.02e23, 123456.79, 0.0, -0.0,
        ] {
            assert_eq!(short(v), (true, v.to_string()), "{v}");
        }
        // A tie: the exact way decides, and `Display` writes it.
        assert!(!short(312985.0 + 0.125).0);
    }

    #[test]
    fn mismatched_rows_are_an_error() {
        let a = t(vec![2], TensorData::Int64(vec![1, 0]));
        let b = t(vec![1], TensorData::Int64(vec![1]));
        assert!(
            encode_outputs(
                Format::Json,
                &[("a", &a), ("b", &b)],
                &JsonLayout::default()
            )
            .is_err()
        );
    }
}
