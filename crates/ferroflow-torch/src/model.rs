//! TorchScript models as [`InferenceModel`]s.

use std::sync::{Arc, Once};

use ferroflow_inference::{
    ElementType, InferenceError, InferenceModel, InputTensor, ModelLoader, ModelSignature,
    OutputData, OutputTensor, Result, TensorData, TensorSpec, ValueKind,
};
use tch::{CModule, Device, IValue, Kind, Tensor};

/// The libtorch version `tch` is built against (and the set-up script fetches).
pub const LIBTORCH_VERSION: &str = "2.13.0";

/// How a TorchScript module is called. TorchScript declares no shapes, so the inputs (in
/// `forward`'s order) and the names of the outputs (a tensor, or a tuple of tensors) are
/// given here; output widths are found by a trial run when a node is built.
#[derive(Debug, Clone, PartialEq)]
pub struct TorchOptions {
    /// `forward`'s arguments: name and element type; each is fed a `[rows, width]` tensor
    /// (`[rows]` when its shape says so: `vec![None]`).
    pub inputs: Vec<TensorSpec>,
    /// Names of `forward`'s results, in order.
    pub outputs: Vec<String>,
    /// libtorch intra-op threads for the whole process (set once, by the first loader).
    pub threads: usize,
}

impl Default for TorchOptions {
    fn default() -> Self {
        TorchOptions {
            inputs: vec![input("input", ElementType::F32)],
            outputs: vec!["output".to_string()],
            threads: 1,
        }
    }
}

/// A `forward` argument of element type `elem`, fed `[rows, width]`.
pub fn input(name: &str, elem: ElementType) -> TensorSpec {
    TensorSpec {
        name: name.to_string(),
        kind: ValueKind::Tensor {
            elem,
            shape: Vec::new(),
        },
    }
}

/// A `forward` argument fed `[rows]` (one scalar column).
pub fn scalar_input(name: &str, elem: ElementType) -> TensorSpec {
    TensorSpec {
        name: name.to_string(),
        kind: ValueKind::Tensor {
            elem,
            shape: vec![None],
        },
    }
}

impl TorchOptions {
    /// One input `name` of float32 and one output `output`.
    pub fn single(input_name: &str, output: &str) -> Self {
        TorchOptions {
            inputs: vec![input(input_name, ElementType::F32)],
            outputs: vec![output.to_string()],
            ..TorchOptions::default()
        }
    }
}

static THREADS: Once = Once::new();

fn set_threads(n: usize) {
    THREADS.call_once(|| {
        tch::set_num_threads(n.max(1) as i32);
        tch::set_num_interop_threads(1);
    });
}

/// Loads TorchScript files (`torch.jit.script(...).save(path)`).
#[derive(Debug, Clone, Default)]
pub struct TorchLoader {
    /// How the modules are called.
    pub options: TorchOptions,
}

impl TorchLoader {
    /// A loader with these options.
    pub fn new(options: TorchOptions) -> Self {
        TorchLoader { options }
    }
}

impl ModelLoader for TorchLoader {
    fn flavor(&self) -> &str {
        "torchscript"
    }

    fn cache_key(&self) -> String {
        format!("{:?}", self.options)
    }

    fn load(&self, uri: &str) -> Result<Arc<dyn InferenceModel>> {
        Ok(Arc::new(TorchModel::load(uri, self.options.clone())?))
    }
}

/// A TorchScript module in evaluation mode. libtorch modules may be called from several
/// threads at once, so one module serves every instance.
pub struct TorchModel {
    path: String,
    module: CModule,
    signature: ModelSignature,
}

impl std::fmt::Debug for TorchModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TorchModel")
            .field("path", &self.path)
            .finish()
    }
}

pub(crate) fn kind_of(e: ElementType) -> Option<Kind> {
    Some(match e {
        ElementType::F32 => Kind::Float,
        ElementType::F64 => Kind::Double,
        ElementType::I32 => Kind::Int,
        ElementType::I64 => Kind::Int64,
        ElementType::Bool => Kind::Bool,
        ElementType::Str => return None,
    })
}

impl TorchModel {
    /// Load the module at `path` (missing or invalid file: an error naming it).
    pub fn load(path: &str, options: TorchOptions) -> Result<Self> {
        set_threads(options.threads);
        // Messages, not tch's errors: those carry a C++ backtrace; only its first line is kept.
        let load_err = |message: String| InferenceError::Load {
            path: path.to_string(),
            source: message.into(),
        };
        if !std::path::Path::new(path).is_file() {
            return Err(load_err("no such file".to_string()));
        }
        for spec in &options.inputs {
            if let ValueKind::Tensor { elem, .. } = &spec.kind
                && kind_of(*elem).is_none()
            {
                return Err(load_err(format!(
                    "input '{}': TorchScript takes no {} tensors",
                    spec.name,
                    elem.name()
                )));
            }
        }
        let mut module = CModule::load_on_device(path, Device::Cpu)
            .map_err(|e| load_err(first_line(&e.to_string())))?;
        module.set_eval();
        let signature = ModelSignature {
            inputs: options.inputs.clone(),
            outputs: options
                .outputs
                .iter()
                .map(|name| TensorSpec {
                    name: name.clone(),
                    // Not declared: the node finds the element type and width by a trial run.
                    kind: ValueKind::Tensor {
                        elem: ElementType::F32,
                        shape: Vec::new(),
                    },
                })
                .collect(),
        };
        Ok(TorchModel {
            path: path.to_string(),
            module,
            signature,
        })
    }
}

/// libtorch errors carry a C++ backtrace after the first line.
pub(crate) fn first_line(s: &str) -> String {
    let mut lines = s.lines().filter(|l| !l.trim().is_empty());
    let first = lines.next().unwrap_or(s).to_string();
    // TorchScript runtime errors put the Python-side message on a later line.
    match s
        .lines()
        .find(|l| l.contains("Error:") && !l.starts_with("Exception raised"))
    {
        Some(l) if l.trim() != first.trim() => format!("{first} {}", l.trim()),
        _ => first,
    }
}

/// A tensor over the input data; borrowed data is wrapped without copying.
pub(crate) fn to_tensor(t: &InputTensor<'_>) -> Result<Tensor> {
    let shape: Vec<i64> = t.shape.iter().map(|&d| d as i64).collect();
    // SAFETY: the tensor views `data` only for the duration of the call that owns `t`; the
    // returned tensor is dropped (and never resized) before `t`'s buffers go away.
    unsafe fn view<T>(data: &[T], shape: &[i64], kind: Kind) -> Tensor {
        unsafe { Tensor::from_blob(data.as_ptr() as *const u8, shape, &[], kind, Device::Cpu) }
    }
    Ok(match &t.data {
        TensorData::F32(d) => unsafe { view(d, &shape, Kind::Float) },
        TensorData::F64(d) => unsafe { view(d, &shape, Kind::Double) },
        TensorData::I32(d) => unsafe { view(d, &shape, Kind::Int) },
        TensorData::I64(d) => unsafe { view(d, &shape, Kind::Int64) },
        TensorData::Bool(d) => Tensor::from_slice(d).reshape(&shape),
        TensorData::Str(_) => {
            return Err(InferenceError::Run {
                model: t.name.to_string(),
                source: "TorchScript takes no string tensors".into(),
            });
        }
    })
}

fn from_tensor(name: &str, t: &Tensor) -> std::result::Result<OutputTensor, String> {
    let t = t.contiguous();
    let shape: Vec<usize> = t.size().iter().map(|&d| d as usize).collect();
    let flat = t.reshape([-1]);
    let err = |e: tch::TchError| format!("output '{name}': {e}");
    let data = match t.kind() {
        Kind::Float => OutputData::F32(Vec::<f32>::try_from(&flat).map_err(err)?),
        Kind::Double => OutputData::F64(Vec::<f64>::try_from(&flat).map_err(err)?),
        Kind::Int => OutputData::I32(Vec::<i32>::try_from(&flat).map_err(err)?),
        Kind::Int64 => OutputData::I64(Vec::<i64>::try_from(&flat).map_err(err)?),
        Kind::Bool => OutputData::Bool(Vec::<bool>::try_from(&flat).map_err(err)?),
        Kind::Half | Kind::BFloat16 => {
            OutputData::F32(Vec::<f32>::try_from(&flat.to_kind(Kind::Float)).map_err(err)?)
        }
        other => return Err(format!("output '{name}' has element kind {other:?}")),
    };
    Ok(OutputTensor {
        name: name.to_string(),
        shape,
        data,
    })
}

impl InferenceModel for TorchModel {
    fn signature(&self) -> &ModelSignature {
        &self.signature
    }

    fn run(&self, inputs: &[InputTensor<'_>]) -> Result<Vec<OutputTensor>> {
        let run_err = |message: String| InferenceError::Run {
            model: self.path.clone(),
            source: message.into(),
        };
        let args: Vec<IValue> = inputs
            .iter()
            .map(|t| to_tensor(t).map(IValue::Tensor))
            .collect::<Result<_>>()?;
        let result = tch::no_grad(|| self.module.forward_is(&args))
            .map_err(|e| run_err(first_line(&e.to_string())))?;
        let tensors: Vec<Tensor> = match result {
            IValue::Tensor(t) => vec![t],
            IValue::Tuple(items) | IValue::GenericList(items) => items
                .into_iter()
                .map(|v| match v {
                    IValue::Tensor(t) => Ok(t),
                    other => Err(run_err(format!("forward returned a non-tensor {other:?}"))),
                })
                .collect::<Result<_>>()?,
            IValue::TensorList(ts) => ts,
            other => return Err(run_err(format!("forward returned {other:?}, not tensors"))),
        };
        let names = &self.signature.outputs;
        if tensors.len() != names.len() {
            return Err(run_err(format!(
                "forward returned {} tensor(s), the node names {} output(s)",
                tensors.len(),
                names.len()
            )));
        }
        names
            .iter()
            .zip(&tensors)
            .map(|(spec, t)| from_tensor(&spec.name, t).map_err(run_err))
            .collect()
    }

    fn describe(&self) -> String {
        self.path.clone()
    }
}
