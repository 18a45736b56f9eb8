//! A small UBJSON (Universal Binary JSON, draft 12) reader, enough for the files XGBoost
//! writes with `save_model("m.ubj")` and SageMaker's `xgboost-model`.
//!
//! It turns the document into a [`serde_json::Value`] so one XGBoost reader serves both
//! encodings. Supported: all scalar markers (`Z N T F i U I l L d D C S H`), objects and
//! arrays with or without the `$` type / `#` count optimisations. Integers are big-endian.
//! Non-finite floats (which JSON cannot hold) become the strings `"NaN"`, `"inf"`, `"-inf"`;
//! the XGBoost reader accepts those wherever it reads a float. Every read is bounds-checked
//! and nesting is limited, so a hostile file yields an error, never a panic or a stack
//! overflow. Single-threaded; no state beyond one parse.

use serde_json::{Map, Number, Value};

use super::error::{Result, TreeError};

/// Deepest nesting accepted (XGBoost models nest about 8 levels).
const MAX_NESTING: usize = 64;

/// Parses a complete UBJSON document.
pub fn parse(bytes: &[u8]) -> Result<Value> {
    let mut reader = Reader { bytes, pos: 0 };
    let marker = reader.marker("document")?;
    let value = reader.value(marker, 0)?;
    // Trailing no-ops are allowed; anything else is not.
    while reader.pos < bytes.len() {
        if bytes[reader.pos] != b'N' {
            return Err(TreeError::invalid(
                format!("byte {}", reader.pos),
                "trailing data after the UBJSON document",
            ));
        }
        reader.pos += 1;
    }
    Ok(value)
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len());
        match end {
            Some(end) => {
                let slice = &self.bytes[self.pos..end];
                self.pos = end;
                Ok(slice)
            }
            None => Err(TreeError::Truncated {
                what: what.to_string(),
                offset: self.bytes.len(),
            }),
        }
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    fn marker(&mut self, what: &str) -> Result<u8> {
        Ok(self.take(1, what)?[0])
    }

    /// Reads an integer given its marker (used for lengths and counts).
    fn int(&mut self, marker: u8, what: &str) -> Result<i64> {
        Ok(match marker {
            b'i' => i64::from(i8::from_be_bytes(self.array(what)?)),
            b'U' => i64::from(self.marker(what)?),
            b'I' => i64::from(i16::from_be_bytes(self.array(what)?)),
            b'l' => i64::from(i32::from_be_bytes(self.array(what)?)),
            b'L' => i64::from_be_bytes(self.array(what)?),
            other => {
                return Err(self.bad(format!(
                    "expected an integer marker for {what}, found {}",
                    show(other)
                )));
            }
        })
    }

    fn length(&mut self, what: &str) -> Result<usize> {
        let at = self.pos;
        let marker = self.marker(what)?;
        let n = self.int(marker, what)?;
        usize::try_from(n).map_err(|_| {
            TreeError::invalid(
                format!("byte {at}"),
                format!("negative length {n} for {what}"),
            )
        })
    }

    fn string(&mut self, what: &str) -> Result<String> {
        let at = self.pos;
        let n = self.length(what)?;
        let raw = self.take(n, what)?;
        String::from_utf8(raw.to_vec())
            .map_err(|_| TreeError::invalid(format!("byte {at}"), format!("{what} is not UTF-8")))
    }

    fn bad(&self, reason: String) -> TreeError {
        TreeError::invalid(format!("byte {}", self.pos.saturating_sub(1)), reason)
    }

    fn value(&mut self, marker: u8, depth: usize) -> Result<Value> {
        Ok(match marker {
            b'Z' => Value::Null,
            b'T' => Value::Bool(true),
            b'F' => Value::Bool(false),
            b'i' | b'U' | b'I' | b'l' | b'L' => {
                Value::Number(Number::from(self.int(marker, "integer")?))
            }
            b'd' => float(f64::from(f32::from_be_bytes(self.array("float32")?))),
            b'D' => float(f64::from_be_bytes(self.array("float64")?)),
            b'C' => Value::String(char::from(self.marker("char")?).to_string()),
            b'S' => Value::String(self.string("string")?),
            b'H' => {
                let text = self.string("high-precision number")?;
                let n: f64 = text
                    .parse()
                    .map_err(|_| self.bad(format!("bad high-precision number {text:?}")))?;
                float(n)
            }
            b'[' => self.container(depth, false)?,
            b'{' => self.container(depth, true)?,
            other => return Err(self.bad(format!("unknown UBJSON marker {}", show(other)))),
        })
    }

    fn container(&mut self, depth: usize, object: bool) -> Result<Value> {
        if depth >= MAX_NESTING {
            return Err(self.bad(format!("nesting deeper than {MAX_NESTING}")));
        }
        let what = if object { "object" } else { "array" };
        // Optional `$type` (only with `#count`) and `#count`.
        let mut elem_type = None;
        let mut count = None;
        let mut next = self.marker(what)?;
        if next == b'$' {
            elem_type = Some(self.marker(what)?);
            next = self.marker(what)?;
            if next != b'#' {
                return Err(self.bad(format!("typed {what} without a count")));
            }
        }
        if next == b'#' {
            count = Some(self.length(what)?);
        } else {
            self.pos -= 1;
        }
        let mut items = Vec::new();
        let mut map = Map::new();
        let mut i = 0usize;
        loop {
            match count {
                Some(n) if i == n => break,
                Some(_) => {}
                None => {
                    let m = self.marker(what)?;
                    if m == if object { b'}' } else { b']' } {
                        break;
                    }
                    if m == b'N' {
                        continue;
                    }
                    self.pos -= 1;
                }
            }
            let key = if object {
                Some(self.string("object key")?)
            } else {
                None
            };
            let marker = match elem_type {
                Some(t) => t,
                None => self.marker(what)?,
            };
            let value = self.value(marker, depth + 1)?;
            match key {
                Some(k) => {
                    map.insert(k, value);
                }
                None => items.push(value),
            }
            i += 1;
            // A typed count can be huge while elements are tiny or empty (`Z`); cap the
            // work by the bytes left so a hostile count cannot spin.
            if elem_type.is_some()
                && count.is_some_and(|n| n - i > self.bytes.len())
                && matches!(elem_type, Some(b'Z' | b'T' | b'F' | b'N'))
            {
                return Err(self.bad(format!("{what} count larger than the file")));
            }
        }
        Ok(if object {
            Value::Object(map)
        } else {
            Value::Array(items)
        })
    }
}

/// A float as a JSON value; non-finite values become strings.
fn float(v: f64) -> Value {
    match Number::from_f64(v) {
        Some(n) => Value::Number(n),
        None if v.is_nan() => Value::String("NaN".into()),
        None if v > 0.0 => Value::String("inf".into()),
        None => Value::String("-inf".into()),
    }
}

fn show(byte: u8) -> String {
    if byte.is_ascii_graphic() {
        format!("'{}'", byte as char)
    } else {
        format!("0x{byte:02x}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_objects_typed_arrays_and_scalars() {
        let mut doc = vec![b'{'];
        doc.extend([b'i', 1, b'a', b'[', b'$', b'd', b'#', b'i', 2]);
        doc.extend(1.5f32.to_be_bytes());
        doc.extend((-2.0f32).to_be_bytes());
        doc.extend([b'i', 1, b'b', b'S', b'i', 2, b'h', b'i']);
        doc.extend([b'i', 1, b'c', b'[', b'l']);
        doc.extend(300i32.to_be_bytes());
        doc.extend([b'T', b'Z', b']', b'}']);
        let v = parse(&doc).unwrap();
        assert_eq!(v["a"], serde_json::json!([1.5, -2.0]));
        assert_eq!(v["b"], "hi");
        assert_eq!(v["c"], serde_json::json!([300, true, null]));
    }

    #[test]
    fn truncated_and_garbage_inputs_are_errors() {
        assert!(matches!(
            parse(b"{i\x01a[$d#i\x02\x3f"),
            Err(TreeError::Truncated { .. })
        ));
        assert!(matches!(
            parse(b"{i\x01aX}"),
            Err(TreeError::Invalid { .. })
        ));
        assert!(matches!(parse(b""), Err(TreeError::Truncated { .. })));
        assert!(matches!(
            parse(b"[$Z#L\x7f\xff\xff\xff\xff\xff\xff\xff"),
            Err(TreeError::Invalid { .. })
        ));
        let deep = vec![b'['; 1000];
        assert!(parse(&deep).is_err());
    }

    #[test]
    fn non_finite_floats_become_strings() {
        let mut doc = vec![b'[', b'd'];
        doc.extend(f32::INFINITY.to_be_bytes());
        doc.push(b']');
        assert_eq!(parse(&doc).unwrap(), serde_json::json!(["inf"]));
    }
}
