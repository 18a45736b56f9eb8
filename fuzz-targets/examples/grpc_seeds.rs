//! Writes the hand-made seeds of the `grpc_model_infer` corpus (protobuf
//! `inference.ModelInferRequest` messages) into `fuzz/corpus/grpc_model_infer/`.
//!
//! `cargo run -p pier-fuzz-targets --example grpc_seeds`

use std::path::Path;

use pier_proto::inference::model_infer_request::{InferInputTensor, InferRequestedOutputTensor};
use pier_proto::inference::{InferTensorContents, ModelInferRequest};
use prost::Message;

fn input(name: &str, datatype: &str, shape: &[i64]) -> InferInputTensor {
    InferInputTensor {
        name: name.into(),
        datatype: datatype.into(),
        shape: shape.to_vec(),
        ..Default::default()
    }
}

fn main() {
    let iris: Vec<f32> = vec![5.1, 3.5, 1.4, 0.2, 6.7, 3.0, 5.2, 2.3];
    let raw: Vec<u8> = iris.iter().flat_map(|x| x.to_le_bytes()).collect();
    let seeds = [
        (
            "seed-raw-fp32",
            ModelInferRequest {
                model_name: "demo".into(),
                id: "1".into(),
                inputs: vec![input("X", "FP32", &[2, 4])],
                outputs: vec![InferRequestedOutputTensor {
                    name: "probabilities".into(),
                    ..Default::default()
                }],
                raw_input_contents: vec![raw.clone()],
                ..Default::default()
            },
        ),
        (
            "seed-contents-fp32",
            ModelInferRequest {
                model_name: "demo".into(),
                model_version: "1".into(),
                inputs: vec![InferInputTensor {
                    contents: Some(InferTensorContents {
                        fp32_contents: iris.clone(),
                        ..Default::default()
                    }),
                    ..input("X", "FP32", &[2, 4])
                }],
                ..Default::default()
            },
        ),
        (
            "seed-contents-types",
            ModelInferRequest {
                model_name: "demo".into(),
                inputs: vec![
                    InferInputTensor {
                        contents: Some(InferTensorContents {
                            bool_contents: vec![true, false],
                            ..Default::default()
                        }),
                        ..input("B", "BOOL", &[2])
                    },
                    InferInputTensor {
                        contents: Some(InferTensorContents {
                            int_contents: vec![-129, 127],
                            ..Default::default()
                        }),
                        ..input("I", "INT8", &[2])
                    },
                    InferInputTensor {
                        contents: Some(InferTensorContents {
                            uint_contents: vec![256],
                            ..Default::default()
                        }),
                        ..input("U", "UINT8", &[1])
                    },
                    InferInputTensor {
                        contents: Some(InferTensorContents {
                            bytes_contents: vec![b"abc".to_vec()],
                            ..Default::default()
                        }),
                        ..input("S", "BYTES", &[1])
                    },
                ],
                ..Default::default()
            },
        ),
        (
            "seed-raw-bytes",
            ModelInferRequest {
                model_name: "demo".into(),
                inputs: vec![input("S", "BYTES", &[2]), input("L", "INT64", &[1])],
                raw_input_contents: vec![
                    [&3u32.to_le_bytes()[..], b"abc", &0u32.to_le_bytes()].concat(),
                    (-1i64).to_le_bytes().to_vec(),
                ],
                ..Default::default()
            },
        ),
        (
            "seed-mismatch",
            ModelInferRequest {
                model_name: "demo".into(),
                inputs: vec![input("X", "FP32", &[-1, 4])],
                raw_input_contents: vec![raw[..12].to_vec(), vec![]],
                ..Default::default()
            },
        ),
    ];
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/grpc_model_infer");
    std::fs::create_dir_all(&dir).expect("the corpus folder");
    for (name, message) in seeds {
        std::fs::write(dir.join(name), message.encode_to_vec()).expect("a seed file");
    }
}
