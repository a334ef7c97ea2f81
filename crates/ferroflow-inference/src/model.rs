//! What a loaded model looks like to a model node, whatever runtime runs it.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Weak};
use std::time::SystemTime;

use parking_lot::Mutex;

use crate::error::Result;

/// Element type of a tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ElementType {
    /// 32-bit float.
    F32,
    /// 64-bit float.
    F64,
    /// 32-bit signed integer.
    I32,
    /// 64-bit signed integer.
    I64,
    /// Boolean.
    Bool,
    /// UTF-8 string.
    Str,
}

impl ElementType {
    /// The name used in error messages (`float32`, `int64`, ...).
    pub fn name(self) -> &'static str {
        match self {
            ElementType::F32 => "float32",
            ElementType::F64 => "float64",
            ElementType::I32 => "int32",
            ElementType::I64 => "int64",
            ElementType::Bool => "bool",
            ElementType::Str => "string",
        }
    }

    pub(crate) fn is_numeric(self) -> bool {
        !matches!(self, ElementType::Str | ElementType::Bool)
    }
}

/// What a model input or output holds.
#[derive(Debug, Clone, PartialEq)]
pub enum ValueKind {
    /// A tensor; `shape[0]` is the batch dimension, `None` where the model leaves a
    /// dimension open (an empty shape: not declared, as in TorchScript).
    Tensor {
        /// Element type.
        elem: ElementType,
        /// Declared dimensions.
        shape: Vec<Option<usize>>,
    },
    /// One `{class: probability}` map per row, as scikit-learn models converted by skl2onnx
    /// return their probabilities (ZipMap). Becomes a vector of probabilities in class order.
    ProbabilityMaps {
        /// Type of the class keys (`I64` or `Str`).
        key: ElementType,
    },
}

/// A named model input or output.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorSpec {
    /// Name in the model.
    pub name: String,
    /// What it holds.
    pub kind: ValueKind,
}

/// The inputs and outputs a model declares.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ModelSignature {
    /// Inputs, in the model's order.
    pub inputs: Vec<TensorSpec>,
    /// Outputs, in the model's order.
    pub outputs: Vec<TensorSpec>,
}

/// The data of one input tensor, borrowed from an Arrow buffer when its layout allows.
#[derive(Debug, Clone)]
pub enum TensorData<'a> {
    /// float32 elements.
    F32(Cow<'a, [f32]>),
    /// float64 elements.
    F64(Cow<'a, [f64]>),
    /// int32 elements.
    I32(Cow<'a, [i32]>),
    /// int64 elements.
    I64(Cow<'a, [i64]>),
    /// booleans.
    Bool(Vec<bool>),
    /// strings (borrowed from the Arrow array).
    Str(Vec<Cow<'a, str>>),
}

impl TensorData<'_> {
    /// `true` when the data points into the Arrow buffer (no copy was made).
    pub fn is_borrowed(&self) -> bool {
        match self {
            TensorData::F32(c) => matches!(c, Cow::Borrowed(_)),
            TensorData::F64(c) => matches!(c, Cow::Borrowed(_)),
            TensorData::I32(c) => matches!(c, Cow::Borrowed(_)),
            TensorData::I64(c) => matches!(c, Cow::Borrowed(_)),
            TensorData::Bool(_) | TensorData::Str(_) => false,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            TensorData::F32(c) => c.len(),
            TensorData::F64(c) => c.len(),
            TensorData::I32(c) => c.len(),
            TensorData::I64(c) => c.len(),
            TensorData::Bool(c) => c.len(),
            TensorData::Str(c) => c.len(),
        }
    }

    /// `true` when there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One input tensor of a model call.
#[derive(Debug, Clone)]
pub struct InputTensor<'a> {
    /// Model input name.
    pub name: &'a str,
    /// Shape, batch dimension first.
    pub shape: Vec<usize>,
    /// Elements in row-major order.
    pub data: TensorData<'a>,
}

/// Elements of one output tensor.
#[derive(Debug, Clone, PartialEq)]
pub enum OutputData {
    /// float32 elements.
    F32(Vec<f32>),
    /// float64 elements.
    F64(Vec<f64>),
    /// int32 elements.
    I32(Vec<i32>),
    /// int64 elements.
    I64(Vec<i64>),
    /// booleans.
    Bool(Vec<bool>),
    /// strings.
    Str(Vec<String>),
}

impl OutputData {
    /// The element type.
    pub fn elem(&self) -> ElementType {
        match self {
            OutputData::F32(_) => ElementType::F32,
            OutputData::F64(_) => ElementType::F64,
            OutputData::I32(_) => ElementType::I32,
            OutputData::I64(_) => ElementType::I64,
            OutputData::Bool(_) => ElementType::Bool,
            OutputData::Str(_) => ElementType::Str,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            OutputData::F32(v) => v.len(),
            OutputData::F64(v) => v.len(),
            OutputData::I32(v) => v.len(),
            OutputData::I64(v) => v.len(),
            OutputData::Bool(v) => v.len(),
            OutputData::Str(v) => v.len(),
        }
    }

    /// `true` when there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One output of a model call: a tensor (probability maps arrive as `[rows, classes]` float32
/// tensors in class order).
#[derive(Debug, Clone, PartialEq)]
pub struct OutputTensor {
    /// Model output name.
    pub name: String,
    /// Shape, batch dimension first.
    pub shape: Vec<usize>,
    /// Elements in row-major order.
    pub data: OutputData,
}

/// A loaded model: ONNX Runtime session(s), a TorchScript module, or anything else that maps
/// tensors to tensors. Shared by every parallel instance of a node (hence `Sync`).
pub trait InferenceModel: Send + Sync {
    /// The model's declared inputs and outputs.
    fn signature(&self) -> &ModelSignature;

    /// Run one batch; returns every output, in signature order.
    fn run(&self, inputs: &[InputTensor<'_>]) -> Result<Vec<OutputTensor>>;

    /// A short description for messages (the file it came from).
    fn describe(&self) -> String;
}

/// Loads models of one kind (ONNX, TorchScript) from a URI (a file path).
pub trait ModelLoader: Send + Sync {
    /// `onnx`, `torchscript`, ... (the Model Center's `flavor`).
    fn flavor(&self) -> &str;

    /// Options that change what `load` returns (threads, pool size), for the model cache key.
    fn cache_key(&self) -> String {
        String::new()
    }

    /// Load the model at `uri`.
    fn load(&self, uri: &str) -> Result<Arc<dyn InferenceModel>>;
}

type CacheKey = (String, String, String, Option<SystemTime>, u64);

fn cache() -> &'static Mutex<HashMap<CacheKey, Weak<dyn InferenceModel>>> {
    static CACHE: std::sync::OnceLock<Mutex<HashMap<CacheKey, Weak<dyn InferenceModel>>>> =
        std::sync::OnceLock::new();
    CACHE.get_or_init(Default::default)
}

/// Load `uri` through `loader`, or return the model already loaded in this process for the
/// same file (same path, modification time and size) and loader options. This is what makes
/// the parallel instances of a node, and several jobs in one process, share one model.
pub fn load_shared(loader: &dyn ModelLoader, uri: &str) -> Result<Arc<dyn InferenceModel>> {
    let meta = std::fs::metadata(Path::new(uri)).ok();
    let key: CacheKey = (
        loader.flavor().to_string(),
        loader.cache_key(),
        uri.to_string(),
        meta.as_ref().and_then(|m| m.modified().ok()),
        meta.as_ref().map(|m| m.len()).unwrap_or(0),
    );
    // Held while loading so concurrent instances wait for one load instead of racing.
    let mut map = cache().lock();
    if let Some(model) = map.get(&key).and_then(Weak::upgrade) {
        return Ok(model);
    }
    map.retain(|_, w| w.strong_count() > 0);
    let model = loader.load(uri)?;
    map.insert(key, Arc::downgrade(&model));
    Ok(model)
}
