//! The ONNX Runtime backend (cargo feature `ort`), for the models tract cannot run
//! (scikit-learn's ZipMap, TreeEnsembleRegressor, …) and for GPUs.
//!
//! The library is loaded at run time (`ort`'s `load-dynamic`): from `ORT_DYLIB_PATH` — the
//! `onnxruntime` (CPU) or `onnxruntime-gpu` (CUDA) Python wheel's
//! `onnxruntime/capi/libonnxruntime.so.*`, or a system install. Nothing is downloaded at
//! build time. [`init`] loads it once per process; a missing library is an error that names
//! `ORT_DYLIB_PATH`, reported when a model asks for ort, never a crash.
//!
//! Devices: `cpu`; `cuda` registers the CUDA execution provider and fails the load when it
//! cannot (no silent fallback); `auto` tries CUDA and falls back to the CPU with a log line.
//!
//! Concurrency: `Session::run` needs `&mut`, so an `OrtModel` keeps a pool of sessions
//! behind a mutex and condition variable; `predict(&self)` borrows one for the call and puts
//! it back. Each session uses `intra_op_threads` threads (default 1) — parallelism comes from
//! the pool and Pier's compute threads.

use std::path::Path;
use std::sync::{Condvar, Mutex, OnceLock};

use ort::ep::ExecutionProvider;
use ort::session::Session;
use ort::value::{DynMapValueType, DynValue, Tensor as OrtTensor, TensorElementType, ValueType};

use super::OnnxGraph;
use crate::error::{Result, RuntimeError};
use crate::loader::{Device, LoadOptions};
use crate::model::Model;
use crate::signature::Signature;
use crate::tensor::{Tensor, TensorData};

/// Environment variable naming the ONNX Runtime shared library.
pub const DYLIB_ENV: &str = "ORT_DYLIB_PATH";

static ENVIRONMENT: OnceLock<std::result::Result<ort::environment::Environment, String>> =
    OnceLock::new();

fn unavailable(reason: String) -> RuntimeError {
    RuntimeError::BackendUnavailable {
        backend: "ort",
        reason,
    }
}

/// Loads the ONNX Runtime library named by `ORT_DYLIB_PATH` (once per process).
pub fn init() -> Result<&'static ort::environment::Environment> {
    ENVIRONMENT
        .get_or_init(|| {
            let path = std::env::var_os(DYLIB_ENV).ok_or_else(|| {
                format!(
                    "{DYLIB_ENV} is not set; point it at libonnxruntime.so (pip install onnxruntime: onnxruntime/capi/libonnxruntime.so.*)"
                )
            })?;
            let path = Path::new(&path);
            if !path.is_file() {
                return Err(format!("{DYLIB_ENV}={} is not a file", path.display()));
            }
            ort::init_from(path)
                .map_err(|e| format!("cannot load {}: {e}", path.display()))?
                .with_name("pier")
                .build()
                .map_err(|e| format!("cannot start ONNX Runtime from {}: {e}", path.display()))
        })
        .as_ref()
        .map_err(|e| unavailable(e.clone()))
}

/// An ONNX model run by ONNX Runtime.
pub struct OrtModel {
    sessions: Mutex<Vec<Session>>,
    returned: Condvar,
    signature: Signature,
    device: &'static str,
    /// The graph takes missing values ([`OnnxGraph::takes_missing_values`]).
    accepts_missing: bool,
}

impl std::fmt::Debug for OrtModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrtModel")
            .field("signature", &self.signature)
            .field("device", &self.device)
            .finish_non_exhaustive()
    }
}

impl OrtModel {
    /// Loads `path` into `options.sessions` sessions on `options.device`. `signature`, if
    /// it has inputs, overrides what the file declares.
    pub fn load(
        path: &Path,
        signature: Option<Signature>,
        model_name: &str,
        options: &LoadOptions,
    ) -> Result<Self> {
        let env = init()?;
        let load_err = |message: String| RuntimeError::Load {
            model: model_name.to_owned(),
            message,
        };
        let graph = OnnxGraph::read(path, model_name)?;
        let accepts_missing = graph.takes_missing_values();
        let signature = match signature {
            Some(s) if !s.inputs.is_empty() => s,
            _ => graph.declared_signature()?,
        };
        drop(graph);
        let device = match options.device {
            Device::Cpu => "cpu",
            Device::Cuda => {
                cuda_available().map_err(|why| {
                    load_err(format!("PIER_DEVICE=cuda but {why}; use the onnxruntime-gpu library with a CUDA device, or PIER_DEVICE=auto to fall back to the CPU"))
                })?;
                "cuda"
            }
            Device::Auto => match cuda_available() {
                Ok(()) => "cuda",
                Err(why) => {
                    tracing::warn!(model = model_name, %why, "PIER_DEVICE=auto: running on the CPU");
                    "cpu"
                }
            },
        };
        let count = options.sessions.max(1);
        let mut sessions = Vec::with_capacity(count);
        for _ in 0..count {
            let mut builder = Session::builder(env)
                .and_then(|b| {
                    b.with_intra_threads(options.intra_op_threads.max(1))
                        .map_err(Into::into)
                })
                .and_then(|b| b.with_inter_threads(1).map_err(Into::into))
                .map_err(|e| load_err(format!("ONNX Runtime session options: {e}")))?;
            if device == "cuda" {
                builder = builder
                    .with_execution_providers([ort::ep::CUDA::default().build().error_on_failure()])
                    .map_err(|e| {
                        load_err(format!("cannot register the CUDA execution provider: {e}"))
                    })?;
            }
            let session = builder
                .commit_from_file(path)
                .map_err(|e| load_err(format!("ONNX Runtime cannot load the model: {e}")))?;
            sessions.push(session);
        }
        if let Some(missing) = signature
            .inputs
            .iter()
            .find(|i| !sessions[0].inputs().iter().any(|o| o.name() == i.name))
        {
            return Err(load_err(format!(
                "the model has no input named {:?}",
                missing.name
            )));
        }
        Ok(Self {
            sessions: Mutex::new(sessions),
            returned: Condvar::new(),
            signature,
            device,
            accepts_missing,
        })
    }

    /// The device the sessions run on (`cpu` or `cuda`).
    pub fn device(&self) -> &'static str {
        self.device
    }

    fn run(&self, session: &mut Session, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        let values: Vec<(String, DynValue)> = self
            .signature
            .inputs
            .iter()
            .zip(inputs)
            .map(|(spec, t)| Ok((spec.name.clone(), to_ort(t)?)))
            .collect::<Result<_>>()?;
        let outputs = session
            .run(values)
            .map_err(|e| RuntimeError::Predict(format!("{e}")))?;
        self.signature
            .outputs
            .iter()
            .map(|spec| {
                let value = outputs.get(spec.name.as_str()).ok_or_else(|| {
                    RuntimeError::Predict(format!("the model gave no output {:?}", spec.name))
                })?;
                from_ort(value)
                    .map_err(|e| RuntimeError::Predict(format!("output {:?}: {e}", spec.name)))
            })
            .collect()
    }
}

/// Ok when ONNX Runtime's CUDA execution provider is present in the loaded library.
fn cuda_available() -> std::result::Result<(), String> {
    match ort::ep::CUDA::is_available() {
        Ok(true) => Ok(()),
        Ok(false) => Err("the loaded ONNX Runtime library has no CUDA execution provider".into()),
        Err(e) => Err(format!("CUDA is unavailable: {e}")),
    }
}

impl Model for OrtModel {
    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn predict(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        let mut session = {
            let mut pool = self
                .sessions
                .lock()
                .map_err(|_| RuntimeError::Predict("session pool poisoned".into()))?;
            loop {
                if let Some(s) = pool.pop() {
                    break s;
                }
                pool = self
                    .returned
                    .wait(pool)
                    .map_err(|_| RuntimeError::Predict("session pool poisoned".into()))?;
            }
        };
        let result = self.run(&mut session, inputs);
        if let Ok(mut pool) = self.sessions.lock() {
            pool.push(session);
        }
        self.returned.notify_one();
        result
    }

    fn backend(&self) -> &'static str {
        "ort"
    }

    fn accepts_missing(&self) -> bool {
        self.accepts_missing
    }
}

fn to_ort(t: Tensor) -> Result<DynValue> {
    let shape = t.shape().to_vec();
    fn value<T: ort::value::PrimitiveTensorElementType + std::fmt::Debug + Clone + 'static>(
        shape: Vec<usize>,
        v: Vec<T>,
    ) -> Result<DynValue> {
        OrtTensor::from_array((shape, v))
            .map(|t| t.into_dyn())
            .map_err(|e| RuntimeError::InvalidInput(format!("{e}")))
    }
    match t.into_data() {
        TensorData::Bool(v) => value(shape, v),
        TensorData::Uint8(v) => value(shape, v),
        TensorData::Int8(v) => value(shape, v),
        TensorData::Int16(v) => value(shape, v),
        TensorData::Int32(v) => value(shape, v),
        TensorData::Int64(v) => value(shape, v),
        TensorData::Fp32(v) => value(shape, v),
        TensorData::Fp64(v) => value(shape, v),
        TensorData::Bytes(v) => {
            let strings = v
                .into_iter()
                .map(|b| {
                    String::from_utf8(b)
                        .map_err(|_| RuntimeError::InvalidInput("BYTES input is not UTF-8".into()))
                })
                .collect::<Result<Vec<_>>>()?;
            OrtTensor::from_string_array((shape, strings.as_slice()))
                .map(|t| t.into_dyn())
                .map_err(|e| RuntimeError::InvalidInput(format!("{e}")))
        }
    }
}

fn from_ort(value: &DynValue) -> std::result::Result<Tensor, String> {
    let err = |e: ort::Error| e.to_string();
    match value.dtype() {
        ValueType::Tensor { ty, .. } => {
            fn plain<T: ort::value::PrimitiveTensorElementType + Clone>(
                value: &DynValue,
            ) -> std::result::Result<(Vec<usize>, Vec<T>), String> {
                let (shape, data) = value.try_extract_tensor::<T>().map_err(|e| e.to_string())?;
                Ok((shape.iter().map(|&d| d as usize).collect(), data.to_vec()))
            }
            let (shape, data) = match ty {
                TensorElementType::Float32 => {
                    plain::<f32>(value).map(|(s, d)| (s, TensorData::Fp32(d)))?
                }
                TensorElementType::Float64 => {
                    plain::<f64>(value).map(|(s, d)| (s, TensorData::Fp64(d)))?
                }
                TensorElementType::Int64 => {
                    plain::<i64>(value).map(|(s, d)| (s, TensorData::Int64(d)))?
                }
                TensorElementType::Int32 => {
                    plain::<i32>(value).map(|(s, d)| (s, TensorData::Int32(d)))?
                }
                TensorElementType::Int16 => {
                    plain::<i16>(value).map(|(s, d)| (s, TensorData::Int16(d)))?
                }
                TensorElementType::Int8 => {
                    plain::<i8>(value).map(|(s, d)| (s, TensorData::Int8(d)))?
                }
                TensorElementType::Uint8 => {
                    plain::<u8>(value).map(|(s, d)| (s, TensorData::Uint8(d)))?
                }
                TensorElementType::Bool => {
                    plain::<bool>(value).map(|(s, d)| (s, TensorData::Bool(d)))?
                }
                TensorElementType::String => {
                    let (shape, strings) = value.try_extract_strings().map_err(err)?;
                    (
                        shape.iter().map(|&d| d as usize).collect(),
                        TensorData::Bytes(strings.into_iter().map(String::into_bytes).collect()),
                    )
                }
                other => return Err(format!("element type {other} is not served")),
            };
            Tensor::new(shape, data).map_err(|e| e.to_string())
        }
        ValueType::Sequence(inner) if matches!(**inner, ValueType::Map { .. }) => {
            let maps = value
                .try_extract_sequence::<DynMapValueType>()
                .map_err(err)?;
            let rows = maps
                .iter()
                .map(|m| map_to_json(m.dtype(), m))
                .collect::<std::result::Result<Vec<_>, String>>()?;
            Tensor::new(vec![rows.len()], TensorData::Bytes(rows)).map_err(|e| e.to_string())
        }
        other => Err(format!("value type {other:?} is not served")),
    }
}

/// One ZipMap row as a JSON object (`{"0":0.97,"1":0.02,…}`), keys in the model's order.
fn map_to_json(
    dtype: &ValueType,
    map: &ort::value::Value<DynMapValueType>,
) -> std::result::Result<Vec<u8>, String> {
    let ValueType::Map { key, value } = dtype else {
        return Err("not a map".into());
    };
    let fmt_value =
        |v: f64| serde_json::Number::from_f64(v).map_or("null".to_owned(), |n| n.to_string());
    let pairs: Vec<(String, String)> = match (key, value) {
        (TensorElementType::Int64, TensorElementType::Float32) => map
            .try_extract_key_values::<i64, f32>()
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|(k, v)| (k.to_string(), fmt_value(f64::from(v))))
            .collect(),
        (TensorElementType::String, TensorElementType::Float32) => map
            .try_extract_key_values::<String, f32>()
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|(k, v)| (k, fmt_value(f64::from(v))))
            .collect(),
        (TensorElementType::Int64, TensorElementType::Float64) => map
            .try_extract_key_values::<i64, f64>()
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|(k, v)| (k.to_string(), fmt_value(v)))
            .collect(),
        (k, v) => return Err(format!("map<{k}, {v}> is not served")),
    };
    let body: Vec<String> = pairs
        .into_iter()
        .map(|(k, v)| format!("{}:{v}", serde_json::Value::String(k)))
        .collect();
    Ok(format!("{{{}}}", body.join(",")).into_bytes())
}
