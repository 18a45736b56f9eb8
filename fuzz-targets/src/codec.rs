//! The SageMaker content-type decoders ([`pier_runtimes::codec::decode_features`]), fuzzed
//! with and without a known feature count. A body that decodes must give a well-formed
//! `[records, features]` matrix, and encoding that matrix back in the same format must decode
//! to the same values (the encoder writes `f32`s in shortest round-trip form).

use pier_runtimes::codec::{Format, decode_features, encode_outputs};
use pier_runtimes::{JsonLayout, Tensor};

use crate::MAX_INPUT;

/// `text/csv` bodies.
pub fn csv(data: &[u8]) {
    features(Format::Csv, data);
}

/// `application/json` bodies.
pub fn json(data: &[u8]) {
    features(Format::Json, data);
}

/// `application/jsonlines` bodies.
pub fn json_lines(data: &[u8]) {
    features(Format::JsonLines, data);
}

/// The key the decoder reads records from, used to encode them back.
const INSTANCES: JsonLayout = JsonLayout {
    key: "instances",
    always_objects: false,
};

fn features(format: Format, data: &[u8]) {
    if data.len() > MAX_INPUT {
        return;
    }
    // None: records must agree with the first; Some(4): the demo's iris models.
    for expected in [None, Some(4)] {
        let Ok(tensor) = decode_features(format, data, expected) else {
            continue;
        };
        let values = check_matrix(&tensor, expected);
        // The encoder writes any non-finite value as a missing one; compare finite and NaN.
        if values.iter().any(|v| v.is_infinite()) {
            continue;
        }
        let encoded = encode_outputs(format, &[("x", &tensor)], &INSTANCES)
            .unwrap_or_else(|e| panic!("{format}: cannot encode a decoded matrix: {e}"));
        let again = decode_features(format, &encoded, expected).unwrap_or_else(|e| {
            panic!(
                "{format}: re-encoded body {:?} does not decode: {e}",
                String::from_utf8_lossy(&encoded)
            )
        });
        assert_eq!(again.shape(), tensor.shape(), "{format}: shape changed");
        let again = check_matrix(&again, expected);
        for (i, (a, b)) in values.iter().zip(again).enumerate() {
            assert!(
                a == b || (a.is_nan() && b.is_nan()),
                "{format}: value {i} was {a:?}, reads back as {b:?}"
            );
        }
    }
}

/// Checks that `tensor` is a `[records, features]` FP32 matrix and returns its values.
fn check_matrix(tensor: &Tensor, expected: Option<usize>) -> &[f32] {
    let shape = tensor.shape();
    assert_eq!(shape.len(), 2, "features must be a matrix, got {shape:?}");
    assert!(shape[0] > 0, "a decoded body has at least one record");
    if let Some(n) = expected {
        assert_eq!(shape[1], n, "records must have the expected feature count");
    }
    let values = tensor.as_f32().expect("features are FP32");
    assert_eq!(values.len(), shape[0] * shape[1]);
    values
}
