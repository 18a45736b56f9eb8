//! `SplitType RecordIO` for batch transform: SageMaker's RecordIO framing (MXNet's / dmlc's),
//! read from a stream one record at a time so that records can be batched by
//! `MaxPayloadInMB`, retried alone and named by position. Each frame is the little-endian
//! `u32` magic `0xced7230a`, a little-endian `u32` whose top 3 bits are a continuation flag
//! and low 29 bits the payload's length, the payload, and zero padding to a multiple of 4
//! bytes. Flag 0 is a whole record; a record that held the magic was written as parts (1 first,
//! 2 middle, 3 last) and is joined with the magic put back between them, as dmlc's reader does.
//! The records of `application/x-recordio-protobuf` are decoded by the training channels'
//! reader ([`crate::channels::recordio`]), so a transform reads what training reads.

use std::io::Read;

use crate::channels::recordio::{MAGIC, RecordIoReader, write_frame};

/// Reads the next record's payload onto the end of `out`. `Ok(false)` at a clean end of the
/// input (no byte of a next frame); a frame with a bad magic, a payload longer than `limit` in
/// all, or an input ending inside a frame is an error saying so.
pub fn read_record(input: &mut dyn Read, out: &mut Vec<u8>, limit: usize) -> Result<bool, String> {
    let start = out.len();
    let mut first = true;
    loop {
        let mut header = [0u8; 8];
        let got = read_full(input, &mut header)?;
        if got == 0 && first {
            return Ok(false);
        }
        if got < 8 {
            return Err(format!(
                "the input ends inside a RecordIO frame header ({got} of 8 bytes)"
            ));
        }
        let magic = u32::from_le_bytes(header[..4].try_into().unwrap_or_default());
        if magic != MAGIC {
            return Err(format!(
                "not a RecordIO frame: magic {magic:#010x}, expected {MAGIC:#010x}"
            ));
        }
        let word = u32::from_le_bytes(header[4..].try_into().unwrap_or_default());
        let (flag, len) = (word >> 29, (word & ((1 << 29) - 1)) as usize);
        let valid = if first {
            flag == 0 || flag == 1
        } else {
            flag == 2 || flag == 3
        };
        if !valid {
            return Err(format!(
                "a RecordIO frame with continuation flag {flag} where a {} was expected",
                if first {
                    "record"
                } else {
                    "record's next part"
                }
            ));
        }
        if out.len() - start + len > limit {
            return Err(format!(
                "a RecordIO record longer than MaxPayloadInMB ({} MB)",
                limit >> 20
            ));
        }
        let at = out.len();
        out.resize(at + len, 0);
        let got = read_full(input, &mut out[at..])?;
        if got < len {
            out.truncate(start);
            return Err(format!(
                "the input ends inside a RecordIO record ({got} of {len} bytes)"
            ));
        }
        let pad = (4 - len % 4) % 4;
        let mut padding = [0u8; 3];
        if read_full(input, &mut padding[..pad])? < pad {
            return Err("the input ends inside a RecordIO frame's padding".into());
        }
        if flag == 0 || flag == 3 {
            return Ok(true);
        }
        out.extend_from_slice(&MAGIC.to_le_bytes());
        first = false;
    }
}

fn read_full(input: &mut dyn Read, buf: &mut [u8]) -> Result<usize, String> {
    let mut got = 0;
    while got < buf.len() {
        match input.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(got)
}

/// The feature rows of recordio-protobuf `records` (each one record's payload) as
/// `(values row-major, width)`; an error names the 1-based record among them.
pub fn protobuf_rows<'a>(
    records: impl IntoIterator<Item = &'a [u8]>,
) -> Result<(Vec<f32>, usize), (usize, String)> {
    let mut reader = RecordIoReader::new(false);
    let mut framed = Vec::new();
    for r in records {
        framed.clear();
        write_frame(&mut framed, r);
        reader.feed(&framed).map_err(|e| (e.record, e.reason))?;
    }
    let (values, width, _) = reader.into_parts();
    Ok((values, width))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three records of two float32 features and a label, as the SageMaker SDK's
    /// `write_numpy_to_dense_tensor([[1.5, 2], [13, 0.25], [3, 4]], [1, 0, 1])` writes them.
    const SDK_DENSE: &str = "0a23d7ce2c0000000a160a0676616c756573120c120a0a080000c03f0000004012120a0676616c756573120812060a040000803f0a23d7ce2c0000000a160a0676616c756573120c120a0a08000050410000803e12120a0676616c756573120812060a04000000000a23d7ce2c0000000a160a0676616c756573120c120a0a08000040400000804012120a0676616c756573120812060a040000803f";

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn records(bytes: &[u8]) -> Result<Vec<Vec<u8>>, String> {
        let mut input = bytes;
        let mut out = Vec::new();
        loop {
            let mut r = Vec::new();
            if !read_record(&mut input, &mut r, 1 << 20)? {
                return Ok(out);
            }
            out.push(r);
        }
    }

    #[test]
    fn the_sdks_dense_records_split_and_decode_to_their_rows() {
        let recs = records(&hex(SDK_DENSE)).unwrap();
        assert_eq!(recs.len(), 3);
        let (rows, width) = protobuf_rows(recs.iter().map(Vec::as_slice)).unwrap();
        assert_eq!((rows, width), (vec![1.5, 2.0, 13.0, 0.25, 3.0, 4.0], 2));
        let (at, reason) = protobuf_rows([&recs[0][..], b"\xff\xff"]).unwrap_err();
        assert_eq!(at, 2, "{reason}");
    }

    #[test]
    fn frames_round_trip_and_split_records_are_joined_with_the_magic() {
        let mut bytes = Vec::new();
        write_frame(&mut bytes, b"abcde");
        assert_eq!(bytes.len(), 8 + 8, "padded to 4");
        // A record holding the magic, written in three parts (flags 1, 2 and 3).
        for (flag, part) in [(1u32, &b"xy"[..]), (2, &b""[..]), (3, &b"z"[..])] {
            bytes.extend_from_slice(&MAGIC.to_le_bytes());
            bytes.extend_from_slice(&((flag << 29) | part.len() as u32).to_le_bytes());
            bytes.extend_from_slice(part);
            bytes.resize(bytes.len() + (4 - part.len() % 4) % 4, 0);
        }
        let recs = records(&bytes).unwrap();
        let mut joined = b"xy".to_vec();
        joined.extend_from_slice(&MAGIC.to_le_bytes());
        joined.extend_from_slice(&MAGIC.to_le_bytes());
        joined.push(b'z');
        assert_eq!(recs, [b"abcde".to_vec(), joined]);
    }

    #[test]
    fn bad_frames_say_what_is_wrong() {
        let good = hex(SDK_DENSE);
        let mut bad_magic = good.clone();
        bad_magic[0] ^= 1;
        assert!(records(&bad_magic).unwrap_err().contains("magic"));
        assert!(
            records(&good[..good.len() - 6])
                .unwrap_err()
                .contains("ends inside")
        );
        assert!(records(&good[..5]).unwrap_err().contains("header"));
        let mut long = Vec::new();
        write_frame(&mut long, &[0u8; 100]);
        let mut r = Vec::new();
        let e = read_record(&mut &long[..], &mut r, 50).unwrap_err();
        assert!(e.contains("MaxPayloadInMB"), "{e}");
        // A middle part with no first part.
        let mut orphan = MAGIC.to_le_bytes().to_vec();
        orphan.extend_from_slice(&(2u32 << 29).to_le_bytes());
        assert!(
            records(&orphan)
                .unwrap_err()
                .contains("continuation flag 2")
        );
    }
}
