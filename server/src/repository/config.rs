//! Triton's `config.pbtxt` as Pier reads it: the fields Pier honours become a
//! [`TritonConfig`]; a field it does not honour is a warning naming it (the model still
//! serves); a platform or backend it cannot run refuses the model.
//!
//! Pure: text in, config and warnings out.

use pier_runtimes::DataType;

use super::pbtxt::{self, Field, Scalar, Value};

/// A tensor as the config declares it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorConfig {
    /// Name.
    pub name: String,
    /// Datatype.
    pub dtype: DataType,
    /// Dims without the batch dimension when `max_batch_size > 0`; `-1` for any.
    pub dims: Vec<i64>,
}

/// `version_policy`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VersionPolicy {
    /// The `n` highest versions (Triton's default: 1).
    Latest(u32),
    /// Every version.
    All,
    /// These versions.
    Specific(Vec<u64>),
}

/// `dynamic_batching`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DynamicBatching {
    /// Longest a request waits for a fuller batch, µs.
    pub max_queue_delay_microseconds: u64,
    /// Batch sizes to form when possible.
    pub preferred_batch_size: Vec<usize>,
}

/// What Pier takes from one model's `config.pbtxt`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TritonConfig {
    /// `name` (must match the folder when given).
    pub name: Option<String>,
    /// `platform` or `backend`, as written.
    pub platform: Option<String>,
    /// Most rows a request may carry; 0: the model has no batch dimension.
    pub max_batch_size: usize,
    /// Declared inputs (may be empty: taken from the model).
    pub inputs: Vec<TensorConfig>,
    /// Declared outputs.
    pub outputs: Vec<TensorConfig>,
    /// Dynamic batching, when on.
    pub dynamic_batching: Option<DynamicBatching>,
    /// Which versions serve.
    pub version_policy: VersionPolicy,
    /// Instances (summed over `instance_group`s; 1 when none).
    pub instance_count: u32,
    /// `default_model_filename` (`model.onnx` when unset).
    pub default_model_filename: Option<String>,
}

/// Platforms and backends Pier runs (ONNX on its own runtimes).
pub const SUPPORTED_PLATFORMS: &[&str] = &["onnxruntime_onnx", "onnxruntime", "onnx"];

/// Reads a `config.pbtxt`: the config and a warning per field Pier does not honour, or
/// why the model cannot be served.
pub fn read(text: &str) -> Result<(TritonConfig, Vec<String>), String> {
    let fields = pbtxt::parse(text).map_err(|e| format!("config.pbtxt {e}"))?;
    let mut warnings = Vec::new();
    let mut c = TritonConfig {
        name: None,
        platform: None,
        max_batch_size: 0,
        inputs: Vec::new(),
        outputs: Vec::new(),
        dynamic_batching: None,
        version_policy: VersionPolicy::Latest(1),
        instance_count: 0,
        default_model_filename: None,
    };
    let mut groups = 0;
    for f in &fields {
        match f.name.as_str() {
            "name" => c.name = Some(string(f)?),
            "platform" | "backend" => {
                let p = string(f)?;
                if !SUPPORTED_PLATFORMS.contains(&p.as_str()) {
                    return Err(format!(
                        "{} {p:?} is not supported: Pier serves ONNX models ({})",
                        f.name,
                        SUPPORTED_PLATFORMS.join(", ")
                    ));
                }
                c.platform = Some(p);
            }
            "max_batch_size" => c.max_batch_size = number(f)?,
            "input" => c.inputs.push(tensor(f, &mut warnings)?),
            "output" => c.outputs.push(tensor(f, &mut warnings)?),
            "dynamic_batching" => c.dynamic_batching = Some(batching(f, &mut warnings)?),
            "version_policy" => c.version_policy = version_policy(f)?,
            "instance_group" => {
                groups += 1;
                for g in message(f)? {
                    match g.name.as_str() {
                        "count" => c.instance_count += number::<u32>(g)?,
                        "kind" => {
                            let kind = word(g)?;
                            if kind != "KIND_CPU" && kind != "KIND_AUTO" {
                                warnings.push(format!(
                                    "instance_group.kind {kind} is served on the CPU"
                                ));
                            }
                        }
                        "name" => {}
                        other => warnings.push(format!("instance_group.{other} is ignored")),
                    }
                }
            }
            "default_model_filename" => {
                let file = string(f)?;
                if file.contains(['/', '\\']) || file.starts_with('.') || file.is_empty() {
                    return Err(format!(
                        "default_model_filename {file:?} must be a file name in the version folder"
                    ));
                }
                c.default_model_filename = Some(file);
            }
            "sequence_batching" | "ensemble_scheduling" => {
                return Err(format!("{} is not supported by Pier", f.name));
            }
            other => warnings.push(format!("{other} is not supported by Pier and is ignored")),
        }
    }
    if groups == 0 || c.instance_count == 0 {
        c.instance_count = 1;
    }
    if c.dynamic_batching.is_some() && c.max_batch_size == 0 {
        warnings.push("dynamic_batching needs max_batch_size > 0 and is ignored".into());
        c.dynamic_batching = None;
    }
    Ok((c, warnings))
}

fn message(f: &Field) -> Result<&[Field], String> {
    match &f.value {
        Value::Message(m) => Ok(m),
        Value::Scalar(_) => Err(format!(
            "config.pbtxt line {}: {} must be a message",
            f.line, f.name
        )),
    }
}

fn string(f: &Field) -> Result<String, String> {
    match &f.value {
        Value::Scalar(Scalar::Str(s)) => Ok(s.clone()),
        _ => Err(format!(
            "config.pbtxt line {}: {} must be a string",
            f.line, f.name
        )),
    }
}

fn word(f: &Field) -> Result<&str, String> {
    match &f.value {
        Value::Scalar(Scalar::Word(w)) => Ok(w),
        _ => Err(format!(
            "config.pbtxt line {}: {} must be a name or number",
            f.line, f.name
        )),
    }
}

fn number<T: std::str::FromStr>(f: &Field) -> Result<T, String> {
    word(f)?.parse().map_err(|_| {
        format!(
            "config.pbtxt line {}: {} must be a non-negative number in range",
            f.line, f.name
        )
    })
}

fn dtype(f: &Field) -> Result<DataType, String> {
    let w = word(f)?;
    Ok(match w {
        "TYPE_BOOL" => DataType::Bool,
        "TYPE_UINT8" => DataType::Uint8,
        "TYPE_INT8" => DataType::Int8,
        "TYPE_INT16" => DataType::Int16,
        "TYPE_INT32" => DataType::Int32,
        "TYPE_INT64" => DataType::Int64,
        "TYPE_FP32" => DataType::Fp32,
        "TYPE_FP64" => DataType::Fp64,
        "TYPE_STRING" => DataType::Bytes,
        other => {
            return Err(format!(
                "config.pbtxt line {}: data_type {other} is not supported by Pier",
                f.line
            ));
        }
    })
}

fn tensor(f: &Field, warnings: &mut Vec<String>) -> Result<TensorConfig, String> {
    let (mut name, mut dt, mut dims) = (None, None, Vec::new());
    for t in message(f)? {
        match t.name.as_str() {
            "name" => name = Some(string(t)?),
            "data_type" => dt = Some(dtype(t)?),
            "dims" => {
                let d: i64 = word(t)?
                    .parse()
                    .map_err(|_| format!("config.pbtxt line {}: dims must be integers", t.line))?;
                if d < -1 {
                    return Err(format!(
                        "config.pbtxt line {}: dims must be -1 or more",
                        t.line
                    ));
                }
                dims.push(d);
            }
            other => warnings.push(format!("{}.{other} is ignored", f.name)),
        }
    }
    let name =
        name.ok_or_else(|| format!("config.pbtxt line {}: an {} has no name", f.line, f.name))?;
    let dtype = dt.ok_or_else(|| format!("config.pbtxt: {} {name:?} has no data_type", f.name))?;
    Ok(TensorConfig { name, dtype, dims })
}

fn batching(f: &Field, warnings: &mut Vec<String>) -> Result<DynamicBatching, String> {
    let mut b = DynamicBatching::default();
    for g in message(f)? {
        match g.name.as_str() {
            "max_queue_delay_microseconds" => b.max_queue_delay_microseconds = number(g)?,
            "preferred_batch_size" => b.preferred_batch_size.push(number(g)?),
            other => warnings.push(format!("dynamic_batching.{other} is ignored")),
        }
    }
    Ok(b)
}

fn version_policy(f: &Field) -> Result<VersionPolicy, String> {
    let [choice] = message(f)? else {
        return Err(format!(
            "config.pbtxt line {}: version_policy needs exactly one of latest, all, specific",
            f.line
        ));
    };
    let inner = message(choice)?;
    match choice.name.as_str() {
        "latest" => {
            let mut n = 1;
            for g in inner {
                if g.name == "num_versions" {
                    n = number(g)?;
                }
            }
            if n == 0 {
                return Err("version_policy.latest.num_versions must be at least 1".into());
            }
            Ok(VersionPolicy::Latest(n))
        }
        "all" => Ok(VersionPolicy::All),
        "specific" => {
            let versions = inner
                .iter()
                .filter(|g| g.name == "versions")
                .map(number)
                .collect::<Result<Vec<u64>, _>>()?;
            if versions.is_empty() {
                return Err("version_policy.specific names no versions".into());
            }
            Ok(VersionPolicy::Specific(versions))
        }
        other => Err(format!("version_policy {other} is not a Triton policy")),
    }
}

/// The versions `policy` selects among `present` (ascending).
pub fn select(policy: &VersionPolicy, present: &[u64]) -> Vec<u64> {
    match policy {
        VersionPolicy::All => present.to_vec(),
        VersionPolicy::Latest(n) => {
            let skip = present.len().saturating_sub(*n as usize);
            present[skip..].to_vec()
        }
        VersionPolicy::Specific(v) => present.iter().copied().filter(|p| v.contains(p)).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_pier_honours_and_warns_on_the_rest() {
        let (c, warnings) = read(
            r#"
            name: "iris"
            platform: "onnxruntime_onnx"
            max_batch_size: 16
            input [{ name: "float_input" data_type: TYPE_FP32 dims: [4] }]
            output [{ name: "label" data_type: TYPE_INT64 dims: [1] label_filename: "l.txt" }]
            dynamic_batching { max_queue_delay_microseconds: 200 preferred_batch_size: [4, 8] priority_levels: 2 }
            version_policy { specific { versions: [1, 3] } }
            instance_group [{ count: 2 kind: KIND_GPU gpus: [0] }, { count: 1 }]
            optimization { execution_accelerators {} }
            "#,
        )
        .unwrap();
        assert_eq!(c.name.as_deref(), Some("iris"));
        assert_eq!(c.max_batch_size, 16);
        assert_eq!(c.inputs[0].dims, [4]);
        assert_eq!(c.outputs[0].dtype, DataType::Int64);
        assert_eq!(
            c.dynamic_batching,
            Some(DynamicBatching {
                max_queue_delay_microseconds: 200,
                preferred_batch_size: vec![4, 8]
            })
        );
        assert_eq!(c.version_policy, VersionPolicy::Specific(vec![1, 3]));
        assert_eq!(c.instance_count, 3);
        for needle in [
            "output.label_filename",
            "dynamic_batching.priority_levels",
            "KIND_GPU",
            "instance_group.gpus",
            "optimization",
        ] {
            assert!(
                warnings.iter().any(|w| w.contains(needle)),
                "{needle}: {warnings:?}"
            );
        }
        assert_eq!(warnings.len(), 5, "{warnings:?}");
    }

    #[test]
    fn refuses_what_it_cannot_serve() {
        for (text, needle) in [
            ("platform: \"tensorrt_plan\"", "tensorrt_plan"),
            ("backend: \"pytorch\"", "pytorch"),
            ("platform: \"ensemble\"", "ensemble"),
            ("sequence_batching {}", "sequence_batching"),
            ("max_batch_size: -1", "max_batch_size"),
            ("input [{ name: \"x\" dims: [1] }]", "no data_type"),
            ("input [{ name: \"x\" data_type: TYPE_BF16 }]", "TYPE_BF16"),
            (
                "version_policy { latest { num_versions: 0 } }",
                "at least 1",
            ),
            ("version_policy { }", "exactly one"),
            ("default_model_filename: \"../x.onnx\"", "file name"),
            ("name: 3", "must be a string"),
        ] {
            let e = read(text).unwrap_err();
            assert!(e.contains(needle), "{text}: {e}");
        }
    }

    #[test]
    fn version_policies_select() {
        let present = [1, 2, 5];
        assert_eq!(select(&VersionPolicy::Latest(1), &present), [5]);
        assert_eq!(select(&VersionPolicy::Latest(9), &present), [1, 2, 5]);
        assert_eq!(select(&VersionPolicy::All, &present), [1, 2, 5]);
        assert_eq!(select(&VersionPolicy::Specific(vec![2, 7]), &present), [2]);
        let (c, w) = read("").unwrap();
        assert_eq!(
            (c.version_policy, c.instance_count),
            (VersionPolicy::Latest(1), 1)
        );
        assert!(w.is_empty());
        let (c, w) = read("dynamic_batching {}").unwrap();
        assert!(c.dynamic_batching.is_none());
        assert!(w[0].contains("needs max_batch_size"), "{w:?}");
    }
}
