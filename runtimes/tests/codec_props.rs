//! Property tests for the content-type codecs: any finite `f32` matrix encoded as CSV, JSON
//! or JSON Lines decodes back to the same shape and values (the encoder writes each value in
//! its shortest round-trip form), with and without the model's feature count.

use pier_runtimes::codec::{Format, decode_features, encode_outputs};
use pier_runtimes::{JsonLayout, Tensor};
use proptest::prelude::*;

/// Rows as the decoders read them: `{"instances": [row, ...]}`.
const INSTANCES: JsonLayout = JsonLayout {
    key: "instances",
    always_objects: false,
};

/// Rows as objects: `{"instances": [{"features": row}, ...]}`.
const FEATURES: JsonLayout = JsonLayout {
    key: "instances",
    always_objects: true,
};

fn finite() -> impl Strategy<Value = f32> {
    prop_oneof![
        any::<f32>().prop_filter("finite", |x| x.is_finite()),
        -1000.0f32..1000.0,
        Just(0.0),
        Just(-0.0),
        Just(f32::MAX),
        Just(f32::MIN_POSITIVE),
        Just(f32::from_bits(1)),
    ]
}

fn matrix() -> impl Strategy<Value = Tensor> {
    (1usize..8, 1usize..6).prop_flat_map(|(rows, cols)| {
        prop::collection::vec(finite(), rows * cols)
            .prop_map(move |values| Tensor::from_f32_rows(rows, cols, values).expect("a matrix"))
    })
}

fn round_trip(format: Format, name: &str, layout: &JsonLayout, t: &Tensor) {
    let body = encode_outputs(format, &[(name, t)], layout).expect("encodes");
    let text = String::from_utf8_lossy(&body);
    for expected in [None, Some(t.shape()[1])] {
        let back = decode_features(format, &body, expected)
            .unwrap_or_else(|e| panic!("{format} {text:?} does not decode: {e}"));
        assert_eq!(back.shape(), t.shape(), "{format} {text:?}");
        let (a, b) = (t.as_f32().unwrap(), back.as_f32().unwrap());
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!(
                x == y,
                "{format}: value {i} {x:?} ({:#x}) reads back as {y:?} ({:#x}) from {text:?}",
                x.to_bits(),
                y.to_bits()
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn csv_round_trips(t in matrix()) {
        round_trip(Format::Csv, "x", &INSTANCES, &t);
    }

    #[test]
    fn json_round_trips(t in matrix()) {
        round_trip(Format::Json, "x", &INSTANCES, &t);
        round_trip(Format::Json, "features", &FEATURES, &t);
    }

    #[test]
    fn json_lines_round_trips(t in matrix()) {
        round_trip(Format::JsonLines, "x", &INSTANCES, &t);
        round_trip(Format::JsonLines, "features", &FEATURES, &t);
    }
}
