//! `Signature`: a model's named, typed inputs and outputs, validated from the manifest.

use pier_model_store::{ManifestSignature, ManifestTensor};

use crate::error::{Result, RuntimeError};
use crate::tensor::{DataType, Tensor};

/// One named input or output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorSpec {
    /// Tensor name.
    pub name: String,
    /// Element type.
    pub dtype: DataType,
    /// Shape; `-1` marks an open dimension.
    pub shape: Vec<i64>,
}

impl TensorSpec {
    /// A spec from parts.
    pub fn new(name: impl Into<String>, dtype: DataType, shape: Vec<i64>) -> Self {
        Self {
            name: name.into(),
            dtype,
            shape,
        }
    }

    /// True when `shape` fits this spec (same rank, fixed dimensions equal).
    pub fn accepts_shape(&self, shape: &[usize]) -> bool {
        shape.len() == self.shape.len()
            && self
                .shape
                .iter()
                .zip(shape)
                .all(|(&want, &got)| want < 0 || want as usize == got)
    }

    /// Number of features per row for a `[-1, n]` spec, if fixed.
    pub fn features(&self) -> Option<usize> {
        match self.shape.as_slice() {
            [_, n] if *n >= 0 => Some(*n as usize),
            _ => None,
        }
    }

    /// Checks a tensor against this spec, naming the tensor in the error.
    pub fn check(&self, tensor: &Tensor) -> Result<()> {
        if tensor.dtype() != self.dtype {
            return Err(RuntimeError::InvalidInput(format!(
                "input {:?} must be {} but is {}",
                self.name,
                self.dtype,
                tensor.dtype()
            )));
        }
        if !self.accepts_shape(tensor.shape()) {
            return Err(RuntimeError::InvalidInput(format!(
                "input {:?} must have shape {:?} (-1 = any) but has {:?}",
                self.name,
                self.shape,
                tensor.shape()
            )));
        }
        Ok(())
    }
}

/// Inputs and outputs of a model, in the order the model takes and gives them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Signature {
    /// Inputs.
    pub inputs: Vec<TensorSpec>,
    /// Outputs.
    pub outputs: Vec<TensorSpec>,
}

impl Signature {
    /// Validates a manifest's signature.
    pub fn from_manifest(m: &ManifestSignature) -> Result<Self> {
        let convert = |t: &ManifestTensor| -> Result<TensorSpec> {
            if t.shape.iter().any(|&d| d < -1) {
                return Err(RuntimeError::InvalidInput(format!(
                    "tensor {:?} has a bad shape {:?}",
                    t.name, t.shape
                )));
            }
            Ok(TensorSpec {
                name: t.name.clone(),
                dtype: DataType::parse(&t.datatype)?,
                shape: t.shape.clone(),
            })
        };
        Ok(Self {
            inputs: m.inputs.iter().map(convert).collect::<Result<_>>()?,
            outputs: m.outputs.iter().map(convert).collect::<Result<_>>()?,
        })
    }

    /// The manifest form.
    pub fn to_manifest(&self) -> ManifestSignature {
        let convert = |t: &TensorSpec| ManifestTensor {
            name: t.name.clone(),
            datatype: t.dtype.as_str().to_owned(),
            shape: t.shape.clone(),
        };
        ManifestSignature {
            inputs: self.inputs.iter().map(convert).collect(),
            outputs: self.outputs.iter().map(convert).collect(),
        }
    }

    /// Position of the input named `name`.
    pub fn input_index(&self, name: &str) -> Option<usize> {
        self.inputs.iter().position(|t| t.name == name)
    }

    /// Position of the output named `name`.
    pub fn output_index(&self, name: &str) -> Option<usize> {
        self.outputs.iter().position(|t| t.name == name)
    }

    /// Checks inputs (in signature order) against the signature and that they agree on the
    /// batch size; returns the batch size.
    pub fn check_inputs(&self, inputs: &[Tensor]) -> Result<usize> {
        if inputs.len() != self.inputs.len() {
            return Err(RuntimeError::InvalidInput(format!(
                "the model takes {} inputs ({}) but {} were given",
                self.inputs.len(),
                self.inputs
                    .iter()
                    .map(|t| t.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                inputs.len()
            )));
        }
        let mut batch = None;
        for (spec, t) in self.inputs.iter().zip(inputs) {
            spec.check(t)?;
            let rows = t.rows();
            match batch {
                None => batch = Some(rows),
                Some(b) if b != rows => {
                    return Err(RuntimeError::InvalidInput(format!(
                        "inputs disagree on the batch size: {b} and {rows} ({:?})",
                        spec.name
                    )));
                }
                Some(_) => {}
            }
        }
        Ok(batch.unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::TensorData;

    fn sig() -> Signature {
        Signature {
            inputs: vec![TensorSpec::new("x", DataType::Fp32, vec![-1, 3])],
            outputs: vec![TensorSpec::new("y", DataType::Fp32, vec![-1])],
        }
    }

    #[test]
    fn manifest_round_trip() {
        let s = sig();
        assert_eq!(Signature::from_manifest(&s.to_manifest()).unwrap(), s);
    }

    #[test]
    fn checks_name_dtype_and_shape() {
        let s = sig();
        let ok = Tensor::new(vec![2, 3], TensorData::Fp32(vec![0.0; 6])).unwrap();
        assert_eq!(s.check_inputs(std::slice::from_ref(&ok)).unwrap(), 2);
        let wide = Tensor::new(vec![2, 4], TensorData::Fp32(vec![0.0; 8])).unwrap();
        let err = s.check_inputs(&[wide]).unwrap_err().to_string();
        assert!(err.contains("\"x\"") && err.contains("[2, 4]"), "{err}");
        let ints = Tensor::new(vec![2, 3], TensorData::Int64(vec![0; 6])).unwrap();
        assert!(
            s.check_inputs(&[ints])
                .unwrap_err()
                .to_string()
                .contains("must be FP32")
        );
        assert!(s.check_inputs(&[ok.clone(), ok]).is_err());
    }
}
