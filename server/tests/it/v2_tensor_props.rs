//! Property tests for the v2 tensor conversions: every datatype survives the binary tensor
//! format (`to_raw` → `from_raw`) and JSON `data` sent as text (`to_json` → text →
//! `from_json`) unchanged, shape included. Floats are finite (JSON has no NaN), and BYTES
//! elements are UTF-8 on the JSON path (`to_json` writes strings).

use pier_runtimes::{Tensor, TensorData};
use pier_server::v2::tensors::{from_json, from_raw, to_json, to_raw, wire_shape};
use proptest::collection::vec;
use proptest::prelude::*;

fn finite_f32() -> impl Strategy<Value = f32> {
    prop_oneof![
        any::<f32>().prop_filter("finite", |x| x.is_finite()),
        Just(f32::MAX),
        Just(f32::from_bits(1)),
    ]
}

fn finite_f64() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>().prop_filter("finite", |x| x.is_finite()),
        Just(f64::MAX),
        Just(f64::from_bits(1)),
        Just(0.1),
    ]
}

fn data(n: usize, utf8: bool) -> BoxedStrategy<TensorData> {
    let bytes = if utf8 {
        vec(any::<String>().prop_map(String::into_bytes), n).boxed()
    } else {
        vec(vec(any::<u8>(), 0..8), n).boxed()
    };
    prop_oneof![
        vec(any::<bool>(), n).prop_map(TensorData::Bool),
        vec(any::<u8>(), n).prop_map(TensorData::Uint8),
        vec(any::<i8>(), n).prop_map(TensorData::Int8),
        vec(any::<i16>(), n).prop_map(TensorData::Int16),
        vec(any::<i32>(), n).prop_map(TensorData::Int32),
        vec(any::<i64>(), n).prop_map(TensorData::Int64),
        vec(finite_f32(), n).prop_map(TensorData::Fp32),
        vec(finite_f64(), n).prop_map(TensorData::Fp64),
        bytes.prop_map(TensorData::Bytes),
    ]
    .boxed()
}

fn tensor(utf8: bool) -> impl Strategy<Value = Tensor> {
    vec(0usize..4, 0..=3).prop_flat_map(move |shape| {
        let n = shape.iter().product();
        data(n, utf8).prop_map(move |d| Tensor::new(shape.clone(), d).expect("a tensor"))
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn raw_round_trips(t in tensor(false)) {
        let back = from_raw("t", t.dtype(), &wire_shape(&t), &to_raw(&t)).expect("decodes");
        prop_assert_eq!(back, t);
    }

    #[test]
    fn json_text_round_trips(t in tensor(true)) {
        let text = serde_json::to_string(&to_json(&t)).expect("serialises");
        let value: serde_json::Value = serde_json::from_str(&text).expect("parses");
        let back = from_json("t", t.dtype(), &wire_shape(&t), &value)
            .unwrap_or_else(|e| panic!("{text}: {e}"));
        prop_assert_eq!(back, t, "{}", text);
    }
}
