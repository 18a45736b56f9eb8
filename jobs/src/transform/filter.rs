//! `DataProcessing`'s JSONPath subset, as SageMaker's batch transform reads it, and the join of
//! an output record to its input record (`JoinSource: Input`).
//!
//! Paths: `$` (everything), indices and slices of an array or a CSV record (`$[1]`, `$[1:]`,
//! `$[:-1]`, `$[0,2:4]`, `$[-1]`), keys of an object (`$.features`, `$.a.b`,
//! `$['id','features']`), and keys followed by indices (`$.features[1:]`). A single index or
//! key selects that value; a list or slice selects an array; several quoted keys select an
//! object of those keys. CSV records are arrays of their fields (kept as written), so only
//! index paths apply to them.
//!
//! Pure functions; a record the path does not fit is an error naming the path.

use serde_json::Value;

/// One index selector: a position (negative from the end) or a slice.
#[derive(Clone, Debug, PartialEq)]
enum Sel {
    One(i64),
    Range(Option<i64>, Option<i64>),
}

/// One step of a path.
#[derive(Clone, Debug, PartialEq)]
enum Step {
    Key(String),
    Keys(Vec<String>),
    Index(Vec<Sel>),
}

/// A parsed path.
#[derive(Clone, Debug, PartialEq)]
pub struct JsonPath {
    text: String,
    steps: Vec<Step>,
}

impl std::fmt::Display for JsonPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

fn parse_int(s: &str, path: &str) -> Result<i64, String> {
    s.trim()
        .parse::<i64>()
        .map_err(|_| format!("JSONPath {path:?}: {s:?} is not an integer index"))
}

impl JsonPath {
    /// Parses a path; the error names it and what is wrong.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = |why: &str| format!("JSONPath {text:?} is not supported: {why}");
        if text.len() > 63 {
            return Err(bad("longer than 63 characters"));
        }
        let rest = text
            .trim()
            .strip_prefix('$')
            .ok_or_else(|| bad("it must start with '$'"))?;
        let mut steps = Vec::new();
        let mut rest = rest;
        while !rest.is_empty() {
            if let Some(r) = rest.strip_prefix('.') {
                let end = r.find(['.', '[']).unwrap_or(r.len());
                let key = &r[..end];
                if key.is_empty()
                    || !key
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                {
                    return Err(bad("a key after '.' must be letters, digits, '_' or '-'"));
                }
                steps.push(Step::Key(key.to_owned()));
                rest = &r[end..];
            } else if let Some(r) = rest.strip_prefix('[') {
                let end = r.find(']').ok_or_else(|| bad("a '[' is not closed"))?;
                let inner = r[..end].trim();
                rest = &r[end + 1..];
                if inner.starts_with('\'') || inner.starts_with('"') {
                    let mut keys = Vec::new();
                    for k in inner.split(',') {
                        let k = k.trim();
                        let q = k.chars().next().unwrap_or('\'');
                        let key = k
                            .strip_prefix(q)
                            .and_then(|k| k.strip_suffix(q))
                            .filter(|k| !k.is_empty())
                            .ok_or_else(|| bad("keys in [...] must be quoted"))?;
                        keys.push(key.to_owned());
                    }
                    steps.push(if keys.len() == 1 {
                        Step::Key(keys.remove(0))
                    } else {
                        Step::Keys(keys)
                    });
                } else {
                    if inner.is_empty() {
                        return Err(bad("empty []"));
                    }
                    let mut sels = Vec::new();
                    for part in inner.split(',') {
                        sels.push(match part.split_once(':') {
                            Some((a, b)) => {
                                let a = a.trim();
                                let b = b.trim();
                                Sel::Range(
                                    (!a.is_empty()).then(|| parse_int(a, text)).transpose()?,
                                    (!b.is_empty()).then(|| parse_int(b, text)).transpose()?,
                                )
                            }
                            None if part.trim() == "*" => Sel::Range(None, None),
                            None => Sel::One(parse_int(part, text)?),
                        });
                    }
                    steps.push(Step::Index(sels));
                }
            } else {
                return Err(bad("expected '.key' or '[...]' after '$'"));
            }
        }
        Ok(Self {
            text: text.trim().to_owned(),
            steps,
        })
    }

    /// Whether the path is `$` (selects everything).
    pub fn is_root(&self) -> bool {
        self.steps.is_empty()
    }

    /// Whether the path applies to CSV records (only index steps, at most one).
    pub fn fits_csv(&self) -> bool {
        matches!(self.steps.as_slice(), [] | [Step::Index(_)])
    }

    /// Selects from a JSON value.
    pub fn select(&self, value: &Value) -> Result<Value, String> {
        let mut v = value.clone();
        for step in &self.steps {
            v = match step {
                Step::Key(k) => match v {
                    Value::Object(mut m) => m
                        .remove(k)
                        .ok_or_else(|| format!("{}: the record has no key {k:?}", self.text))?,
                    _ => return Err(format!("{}: the record is not a JSON object", self.text)),
                },
                Step::Keys(keys) => match v {
                    Value::Object(mut m) => {
                        let mut out = serde_json::Map::new();
                        for k in keys {
                            let x = m.remove(k).ok_or_else(|| {
                                format!("{}: the record has no key {k:?}", self.text)
                            })?;
                            out.insert(k.clone(), x);
                        }
                        Value::Object(out)
                    }
                    _ => return Err(format!("{}: the record is not a JSON object", self.text)),
                },
                Step::Index(sels) => match v {
                    Value::Array(items) => {
                        let picked = self.positions(sels, items.len())?;
                        if let [Sel::One(_)] = sels.as_slice() {
                            items[picked[0]].clone()
                        } else {
                            Value::Array(picked.into_iter().map(|i| items[i].clone()).collect())
                        }
                    }
                    _ => return Err(format!("{}: the record is not a JSON array", self.text)),
                },
            };
        }
        Ok(v)
    }

    /// Selects fields of a CSV record (`line` without its line end) into `out`, comma-joined.
    pub fn select_csv(&self, line: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        let Some(Step::Index(sels)) = self.steps.first() else {
            out.extend_from_slice(line);
            return Ok(());
        };
        let fields: Vec<&[u8]> = line.split(|&b| b == b',').collect();
        let picked = self.positions(sels, fields.len())?;
        for (n, i) in picked.into_iter().enumerate() {
            if n > 0 {
                out.push(b',');
            }
            out.extend_from_slice(fields[i]);
        }
        Ok(())
    }

    /// The positions `sels` pick from `len` items, in order.
    fn positions(&self, sels: &[Sel], len: usize) -> Result<Vec<usize>, String> {
        let n = len as i64;
        let at = |i: i64| if i < 0 { n + i } else { i };
        let mut out = Vec::new();
        for sel in sels {
            match *sel {
                Sel::One(i) => {
                    let p = at(i);
                    if !(0..n).contains(&p) {
                        return Err(format!(
                            "{}: index {i} is out of range for a record of {len} fields",
                            self.text
                        ));
                    }
                    out.push(p as usize);
                }
                Sel::Range(a, b) => {
                    let a = at(a.unwrap_or(0)).clamp(0, n);
                    let b = at(b.unwrap_or(n)).clamp(0, n);
                    out.extend((a..b.max(a)).map(|p| p as usize));
                }
            }
        }
        if out.is_empty() {
            return Err(format!(
                "{}: selects nothing from a record of {len} fields",
                self.text
            ));
        }
        Ok(out)
    }
}

/// Joins an output value to a JSON input record: under `SageMakerOutput` of an object, or
/// `{"SageMakerInput": input, "SageMakerOutput": output}` for any other input.
pub fn join_json(input: Value, output: Value) -> Value {
    match input {
        Value::Object(mut m) => {
            m.insert("SageMakerOutput".into(), output);
            Value::Object(m)
        }
        other => serde_json::json!({"SageMakerInput": other, "SageMakerOutput": output}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn csv(path: &str, line: &str) -> Result<String, String> {
        let mut out = Vec::new();
        JsonPath::parse(path)?.select_csv(line.as_bytes(), &mut out)?;
        Ok(String::from_utf8(out).unwrap())
    }

    #[test]
    fn csv_indices_and_slices() {
        assert_eq!(csv("$", "1,2,3").unwrap(), "1,2,3");
        assert_eq!(csv("$[1:]", "id,2,3").unwrap(), "2,3");
        assert_eq!(csv("$[0,-1]", "a,b,c,d").unwrap(), "a,d");
        assert_eq!(csv("$[0,2:4]", "a,b,c,d,e").unwrap(), "a,c,d");
        assert_eq!(csv("$[:-1]", "a,b,c").unwrap(), "a,b");
        assert!(csv("$[5]", "a,b").unwrap_err().contains("out of range"));
        assert!(!JsonPath::parse("$.features").unwrap().fits_csv());
    }

    #[test]
    fn json_keys() {
        let v = json!({"id": 7, "features": [1, 2, 3], "x": {"y": 1}});
        let p = |s: &str| JsonPath::parse(s).unwrap().select(&v).unwrap();
        assert_eq!(p("$"), v);
        assert_eq!(p("$.features"), json!([1, 2, 3]));
        assert_eq!(p("$.features[1:]"), json!([2, 3]));
        assert_eq!(p("$.x.y"), json!(1));
        assert_eq!(
            p("$['id','features']"),
            json!({"id": 7, "features": [1, 2, 3]})
        );
        assert!(
            JsonPath::parse("$.nope")
                .unwrap()
                .select(&v)
                .unwrap_err()
                .contains("no key")
        );
    }

    #[test]
    fn bad_paths_are_named() {
        for p in ["features", "$[", "$[a]", "$.", "$x", "$[]"] {
            let e = JsonPath::parse(p).unwrap_err();
            assert!(e.contains("JSONPath"), "{p}: {e}");
        }
    }

    #[test]
    fn joins() {
        assert_eq!(
            join_json(json!({"id": 1}), json!(0.5)),
            json!({"id": 1, "SageMakerOutput": 0.5})
        );
        assert_eq!(
            join_json(json!([1, 2]), json!(0.5)),
            json!({"SageMakerInput": [1, 2], "SageMakerOutput": 0.5})
        );
    }
}
