//! A small reader of the protobuf text format, enough for Triton's `config.pbtxt`: fields
//! `name: value`, messages `name { … }` or `name: { … }` (or `< … >`), lists
//! `name: [a, b]` / `name [ {…}, {…} ]`, strings in single or double quotes with C
//! escapes (adjacent strings concatenate), numbers, identifiers (enum values, `true`), `#`
//! comments and optional `,` / `;` separators.
//!
//! The reader knows no schema: it gives a tree of [`Field`]s, a list element becoming one
//! more field of the same name (as protobuf's repeated fields are). The Triton layer
//! ([`super::config`]) interprets names and types. Input is bounded: at most
//! [`MAX_BYTES`] bytes and [`MAX_DEPTH`] nested messages. Pure; no I/O.

/// Largest `config.pbtxt` read.
pub const MAX_BYTES: usize = 1 << 20;
/// Deepest nesting of messages and lists.
pub const MAX_DEPTH: usize = 32;

/// A field's value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// A number, identifier or string (strings unquoted and unescaped).
    Scalar(Scalar),
    /// A nested message.
    Message(Vec<Field>),
}

/// A scalar as written.
#[derive(Clone, Debug, PartialEq)]
pub enum Scalar {
    /// A quoted string.
    Str(String),
    /// A number or identifier, as written (`12`, `-1`, `1e-3`, `TYPE_FP32`, `true`).
    Word(String),
}

/// One `name: value` of a message.
#[derive(Clone, Debug, PartialEq)]
pub struct Field {
    /// The field's name.
    pub name: String,
    /// Its value.
    pub value: Value,
    /// 1-based line where it starts (for messages that name it).
    pub line: usize,
}

/// Why a text could not be read: the line and what was wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ParseError {
    /// 1-based line.
    pub line: usize,
    /// What was expected or found.
    pub message: String,
}

/// Parses a whole text-format message.
pub fn parse(text: &str) -> Result<Vec<Field>, ParseError> {
    if text.len() > MAX_BYTES {
        return Err(ParseError {
            line: 1,
            message: format!("it is larger than {MAX_BYTES} bytes"),
        });
    }
    let mut p = Parser {
        s: text.as_bytes(),
        pos: 0,
        line: 1,
    };
    let fields = p.message(None, 0)?;
    Ok(fields)
}

struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
    line: usize,
}

impl Parser<'_> {
    fn err<T>(&self, message: impl Into<String>) -> Result<T, ParseError> {
        Err(ParseError {
            line: self.line,
            message: message.into(),
        })
    }

    /// Skips whitespace and comments.
    fn skip(&mut self) {
        while let Some(&c) = self.s.get(self.pos) {
            match c {
                b'\n' => {
                    self.line += 1;
                    self.pos += 1;
                }
                b' ' | b'\t' | b'\r' => self.pos += 1,
                b'#' => {
                    while self.s.get(self.pos).is_some_and(|&c| c != b'\n') {
                        self.pos += 1;
                    }
                }
                _ => break,
            }
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip();
        self.s.get(self.pos).copied()
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// Fields until `close` (or the end of input when `None`).
    fn message(&mut self, close: Option<u8>, depth: usize) -> Result<Vec<Field>, ParseError> {
        if depth > MAX_DEPTH {
            return self.err(format!("messages nest deeper than {MAX_DEPTH}"));
        }
        let mut fields = Vec::new();
        loop {
            match (self.peek(), close) {
                (None, None) => return Ok(fields),
                (None, Some(c)) => return self.err(format!("missing '{}'", c as char)),
                (Some(c), Some(want)) if c == want => {
                    self.pos += 1;
                    return Ok(fields);
                }
                _ => {}
            }
            let line = self.line;
            let name = self.ident()?;
            let colon = self.eat(b':');
            match self.peek() {
                Some(open @ (b'{' | b'<')) => {
                    self.pos += 1;
                    let close = if open == b'{' { b'}' } else { b'>' };
                    let value = Value::Message(self.message(Some(close), depth + 1)?);
                    fields.push(Field { name, value, line });
                }
                Some(b'[') => {
                    self.pos += 1;
                    self.list(&name, line, depth + 1, &mut fields)?;
                }
                _ if colon => {
                    let value = Value::Scalar(self.scalar()?);
                    fields.push(Field { name, value, line });
                }
                _ => return self.err(format!("expected ':' or '{{' after {name:?}")),
            }
            if !self.eat(b',') {
                self.eat(b';');
            }
        }
    }

    /// The elements of `[ … ]` (opening bracket read), each a field named `name`.
    fn list(
        &mut self,
        name: &str,
        line: usize,
        depth: usize,
        fields: &mut Vec<Field>,
    ) -> Result<(), ParseError> {
        if depth > MAX_DEPTH {
            return self.err(format!("messages nest deeper than {MAX_DEPTH}"));
        }
        if self.eat(b']') {
            return Ok(());
        }
        loop {
            let value = match self.peek() {
                Some(open @ (b'{' | b'<')) => {
                    self.pos += 1;
                    let close = if open == b'{' { b'}' } else { b'>' };
                    Value::Message(self.message(Some(close), depth + 1)?)
                }
                Some(_) => Value::Scalar(self.scalar()?),
                None => return self.err("missing ']'"),
            };
            fields.push(Field {
                name: name.to_owned(),
                value,
                line,
            });
            if self.eat(b']') {
                return Ok(());
            }
            if !self.eat(b',') {
                return self.err(format!("expected ',' or ']' in the list {name:?}"));
            }
        }
    }

    fn ident(&mut self) -> Result<String, ParseError> {
        self.skip();
        let start = self.pos;
        while self
            .s
            .get(self.pos)
            .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
        {
            self.pos += 1;
        }
        if start == self.pos || self.s[start].is_ascii_digit() {
            let found = self
                .s
                .get(start)
                .map_or("the end".into(), |&c| format!("{:?}", c as char));
            return self.err(format!("expected a field name, found {found}"));
        }
        Ok(String::from_utf8_lossy(&self.s[start..self.pos]).into_owned())
    }

    fn scalar(&mut self) -> Result<Scalar, ParseError> {
        match self.peek() {
            Some(b'"' | b'\'') => {
                let mut out = Vec::new();
                while let Some(q @ (b'"' | b'\'')) = self.peek() {
                    self.pos += 1;
                    self.string(q, &mut out)?;
                }
                match String::from_utf8(out) {
                    Ok(s) => Ok(Scalar::Str(s)),
                    Err(_) => self.err("a string is not valid UTF-8"),
                }
            }
            Some(_) => {
                let start = self.pos;
                while self.s.get(self.pos).is_some_and(|c| {
                    c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'+' | b'.')
                }) {
                    self.pos += 1;
                }
                if start == self.pos {
                    return self.err(format!(
                        "expected a value, found {:?}",
                        self.s[start] as char
                    ));
                }
                Ok(Scalar::Word(
                    String::from_utf8_lossy(&self.s[start..self.pos]).into_owned(),
                ))
            }
            None => self.err("expected a value, found the end"),
        }
    }

    /// One quoted string (opening quote read) appended to `out`.
    fn string(&mut self, quote: u8, out: &mut Vec<u8>) -> Result<(), ParseError> {
        loop {
            let Some(&c) = self.s.get(self.pos) else {
                return self.err("a string is not closed");
            };
            self.pos += 1;
            match c {
                b'\n' => return self.err("a string is not closed on its line"),
                c if c == quote => return Ok(()),
                b'\\' => {
                    let Some(&e) = self.s.get(self.pos) else {
                        return self.err("a string is not closed");
                    };
                    self.pos += 1;
                    out.push(match e {
                        b'n' => b'\n',
                        b't' => b'\t',
                        b'r' => b'\r',
                        b'0' => 0,
                        b'\\' | b'\'' | b'"' => e,
                        other => {
                            return self.err(format!("unknown escape \\{}", other as char));
                        }
                    });
                }
                c => out.push(c),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn word(s: &str) -> Value {
        Value::Scalar(Scalar::Word(s.into()))
    }

    #[test]
    fn reads_a_triton_config() {
        let text = r#"
            name: "iris"   # the model
            platform: 'onnxruntime_onnx'
            max_batch_size: 8
            input [
              { name: "x", data_type: TYPE_FP32, dims: [ 4 ] },
              {
                name: "y" "z"
                data_type: TYPE_INT64
                dims: [-1, 2]
              }
            ]
            dynamic_batching { preferred_batch_size: [ 4, 8 ]; max_queue_delay_microseconds: 100 }
            version_policy: { latest: { num_versions: 2 } }
            instance_group [ { count: 2 kind: KIND_CPU } ]
            parameters < key: "a" value: < string_value: "b\"c" > >
        "#;
        let fields = parse(text).unwrap();
        let names: Vec<&str> = fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "name",
                "platform",
                "max_batch_size",
                "input",
                "input",
                "dynamic_batching",
                "version_policy",
                "instance_group",
                "parameters"
            ]
        );
        assert_eq!(fields[0].value, Value::Scalar(Scalar::Str("iris".into())));
        assert_eq!(fields[2].value, word("8"));
        let Value::Message(second) = &fields[4].value else {
            panic!()
        };
        assert_eq!(second[0].value, Value::Scalar(Scalar::Str("yz".into())));
        assert_eq!(second[2].value, word("-1"));
        assert_eq!(second[3].value, word("2"));
        assert_eq!(fields[4].line, 5);
        let Value::Message(batching) = &fields[5].value else {
            panic!()
        };
        assert_eq!(batching.len(), 3);
        let Value::Message(p) = &fields[8].value else {
            panic!()
        };
        let Value::Message(v) = &p[1].value else {
            panic!()
        };
        assert_eq!(v[0].value, Value::Scalar(Scalar::Str("b\"c".into())));
    }

    #[test]
    fn empty_lists_and_messages() {
        let fields = parse("a: [] b {} c: []").unwrap();
        assert_eq!(fields.len(), 1);
        assert_eq!(fields[0].value, Value::Message(vec![]));
    }

    #[test]
    fn refusals_name_the_line() {
        for (text, line, needle) in [
            ("name: \"x", 1, "not closed"),
            ("a {\n b: 1\n", 3, "missing '}'"),
            ("a: [1 2]", 1, "expected ',' or ']'"),
            ("\n\n3: 4", 3, "expected a field name"),
            ("a 4", 1, "expected ':'"),
            ("a: \"\\q\"", 1, "unknown escape"),
            ("a:", 1, "expected a value"),
            ("a: }", 1, "expected a value"),
        ] {
            let e = parse(text).unwrap_err();
            assert_eq!(e.line, line, "{text:?}: {e}");
            assert!(e.message.contains(needle), "{text:?}: {e}");
        }
        let deep = "a {".repeat(MAX_DEPTH + 2) + &"}".repeat(MAX_DEPTH + 2);
        assert!(parse(&deep).unwrap_err().message.contains("deeper"));
        let deep_list = "a [".repeat(2) + "]]";
        assert!(parse(&deep_list).is_err());
        assert!(parse(&" ".repeat(MAX_BYTES + 1)).is_err());
    }
}
