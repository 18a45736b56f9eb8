//! Serial inference pipelines (SageMaker's `Containers` with
//! `InferenceExecutionConfig.Mode = Serial`), in process: each step's answer is the next
//! step's request. As between SageMaker's containers, a step answers in its own accept type
//! (`SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT`) and the next step reads that body as its
//! request, so a pipeline behaves exactly as the same containers chained over HTTP: the codecs
//! run between steps, nothing goes over a socket.

use std::sync::Arc;

use crate::codec::{self, Format};
use crate::error::{Result, RuntimeError};
use crate::model::{JsonLayout, Model};
use crate::signature::Signature;
use crate::tensor::Tensor;

/// One step of a pipeline.
#[derive(Debug)]
pub struct Step {
    /// What the errors call it (the container's hostname, or its position and image).
    pub name: String,
    /// The model.
    pub model: Arc<dyn Model>,
    /// The content type of its answer, which the next step reads.
    pub accept: Format,
}

/// Models run one after the other.
#[derive(Debug)]
pub struct Pipeline {
    steps: Vec<Step>,
    signature: Signature,
}

impl Pipeline {
    /// A pipeline of `steps` (at least two). Every step after the first must take one
    /// input, the feature matrix its predecessor's answer holds.
    pub fn new(steps: Vec<Step>) -> Result<Self> {
        if steps.len() < 2 {
            return Err(RuntimeError::InvalidInput(
                "a serial pipeline needs at least two containers".into(),
            ));
        }
        for step in &steps[1..] {
            let inputs = &step.model.signature().inputs;
            if inputs.len() != 1 {
                return Err(RuntimeError::InvalidInput(format!(
                    "pipeline step {} takes {} inputs; a step after the first reads its predecessor's answer as one feature matrix",
                    step.name,
                    inputs.len()
                )));
            }
        }
        let first = steps[0].model.signature();
        let last = steps[steps.len() - 1].model.signature();
        let signature = Signature {
            inputs: first.inputs.clone(),
            outputs: last.outputs.clone(),
        };
        Ok(Self { steps, signature })
    }

    /// The steps, in order.
    pub fn steps(&self) -> &[Step] {
        &self.steps
    }
}

impl Model for Pipeline {
    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn predict(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        let mut current = inputs;
        let last = self.steps.len() - 1;
        for (i, step) in self.steps.iter().enumerate() {
            let failed = |what: &str, e: String| {
                RuntimeError::Predict(format!(
                    "pipeline step {} ({}) {what}: {e}",
                    i + 1,
                    step.name
                ))
            };
            let outputs = step
                .model
                .predict(current)
                .map_err(|e| failed("failed", e.to_string()))?;
            if i == last {
                return Ok(outputs);
            }
            let names = &step.model.signature().outputs;
            let named: Vec<(&str, &Tensor)> = names
                .iter()
                .map(|s| s.name.as_str())
                .zip(&outputs)
                .collect();
            let body = codec::encode_outputs(step.accept, &named, &step.model.json_layout())
                .map_err(|e| failed("cannot encode its answer", e.to_string()))?;
            let next = &self.steps[i + 1];
            let spec = &next.model.signature().inputs[0];
            let features =
                codec::decode_features(step.accept, &body, spec.features()).map_err(|e| {
                    RuntimeError::Predict(format!(
                        "pipeline step {} ({}) cannot read the {} answer of step {}: {e}",
                        i + 2,
                        next.name,
                        step.accept,
                        i + 1
                    ))
                })?;
            current = vec![features.cast(spec.dtype)?];
        }
        unreachable!("the last step returns")
    }

    fn backend(&self) -> &'static str {
        "pipeline"
    }

    fn accepts_missing(&self) -> bool {
        self.steps[0].model.accepts_missing()
    }

    fn json_layout(&self) -> JsonLayout {
        self.steps[self.steps.len() - 1].model.json_layout()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signature::TensorSpec;
    use crate::tensor::{DataType, TensorData};

    /// Multiplies each of `width` features by `factor`; `outputs` copies of the result.
    #[derive(Debug)]
    struct Scale {
        signature: Signature,
        factor: f32,
    }

    fn scale(width: usize, factor: f32, outputs: usize) -> Arc<dyn Model> {
        let spec = |name: &str| TensorSpec {
            name: name.into(),
            dtype: DataType::Fp32,
            shape: vec![-1, width as i64],
        };
        Arc::new(Scale {
            signature: Signature {
                inputs: vec![spec("x")],
                outputs: (0..outputs).map(|i| spec(&format!("y{i}"))).collect(),
            },
            factor,
        })
    }

    impl Model for Scale {
        fn signature(&self) -> &Signature {
            &self.signature
        }
        fn predict(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
            let x = &inputs[0];
            let TensorData::Fp32(v) = x.data() else {
                return Err(RuntimeError::Predict("fp32 only".into()));
            };
            let y: Vec<f32> = v.iter().map(|a| a * self.factor).collect();
            let t = Tensor::new(x.shape().to_vec(), TensorData::Fp32(y))?;
            Ok(vec![t; self.signature.outputs.len()])
        }
        fn backend(&self) -> &'static str {
            "test"
        }
    }

    fn step(name: &str, model: Arc<dyn Model>, accept: Format) -> Step {
        Step {
            name: name.into(),
            model,
            accept,
        }
    }

    #[test]
    fn each_answer_is_the_next_request_through_the_codecs() {
        let p = Pipeline::new(vec![
            step("a", scale(2, 2.0, 1), Format::Csv),
            step("b", scale(2, 0.5, 1), Format::JsonLines),
            step("c", scale(2, 10.0, 1), Format::Csv),
        ])
        .unwrap();
        assert_eq!(p.signature().inputs[0].name, "x");
        let x = Tensor::new(vec![2, 2], TensorData::Fp32(vec![1.0, 2.0, 3.0, 4.5])).unwrap();
        let y = p.predict(vec![x]).unwrap();
        assert_eq!(y[0].data(), &TensorData::Fp32(vec![10.0, 20.0, 30.0, 45.0]));
        assert_eq!(p.backend(), "pipeline");
    }

    #[test]
    fn a_mismatch_between_steps_names_the_steps() {
        // Step 1 answers 2 outputs of 2 values (4 CSV fields); step 2 reads 2 features.
        let p = Pipeline::new(vec![
            step("scaler", scale(2, 1.0, 2), Format::Csv),
            step("model", scale(2, 1.0, 1), Format::Csv),
        ])
        .unwrap();
        let x = Tensor::new(vec![1, 2], TensorData::Fp32(vec![1.0, 2.0])).unwrap();
        let e = p.predict(vec![x]).unwrap_err().to_string();
        assert!(
            e.contains("pipeline step 2 (model) cannot read the text/csv answer of step 1"),
            "{e}"
        );
        assert!(Pipeline::new(vec![step("only", scale(1, 1.0, 1), Format::Csv)]).is_err());
    }
}
