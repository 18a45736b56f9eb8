//! The inference request as clients nearly always write it, read by hand: the one-row JSON
//! request was 17 % of the HTTP path's instructions through serde's derived parser, most of
//! it building a `serde_json::Value` per element of `data` only to convert each afterwards.
//!
//! [`decode`] reads a strict subset of the request grammar in one pass and decodes `data`
//! straight into the datatype's vector. It never fails: anything outside the subset, and
//! any request the serde path would refuse, gives `None`, and the caller parses with serde,
//! which names the problem. So what it returns is exactly what the serde path returns for
//! the same bytes; the tests below hold the two equal on generated and mutated requests.
//!
//! The subset: the members `id`, `parameters`, `inputs` and `outputs` at the top, `name`,
//! `datatype`, `shape`, `parameters` and `data` in an input, `name` and `parameters` in an
//! output, each at most once and in any order; strings without escapes; `parameters` values
//! that are booleans, numbers, strings or null; `data` nested at most [`MAX_DEPTH`] deep.

use std::collections::HashMap;

use pier_runtimes::{DataType, Tensor, TensorData};

use super::{Encoding, NamedTensor, tensors};
use crate::serving::Decoded;

/// Deepest nesting of `data` read here (a `[rows][cols]` tensor is 2).
const MAX_DEPTH: usize = 8;

/// The request in `head` (its binary tensors in `binary`), as the serde path decodes it, or
/// `None` where the serde path must decide.
pub(super) fn decode(head: &[u8], binary: &[u8]) -> Option<Decoded<Encoding>> {
    let mut c = Cursor { bytes: head, at: 0 };
    let mut id = None;
    let mut all_binary = None;
    let mut inputs = None;
    let mut outputs = None;
    c.object(|c, key| match key {
        b"id" if id.is_none() => c.string().map(|s| id = Some(s.to_owned())),
        b"parameters" if all_binary.is_none() => {
            all_binary = Some(parameters(c, b"binary_data_output")?.flag()?);
            Some(())
        }
        b"inputs" if inputs.is_none() => {
            let mut list = Vec::with_capacity(1);
            c.array(|c| input(c).map(|i| list.push(i)))?;
            inputs = Some(list);
            Some(())
        }
        b"outputs" if outputs.is_none() => {
            let mut list = Vec::new();
            c.array(|c| output(c).map(|o| list.push(o)))?;
            outputs = Some(list);
            Some(())
        }
        _ => None,
    })?;
    if !c.end() {
        return None;
    }
    let all_binary = all_binary.flatten().unwrap_or(false);
    let inputs = decode_inputs(inputs?, binary)?;
    let mut binary_outputs = HashMap::new();
    let outputs = outputs.map(|list| {
        list.into_iter()
            .map(|(name, binary): (&str, Option<bool>)| {
                binary_outputs.insert(name.to_owned(), binary.unwrap_or(all_binary));
                name.to_owned()
            })
            .collect()
    });
    Some(Decoded {
        inputs,
        outputs,
        extra: Encoding {
            id,
            all_binary,
            binary_outputs,
        },
    })
}

/// An input as written.
struct Input<'a> {
    name: &'a str,
    datatype: DataType,
    shape: Vec<i64>,
    data: Data<'a>,
}

/// Where an input's elements are: in the binary part (`parameters.binary_data_size` bytes),
/// or in `data`, read as it came when its datatype came first (as clients write it), else
/// its bytes, read once the datatype is known.
enum Data<'a> {
    Binary(u64),
    Read(TensorData),
    Later(&'a [u8]),
}

fn input<'a>(c: &mut Cursor<'a>) -> Option<Input<'a>> {
    let (mut name, mut datatype, mut shape, mut binary_size, mut data) =
        (None, None, None, None, None);
    c.object(|c, key| match key {
        b"name" if name.is_none() => c.string().map(|s| name = Some(s)),
        b"datatype" if datatype.is_none() => {
            datatype = Some(DataType::parse(c.string()?).ok()?);
            Some(())
        }
        b"shape" if shape.is_none() => {
            let mut dims = Vec::with_capacity(4);
            c.array(|c| c.number()?.int().map(|d| dims.push(d)))?;
            shape = Some(dims);
            Some(())
        }
        b"parameters" if binary_size.is_none() => {
            binary_size = Some(parameters(c, b"binary_data_size")?.size()?);
            Some(())
        }
        b"data" if data.is_none() => {
            // `"data": null` is no data to the serde path: left to it.
            if c.literal(b"null") {
                return None;
            }
            data = Some(match datatype {
                Some(dtype) => {
                    let declared = shape.as_deref().map_or(0, elements_declared);
                    Data::Read(elements(c, dtype, declared)?)
                }
                None => Data::Later(c.skip_value()?),
            });
            Some(())
        }
        _ => None,
    })?;
    let data = match (binary_size.flatten(), data) {
        (Some(size), None) => Data::Binary(size),
        (None, Some(data)) => data,
        // Both, or neither: the serde path decides (it reads the binary part and ignores
        // `data`, or refuses).
        _ => return None,
    };
    Some(Input {
        name: name?,
        datatype: datatype?,
        shape: shape?,
        data,
    })
}

/// The elements a wire shape declares (0 when it is not a valid one: that is for
/// [`tensors::shape`] to say).
fn elements_declared(shape: &[i64]) -> usize {
    shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(usize::try_from(d).ok()?))
        .unwrap_or(0)
}

/// An output asked for: its name and its `binary_data` parameter.
fn output<'a>(c: &mut Cursor<'a>) -> Option<(&'a str, Option<bool>)> {
    let (mut name, mut binary) = (None, None);
    c.object(|c, key| match key {
        b"name" if name.is_none() => c.string().map(|s| name = Some(s)),
        b"parameters" if binary.is_none() => {
            binary = Some(parameters(c, b"binary_data")?.flag()?);
            Some(())
        }
        _ => None,
    })?;
    Some((name?, binary.flatten()))
}

/// A `parameters` object, of which one member (`wanted`) matters here; the others are
/// read and ignored, as the serde path ignores them.
fn parameters<'a>(c: &mut Cursor<'a>, wanted: &[u8]) -> Option<Param<'a>> {
    let mut found = Param::Absent;
    c.object(|c, key| {
        let value = c.scalar()?;
        if key == wanted {
            // A repeated member: serde_json's map keeps the last; left to it.
            if !matches!(found, Param::Absent) {
                return None;
            }
            found = value;
        } else {
            // The serde path reads every key as a string.
            std::str::from_utf8(key).ok()?;
        }
        Some(())
    })?;
    Some(found)
}

/// A parameter's value.
#[derive(Clone, Copy)]
enum Param<'a> {
    Absent,
    Bool(bool),
    Number(Number<'a>),
    /// A string or null: read, but never what a wanted member may be.
    Other,
}

impl Param<'_> {
    /// A boolean flag (`binary_data_output`, `binary_data`): absent is `None`, anything but
    /// a boolean is the serde path's error.
    fn flag(self) -> Option<Option<bool>> {
        match self {
            Self::Absent => Some(None),
            Self::Bool(b) => Some(Some(b)),
            _ => None,
        }
    }

    /// `binary_data_size`: a byte count.
    fn size(self) -> Option<Option<u64>> {
        match self {
            Self::Absent => Some(None),
            Self::Number(n) => n.uint().map(Some),
            _ => None,
        }
    }
}

fn decode_inputs(inputs: Vec<Input<'_>>, mut binary: &[u8]) -> Option<Vec<NamedTensor>> {
    let mut out = Vec::with_capacity(inputs.len());
    for input in inputs {
        let name = input.name;
        let tensor = match input.data {
            Data::Binary(size) => {
                let size = usize::try_from(size).ok().filter(|&s| s <= binary.len())?;
                let (chunk, rest) = binary.split_at(size);
                binary = rest;
                tensors::from_raw(name, input.datatype, &input.shape, chunk).ok()?
            }
            Data::Read(data) => json_tensor(name, &input.shape, data)?,
            Data::Later(bytes) => {
                let mut c = Cursor { bytes, at: 0 };
                let data = elements(&mut c, input.datatype, elements_declared(&input.shape))?;
                json_tensor(name, &input.shape, c.end().then_some(data)?)?
            }
        };
        out.push(NamedTensor {
            name: name.to_owned(),
            tensor,
        });
    }
    binary.is_empty().then_some(out)
}

/// `data`'s elements as a tensor of the wire `shape`, when they are as many as it declares.
fn json_tensor(name: &str, shape: &[i64], data: TensorData) -> Option<Tensor> {
    let (dims, count) = tensors::shape(name, shape).ok()?;
    if data.len() != count {
        return None;
    }
    Tensor::new(dims, data).ok()
}

/// A `data` value (flat or nested) as `dtype`'s vector, when its elements are all valid for
/// it. Room for the `declared` elements is reserved first, bounded by what was sent: every
/// element takes at least two bytes (itself and a comma).
fn elements(c: &mut Cursor<'_>, dtype: DataType, declared: usize) -> Option<TensorData> {
    fn read<'a, T>(
        c: &mut Cursor<'a>,
        capacity: usize,
        one: impl FnMut(&mut Cursor<'a>) -> Option<T>,
    ) -> Option<Vec<T>> {
        let mut out = Vec::with_capacity(capacity);
        c.nested(MAX_DEPTH, &mut out, one)?;
        Some(out)
    }
    fn int<T: TryFrom<i64>>(c: &mut Cursor<'_>) -> Option<T> {
        T::try_from(c.number()?.int()?).ok()
    }
    let capacity = declared.min((c.bytes.len() - c.at) / 2 + 1);
    Some(match dtype {
        DataType::Bool => TensorData::Bool(read(c, capacity, Cursor::boolean)?),
        DataType::Uint8 => TensorData::Uint8(read(c, capacity, int)?),
        DataType::Int8 => TensorData::Int8(read(c, capacity, int)?),
        DataType::Int16 => TensorData::Int16(read(c, capacity, int)?),
        DataType::Int32 => TensorData::Int32(read(c, capacity, int)?),
        DataType::Int64 => TensorData::Int64(read(c, capacity, int)?),
        // JSON numbers are read as f64 and narrowed, as the serde path does.
        DataType::Fp32 => {
            TensorData::Fp32(read(c, capacity, |c| c.float_or_null().map(|x| x as f32))?)
        }
        DataType::Fp64 => TensorData::Fp64(read(c, capacity, Cursor::float_or_null)?),
        DataType::Bytes => TensorData::Bytes(read(c, capacity, |c| {
            c.string().map(|s| s.as_bytes().to_vec())
        })?),
    })
}

/// A JSON number, checked against JSON's grammar, with its digits read.
#[derive(Clone, Copy)]
struct Number<'a> {
    /// The number as written (ASCII).
    text: &'a [u8],
    negative: bool,
    /// Its digits as an integer, sign, point and exponent aside, when there are at most 19
    /// of them (`exact`).
    digits: u64,
    exact: bool,
    /// The power of ten `digits` is scaled by: the exponent less the fraction's digits
    /// (saturating far beyond any exponent f64 has).
    scale: i32,
    /// No fraction and no exponent.
    integral: bool,
}

/// The powers of ten an f64 holds exactly.
const EXACT_POWERS: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

impl Number<'_> {
    /// As serde_json's `as_i64` reads it: an integer in `i64`'s range. `-0` is not one
    /// (serde_json reads it as the float -0.0). An integer past 19 digits is past `i64`.
    fn int(self) -> Option<i64> {
        if !self.integral || !self.exact {
            return None;
        }
        match (self.negative, self.digits) {
            (true, 0) => None,
            (true, d) if d <= i64::MIN.unsigned_abs() => Some((d as i64).wrapping_neg()),
            (false, d) => i64::try_from(d).ok(),
            _ => None,
        }
    }

    /// As `as_u64` reads it: a non-negative integer in `u64`'s range.
    fn uint(self) -> Option<u64> {
        if !self.integral || self.negative {
            return None;
        }
        if self.exact {
            return Some(self.digits);
        }
        std::str::from_utf8(self.text).ok()?.parse().ok()
    }

    /// As `as_f64` reads it: the nearest f64. With digits below 2^53 and a power of ten
    /// up to 10^22, both exact in an f64, one multiplication or division rounds once, to
    /// the nearest (Clinger's fast path); anything else goes to the standard
    /// library's parse. Both round as serde_json's `float_roundtrip` does, and as an
    /// integer it reads as `i64` or `u64` and converts. A number out of f64's range is
    /// serde_json's error, and an underflow to zero is left to it too.
    fn float(self) -> Option<f64> {
        if self.exact && self.digits < 1 << 53 && self.scale.unsigned_abs() < 23 {
            let digits = self.digits as f64;
            let power = EXACT_POWERS[self.scale.unsigned_abs() as usize];
            let x = if self.scale < 0 {
                digits / power
            } else {
                digits * power
            };
            return Some(if self.negative { -x } else { x });
        }
        let x: f64 = std::str::from_utf8(self.text).ok()?.parse().ok()?;
        let mut mantissa = self.text.iter().take_while(|&&b| b != b'e' && b != b'E');
        if x.is_infinite() || (x == 0.0 && mantissa.any(|b| (b'1'..=b'9').contains(b))) {
            return None;
        }
        Some(x)
    }
}

/// The value of the eight ASCII digits `bytes` starts with, when it starts with eight
/// (the SWAR conversion fast_float and simdjson use: one load, a test, three multiplies).
fn eight_digits(bytes: &[u8]) -> Option<u64> {
    let chunk = u64::from_le_bytes(*bytes.first_chunk::<8>()?);
    // A byte is a digit when adding 0x46 leaves its top bit clear (it is at most 0x39)
    // and so does subtracting 0x30 (it is at least 0x30).
    let outside =
        chunk.wrapping_add(0x4646_4646_4646_4646) | chunk.wrapping_sub(0x3030_3030_3030_3030);
    if outside & 0x8080_8080_8080_8080 != 0 {
        return None;
    }
    // Digit values, then pairs, quads and the eight combined (the first byte is the most
    // significant digit).
    let v = chunk - 0x3030_3030_3030_3030;
    let v = (v * 10 + (v >> 8)) & 0x00FF_00FF_00FF_00FF;
    let v = (v * 100 + (v >> 16)) & 0x0000_FFFF_0000_FFFF;
    Some((v * 10_000 + (v >> 32)) & 0xFFFF_FFFF)
}

/// A position in the JSON text. Every reader returns `None` for anything outside the
/// subset, leaving the cursor wherever it stopped (the whole parse is then abandoned).
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    /// The next byte after JSON whitespace, not consumed.
    fn peek(&mut self) -> Option<u8> {
        while let Some(&b) = self.bytes.get(self.at) {
            if !matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
                return Some(b);
            }
            self.at += 1;
        }
        None
    }

    /// Consumes `b` if it comes next.
    fn eat(&mut self, b: u8) -> bool {
        let next = self.peek() == Some(b);
        self.at += usize::from(next);
        next
    }

    /// Nothing but whitespace is left.
    fn end(&mut self) -> bool {
        self.peek().is_none()
    }

    /// `{ "key": value, … }`, each member read by `member` (keys as written: a key that
    /// matters here is ASCII, so its bytes are compared).
    fn object(&mut self, mut member: impl FnMut(&mut Self, &'a [u8]) -> Option<()>) -> Option<()> {
        if !self.eat(b'{') {
            return None;
        }
        if self.eat(b'}') {
            return Some(());
        }
        loop {
            let key = self.text()?;
            if !self.eat(b':') {
                return None;
            }
            member(self, key)?;
            if !self.eat(b',') {
                return self.eat(b'}').then_some(());
            }
        }
    }

    /// `[ item, … ]`, each item read by `item`.
    fn array(&mut self, mut item: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        if !self.eat(b'[') {
            return None;
        }
        if self.eat(b']') {
            return Some(());
        }
        loop {
            item(self)?;
            if !self.eat(b',') {
                return self.eat(b']').then_some(());
            }
        }
    }

    /// A value that is an element or an array of them, nested at most `depth` deep, its
    /// elements appended to `out` in order (nesting is not checked against the shape, as
    /// the serde path flattens it too).
    fn nested<T>(
        &mut self,
        depth: usize,
        out: &mut Vec<T>,
        mut one: impl FnMut(&mut Self) -> Option<T>,
    ) -> Option<()> {
        fn walk<'a, T>(
            c: &mut Cursor<'a>,
            depth: usize,
            out: &mut Vec<T>,
            one: &mut impl FnMut(&mut Cursor<'a>) -> Option<T>,
        ) -> Option<()> {
            if c.peek()? != b'[' {
                return one(c).map(|x| out.push(x));
            }
            let depth = depth.checked_sub(1)?;
            c.array(|c| walk(c, depth, out, one))
        }
        walk(self, depth, out, &mut one)
    }

    /// A string's bytes, when it has no escape and no control character (not yet checked
    /// to be UTF-8).
    fn text(&mut self) -> Option<&'a [u8]> {
        if !self.eat(b'"') {
            return None;
        }
        let rest = &self.bytes[self.at..];
        let len = rest
            .iter()
            .position(|&b| b == b'"' || b == b'\\' || b < 0x20)?;
        if rest[len] != b'"' {
            return None;
        }
        self.at += len + 1;
        Some(&rest[..len])
    }

    /// A string with no escape and no control character.
    fn string(&mut self) -> Option<&'a str> {
        std::str::from_utf8(self.text()?).ok()
    }

    /// A number: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
    fn number(&mut self) -> Option<Number<'a>> {
        self.peek()?;
        let start = self.at;
        let negative = self.bytes[self.at] == b'-';
        self.at += usize::from(negative);
        let (mut digits, mut count, mut scale) = (0u64, 0u32, 0i32);
        // Reads a run of digits into `digits`; returns how many there were.
        let mut run = |c: &mut Self, fraction: bool| {
            let from = c.at;
            // Eight at a time while they fit in the 19 kept (a float's text is often 17).
            while count <= 11 {
                let Some(eight) = c.bytes.get(c.at..).and_then(eight_digits) else {
                    break;
                };
                digits = digits * 100_000_000 + eight;
                scale -= 8 * i32::from(fraction);
                count += 8;
                c.at += 8;
            }
            while let Some(&b) = c.bytes.get(c.at).filter(|b| b.is_ascii_digit()) {
                if count < 19 {
                    digits = digits * 10 + u64::from(b - b'0');
                    scale -= i32::from(fraction);
                }
                count += 1;
                c.at += 1;
            }
            c.at - from
        };
        match self.bytes.get(self.at)? {
            // A leading zero adds nothing to the digits.
            b'0' => self.at += 1,
            b'1'..=b'9' => {
                run(self, false);
            }
            _ => return None,
        }
        let mut integral = true;
        if self.bytes.get(self.at) == Some(&b'.') {
            self.at += 1;
            integral = false;
            if run(self, true) == 0 {
                return None;
            }
        }
        if matches!(self.bytes.get(self.at), Some(b'e' | b'E')) {
            self.at += 1;
            integral = false;
            let minus = self.bytes.get(self.at) == Some(&b'-');
            self.at += usize::from(matches!(self.bytes.get(self.at), Some(b'+' | b'-')));
            let from = self.at;
            let mut exponent = 0i32;
            while let Some(&b) = self.bytes.get(self.at).filter(|b| b.is_ascii_digit()) {
                exponent = (exponent * 10 + i32::from(b - b'0')).min(100_000);
                self.at += 1;
            }
            if self.at == from {
                return None;
            }
            scale += if minus { -exponent } else { exponent };
        }
        Some(Number {
            text: &self.bytes[start..self.at],
            negative,
            digits,
            exact: count <= 19,
            scale,
            integral,
        })
    }

    /// `literal` if it comes next.
    fn literal(&mut self, literal: &[u8]) -> bool {
        self.peek();
        let next = self.bytes[self.at..].starts_with(literal);
        if next {
            self.at += literal.len();
        }
        next
    }

    fn boolean(&mut self) -> Option<bool> {
        if self.literal(b"true") {
            Some(true)
        } else if self.literal(b"false") {
            Some(false)
        } else {
            None
        }
    }

    /// A float element: a number, or `null` for a missing value (NaN).
    fn float_or_null(&mut self) -> Option<f64> {
        if self.literal(b"null") {
            return Some(f64::NAN);
        }
        self.number()?.float()
    }

    /// A parameter's value.
    fn scalar(&mut self) -> Option<Param<'a>> {
        Some(match self.peek()? {
            b'"' => self.string().map(|_| Param::Other)?,
            b't' | b'f' => Param::Bool(self.boolean()?),
            b'n' => self.literal(b"null").then_some(Param::Other)?,
            _ => Param::Number(self.number()?),
        })
    }

    /// Steps over one value without reading it, returning its bytes: an array's brackets
    /// are matched (strings inside skipped), a scalar runs to the next `,`, `]`, `}` or
    /// whitespace. Braces are not matched: a value with an object in it is not `data` the
    /// subset reads, and whoever reads the bytes refuses them.
    fn skip_value(&mut self) -> Option<&'a [u8]> {
        let first = self.peek()?;
        let start = self.at;
        if first != b'[' {
            let end = self.bytes[start..]
                .iter()
                .position(|b| matches!(b, b',' | b']' | b'}' | b' ' | b'\t' | b'\n' | b'\r'))
                .unwrap_or(self.bytes.len() - start);
            self.at = start + end;
            return (end > 0).then(|| &self.bytes[start..self.at]);
        }
        let mut depth = 0usize;
        loop {
            let rest = &self.bytes[self.at..];
            let i = memchr::memchr3(b'[', b']', b'"', rest)?;
            self.at += i + 1;
            match rest[i] {
                b'[' => depth += 1,
                b']' => {
                    depth -= 1;
                    if depth == 0 {
                        return Some(&self.bytes[start..self.at]);
                    }
                }
                _ => loop {
                    // Inside a string: to its closing quote, over escapes (an escaped
                    // byte is never the closing quote).
                    let rest = self.bytes.get(self.at..)?;
                    let i = memchr::memchr2(b'"', b'\\', rest)?;
                    self.at += i + 1;
                    if rest[i] == b'"' {
                        break;
                    }
                    self.at += 1;
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::super::decode_with_serde;
    use super::*;

    /// A decoded request as text, its map of binary outputs in key order.
    fn canonical(d: &Decoded<Encoding>) -> String {
        let binary: BTreeMap<_, _> = d.extra.binary_outputs.iter().collect();
        format!(
            "{:?} {:?} {:?} {} {binary:?}",
            d.inputs, d.outputs, d.extra.id, d.extra.all_binary
        )
    }

    /// Checks that the hand parser, where it takes `head`, decodes it exactly as the serde
    /// path does; says whether it took it.
    fn agrees(head: &[u8], binary: &[u8]) -> bool {
        let Some(fast) = decode(head, binary) else {
            return false;
        };
        let text = String::from_utf8_lossy(head);
        let serde = decode_with_serde(head, binary)
            .unwrap_or_else(|e| panic!("the hand parser took {text} but serde refuses: {e}"));
        assert_eq!(canonical(&fast), canonical(&serde), "on {text}");
        true
    }

    /// Requests as tritonclient, KServe's client, `pier loadtest` and curl users write them.
    const COMMON: &[&str] = &[
        // tritonclient 2.x (`generate_request_body`, JSON data, one output asked in binary).
        r#"{"id":"7","inputs":[{"name":"X","shape":[2,4],"datatype":"FP32","data":[5.099999904632568,3.5,1.399999976158142,0.20000000298023224,6.199999809265137,2.9000000953674316,4.300000190734863,1.2999999523162842]}],"outputs":[{"name":"label","parameters":{"binary_data":false}},{"name":"probabilities","parameters":{"binary_data":true}}]}"#,
        r#"{"inputs":[{"name":"X","datatype":"FP32","shape":[1,4],"data":[5.1,3.5,1.4,0.2]}]}"#,
        r#"{"inputs": [{"name": "INPUT0", "shape": [2, 3], "datatype": "INT64", "parameters": {}, "data": [1, -2, 3, 4, 5, 9223372036854775807]}], "outputs": [{"name": "OUTPUT0", "parameters": {"binary_data": false}}]}"#,
        r#"{"id":"req-7","parameters":{"binary_data_output":true,"priority":2,"tag":"a","x":null},"inputs":[{"name":"X","datatype":"FP64","shape":[2,2],"data":[[1e-3,-0.0],[null,12345678901234567890]]}]}"#,
        "{\n  \"inputs\" : [ {\n    \"data\" : [ true, false ],\n    \"name\" : \"b\",\n    \"datatype\" : \"BOOL\",\n    \"shape\" : [ 2 ]\n  } ]\n}\n",
        r#"{"inputs":[{"name":"s","datatype":"BYTES","shape":[2],"data":["héllo",""]},{"name":"u","datatype":"UINT8","shape":[1],"data":[255]},{"name":"i","datatype":"INT8","shape":[1],"data":[-128]}]}"#,
        r#"{"inputs":[{"name":"X","datatype":"FP32","shape":[1,4],"data":[[5,3,1,0]]},{"name":"e","datatype":"INT16","shape":[0],"data":[]},{"name":"one","datatype":"INT32","shape":[],"data":7}],"outputs":[{"name":"a"},{"name":"b","parameters":{"binary_data":true}}]}"#,
    ];

    #[test]
    fn common_requests_take_the_hand_parser_and_decode_as_serde_does() {
        for head in COMMON {
            assert!(agrees(head.as_bytes(), &[]), "left to serde: {head}");
        }
        // The binary extension: the JSON part, then each input's bytes.
        let head = br#"{"inputs":[{"name":"X","shape":[1,2],"datatype":"FP32","parameters":{"binary_data_size":8}},{"name":"Y","shape":[1],"datatype":"INT64","parameters":{"binary_data_size":8}}],"parameters":{"binary_data_output":true}}"#;
        let mut binary = [1.5f32.to_le_bytes(), (-2.0f32).to_le_bytes()].concat();
        binary.extend(7i64.to_le_bytes());
        assert!(agrees(head, &binary));
    }

    /// Requests at the subset's edges and past them: where the hand parser takes one, it
    /// decodes it as serde does; where serde refuses one, the hand parser leaves it.
    #[test]
    fn edge_cases_are_decoded_as_serde_does_or_left_to_it() {
        let input = |datatype: &str, shape: &str, data: &str| {
            format!(
                r#"{{"inputs":[{{"name":"x","datatype":"{datatype}","shape":{shape},"data":{data}}}]}}"#
            )
        };
        let mut heads = vec![];
        for number in [
            "-0",
            "0",
            "-0.0",
            "0e999999",
            "1e400",
            "-1e400",
            "1e-400",
            "5e-324",
            "2.4703282292062328e-324",
            "2.2250738585072011e-308",
            "1.7976931348623157e308",
            "1.7976931348623158e308",
            "1.7976931348623159e308",
            "18446744073709551615",
            "18446744073709551616",
            "-9223372036854775808",
            "-9223372036854775809",
            "9223372036854775807",
            "9223372036854775808",
            "1.0",
            "1E2",
            "1e+2",
            "0.1",
            "3.4028235e38",
            "3.4028236e38",
            "1e39",
            "01",
            "-",
            "1.",
            ".5",
            "+1",
            "1e",
            "0x10",
            "NaN",
            "Infinity",
            "300",
            "-129",
            "65536",
            "null",
            "true",
            "\"1\"",
        ] {
            for datatype in [
                "FP32", "FP64", "INT64", "INT32", "INT16", "INT8", "UINT8", "BOOL", "BYTES",
            ] {
                heads.push(input(datatype, "[1]", &format!("[{number}]")));
            }
        }
        for (shape, data) in [
            ("[2]", "[1]"),
            ("[1]", "[1,2]"),
            ("[-1]", "[1]"),
            ("[1.0]", "[1]"),
            ("[]", "[]"),
            ("[0]", "[]"),
            ("[1]", "[[[[[[[[1]]]]]]]]"),
            ("[1]", "[[[[[[[[[1]]]]]]]]]"),
            ("[2]", "[[1],[2]"),
            ("[2]", "[1,2,]"),
            ("[2]", "[1 2]"),
            ("[1]", "[{}]"),
            ("[1]", "{\"a\":1}"),
            ("[1]", "null"),
            ("[1]", "[\"a]\"]"),
            ("[1]", "[1]]"),
            ("[268435457]", "[1]"),
            ("[9223372036854775807,2]", "[1]"),
        ] {
            for datatype in ["FP32", "INT64", "BYTES"] {
                heads.push(input(datatype, shape, data));
            }
        }
        heads.extend(
            [
                r#"{"inputs":[{"name":"x","name":"y","datatype":"FP32","shape":[1],"data":[1]}]}"#,
                r#"{"inputs":[{"name":"x","datatype":"FP32","shape":[1],"data":[1],"extra":1}]}"#,
                r#"{"inputs":[{"name":"x\"","datatype":"FP32","shape":[1],"data":[1]}]}"#,
                r#"{"inputs":[{"name":"x\u0041","datatype":"FP32","shape":[1],"data":[1]}]}"#,
                "{\"inputs\":[{\"name\":\"x\ty\",\"datatype\":\"FP32\",\"shape\":[1],\"data\":[1]}]}",
                r#"{"inputs":[{"name":"x","datatype":"fp32","shape":[1],"data":[1]}]}"#,
                r#"{"inputs":[{"name":"x","datatype":"FP32","shape":[1]}]}"#,
                r#"{"inputs":[{"name":"x","datatype":"FP32","shape":[1],"data":null}]}"#,
                r#"{"inputs":[{"datatype":"FP32","shape":[1],"data":[1]}]}"#,
                r#"{"inputs":[{"name":"x","datatype":"FP32","shape":[1],"data":[1],"parameters":{"binary_data_size":4}}]}"#,
                r#"{"inputs":[{"name":"x","datatype":"FP32","shape":[1],"parameters":{"binary_data_size":4}}]}"#,
                r#"{"inputs":[{"name":"x","datatype":"FP32","shape":[1],"data":[1]}],"parameters":{"binary_data_output":1}}"#,
                r#"{"inputs":[{"name":"x","datatype":"FP32","shape":[1],"data":[1]}],"parameters":{"binary_data_output":true,"binary_data_output":false}}"#,
                r#"{"inputs":[{"name":"x","datatype":"FP32","shape":[1],"data":[1]}],"parameters":{"nested":{"a":1}}}"#,
                r#"{"inputs":[{"name":"x","datatype":"FP32","shape":[1],"data":[1]}],"outputs":null}"#,
                r#"{"inputs":[{"name":"x","datatype":"FP32","shape":[1],"data":[1]}],"outputs":[{"name":"a"},{"name":"a","parameters":{"binary_data":true}}]}"#,
                r#"{"inputs":[{"name":"x","datatype":"FP32","shape":[1],"data":[1]}],"outputs":[{"parameters":{}}]}"#,
                r#"{"inputs":[{"name":"x","datatype":"FP32","shape":[1],"data":[1]}],"id":null}"#,
                r#"{"inputs":[{"name":"x","datatype":"FP32","shape":[1],"data":[1]}],"id":"a","id":"b"}"#,
                r#"{"inputs":[{"name":"x","datatype":"FP32","shape":[1],"data":[1]}]} x"#,
                r#"{"inputs":[{"name":"x","datatype":"FP32","shape":[1],"data":[1]}]}}"#,
                r#"{"inputs":[]}"#,
                r#"{"inputs":{}}"#,
                r#"{}"#,
                r#"[]"#,
                "",
                "\u{feff}{\"inputs\":[]}",
            ]
            .map(str::to_owned),
        );
        for head in &heads {
            agrees(head.as_bytes(), &[]);
        }
        // The subset covers the edges of the ordinary values, not only the refusals.
        for (datatype, number) in [
            ("FP64", "-0"),
            ("FP64", "5e-324"),
            ("FP64", "0e999999"),
            ("FP64", "18446744073709551616"),
            ("FP64", "1.7976931348623158e308"),
            ("FP32", "1E2"),
            ("FP32", "3.4028236e38"),
            ("FP32", "null"),
            ("INT64", "-9223372036854775808"),
            ("UINT8", "0"),
            ("INT8", "-0"),
            ("BOOL", "true"),
            ("BYTES", "\"1\""),
        ] {
            let head = input(datatype, "[1]", &format!("[{number}]"));
            let taken = agrees(head.as_bytes(), &[]);
            // serde_json reads `-0` as a float, which no integer type takes.
            assert_eq!(taken, number != "-0" || datatype == "FP64", "{head}");
        }
        // Binary parts that do not add up are left to serde.
        let head = br#"{"inputs":[{"name":"X","shape":[1],"datatype":"FP32","parameters":{"binary_data_size":4}}]}"#;
        for binary in [&[][..], &[0; 3], &[0; 5]] {
            assert!(!agrees(head, binary));
        }
        assert!(agrees(head, &[0; 4]));
    }

    /// Every cut and every one-byte change of the common requests is decoded as serde
    /// decodes it, or left to serde.
    #[test]
    fn truncated_and_altered_requests_are_decoded_as_serde_does_or_left_to_it() {
        for head in COMMON {
            let head = head.as_bytes();
            for cut in 0..head.len() {
                agrees(&head[..cut], &[]);
                let mut without = head.to_vec();
                without.remove(cut);
                agrees(&without, &[]);
                for b in [
                    b'"', b'\\', b'[', b']', b'{', b'}', b',', b':', b'0', b'-', b'e', b' ', 0,
                    0xff,
                ] {
                    let mut altered = head.to_vec();
                    altered[cut] = b;
                    agrees(&altered, &[]);
                }
            }
        }
    }

    #[test]
    fn eight_digits_are_read_at_once_and_nothing_else_is() {
        assert_eq!(eight_digits(b"12345678"), Some(12_345_678));
        assert_eq!(eight_digits(b"00000000x"), Some(0));
        assert_eq!(eight_digits(b"99999999"), Some(99_999_999));
        assert_eq!(eight_digits(b"1234567"), None);
        for i in 0..8 {
            for b in [b'/', b':', b'.', b'e', b'-', 0, 0x80, 0xb0, 0xff] {
                let mut text = *b"12345678";
                text[i] = b;
                assert_eq!(eight_digits(&text), None, "{text:?}");
            }
        }
        for n in [0u64, 1, 7, 10_000_000, 31_415_926, 90_000_009] {
            assert_eq!(eight_digits(format!("{n:08}").as_bytes()), Some(n));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Any number JSON allows, as every datatype: decoded as serde decodes it; and a
        /// float whose value is in f64's normal range always takes the hand parser.
        #[test]
        fn numbers_are_read_as_serde_reads_them(
            number in r"-?(0|[1-9][0-9]{0,24})(\.[0-9]{1,24})?([eE][+-]?[0-9]{1,3})?",
            datatype in prop::sample::select(vec!["FP32", "FP64", "INT64", "INT32", "UINT8"]),
        ) {
            let head = format!(r#"{{"inputs":[{{"name":"x","datatype":"{datatype}","shape":[1],"data":[{number}]}}]}}"#);
            let taken = agrees(head.as_bytes(), &[]);
            let value: f64 = number.parse().unwrap();
            if datatype == "FP64" && value.is_normal() {
                prop_assert!(taken, "{number} left to serde");
            }
        }

        /// Requests built from the subset's parts, in any order and spacing, with any of
        /// their members missing: decoded as serde decodes them, or left to it.
        #[test]
        fn assembled_requests_are_decoded_as_serde_does_or_left_to_it(
            members in prop::collection::vec(prop::sample::select(vec![
                r#""name":"x""#, r#""name":"y""#, r#""datatype":"FP32""#, r#""datatype":"INT64""#,
                r#""datatype":"BYTES""#, r#""shape":[2]"#, r#""shape":[1,2]"#, r#""shape":[3]"#,
                r#""data":[1,2]"#, r#""data":[[1.5],[null]]"#, r#""data":["a","b"]"#,
                r#""parameters":{}"#, r#""parameters":{"binary_data_size":8}"#,
            ]), 0..7),
            top in prop::collection::vec(prop::sample::select(vec![
                r#""id":"1""#, r#""parameters":{"binary_data_output":true}"#,
                r#""parameters":{"binary_data_output":false,"k":"v"}"#,
                r#""outputs":[{"name":"o"}]"#, r#""outputs":[{"name":"o","parameters":{"binary_data":true}}]"#,
            ]), 0..3),
            space in prop::sample::select(vec!["", " ", "\n\t", "\r\n  "]),
            binary_len in prop::sample::select(vec![0usize, 8, 16]),
        ) {
            let sep = format!(",{space}");
            let input = format!("{{{space}{}{space}}}", members.join(&sep));
            let mut parts = vec![format!(r#""inputs":{space}[{input}]"#)];
            parts.extend(top.iter().map(|s| (*s).to_owned()));
            let head = format!("{space}{{{}}}{space}", parts.join(&sep));
            agrees(head.as_bytes(), &vec![0; binary_len]);
        }
    }
}
