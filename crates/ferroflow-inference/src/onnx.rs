//! ONNX models through ONNX Runtime (`ort`, library loaded at run time).
//!
//! `ort` sessions need `&mut` to run, so a model keeps a small pool of sessions over the same
//! model bytes; parallel instances of a node take whichever session is free. Each session
//! uses `intra_threads` threads (1 by default): the engine already runs one instance per core,
//! and more threads per session would oversubscribe the cores.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::{DynMapValueType, DynValue, Tensor, TensorElementType, TensorRef, ValueType};
use parking_lot::Mutex;

use crate::error::{BoxError, Context, InferenceError, Result};
use crate::model::{
    ElementType, InferenceModel, InputTensor, ModelLoader, ModelSignature, OutputData,
    OutputTensor, TensorData, TensorSpec, ValueKind,
};

/// The library version the set-up script fetches.
pub const ONNX_RUNTIME_VERSION: &str = "1.31.1";

/// The outcome of loading the library, once per process (the error is shared by every caller).
type Loaded =
    std::result::Result<ort::environment::Environment, Arc<dyn std::error::Error + Send + Sync>>;
static ENVIRONMENT: OnceLock<Loaded> = OnceLock::new();
static LIBRARY: OnceLock<PathBuf> = OnceLock::new();

/// Where the ONNX Runtime library is looked for: `ORT_DYLIB_PATH` at run time, else the path
/// the crate was built with (`.cargo/config.toml` points it at `deps/onnxruntime/`), else
/// `libonnxruntime.so` on the loader's path.
pub fn default_library_path() -> PathBuf {
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH") {
        return PathBuf::from(p);
    }
    if let Some(p) = option_env!("FERROFLOW_BUILD_ORT_DYLIB") {
        return PathBuf::from(p);
    }
    PathBuf::from("libonnxruntime.so")
}

/// Load ONNX Runtime from `library` (or [`default_library_path`]) once per process. Later calls
/// return the first outcome; call this before any model is loaded to choose the library.
pub fn init_onnx_runtime(library: Option<&Path>) -> Result<()> {
    let path = library
        .map(Path::to_path_buf)
        .unwrap_or_else(default_library_path);
    let outcome = ENVIRONMENT.get_or_init(|| {
        let _ = LIBRARY.set(path.clone());
        if !path.exists() && path.components().count() > 1 {
            return Err(Arc::from(BoxError::from("file not found")));
        }
        ort::init_from(&path)
            .map_err(shared)?
            .with_name("ferroflow")
            .build()
            .map_err(shared)
    });
    outcome
        .as_ref()
        .map(|_| ())
        .map_err(|source| InferenceError::RuntimeUnavailable {
            path: LIBRARY.get().unwrap_or(&path).display().to_string(),
            source: source.clone(),
        })
}

fn shared(
    e: impl std::error::Error + Send + Sync + 'static,
) -> Arc<dyn std::error::Error + Send + Sync> {
    Arc::new(e)
}

/// The process's ONNX Runtime environment (initialised on first use), for programs that also
/// create `ort` sessions of their own (benchmarks comparing against a raw session loop).
pub fn onnx_environment() -> Result<&'static ort::environment::Environment> {
    environment()
}

fn environment() -> Result<&'static ort::environment::Environment> {
    init_onnx_runtime(None)?;
    Ok(ENVIRONMENT
        .get()
        .and_then(|r| r.as_ref().ok())
        .expect("initialised above"))
}

/// Session options of ONNX models.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnnxOptions {
    /// Threads inside one session call (intra-op). Default 1.
    pub intra_threads: usize,
    /// Sessions kept per model, so that many instances run at once. Default: the number of
    /// cores. Sessions are created on first need.
    pub pool_size: usize,
    /// Full graph optimisation (default) or none.
    pub optimize: bool,
}

impl Default for OnnxOptions {
    fn default() -> Self {
        OnnxOptions {
            intra_threads: 1,
            pool_size: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            optimize: true,
        }
    }
}

/// Loads `.onnx` files.
#[derive(Debug, Clone, Default)]
pub struct OnnxLoader {
    /// Session options for every model it loads.
    pub options: OnnxOptions,
}

impl OnnxLoader {
    /// A loader with these options.
    pub fn new(options: OnnxOptions) -> Self {
        OnnxLoader { options }
    }
}

impl ModelLoader for OnnxLoader {
    fn flavor(&self) -> &str {
        "onnx"
    }

    fn cache_key(&self) -> String {
        format!("{:?}", self.options)
    }

    fn load(&self, uri: &str) -> Result<Arc<dyn InferenceModel>> {
        Ok(Arc::new(OnnxModel::load(uri, self.options.clone())?))
    }
}

/// An ONNX model with its pool of sessions.
pub struct OnnxModel {
    path: String,
    bytes: Vec<u8>,
    options: OnnxOptions,
    signature: ModelSignature,
    sessions: Vec<Mutex<Option<Session>>>,
}

impl std::fmt::Debug for OnnxModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnnxModel")
            .field("path", &self.path)
            .field("signature", &self.signature)
            .finish()
    }
}

impl OnnxModel {
    /// Load the model at `path`; fails if the file is missing or not a model ONNX Runtime
    /// accepts, naming the file.
    pub fn load(path: impl AsRef<Path>, options: OnnxOptions) -> Result<Self> {
        let path_str = path.as_ref().display().to_string();
        let load_err = |source: BoxError| InferenceError::Load {
            path: path_str.clone(),
            source,
        };
        let bytes = std::fs::read(path.as_ref()).map_err(|e| load_err(e.into()))?;
        environment()?;
        let session = new_session(&bytes, &options).map_err(load_err)?;
        let signature = ModelSignature {
            inputs: session
                .inputs()
                .iter()
                .map(|o| spec(o.name(), o.dtype()))
                .collect::<std::result::Result<_, _>>()
                .map_err(load_err)?,
            outputs: session
                .outputs()
                .iter()
                .map(|o| spec(o.name(), o.dtype()))
                .collect::<std::result::Result<_, _>>()
                .map_err(load_err)?,
        };
        let pool = options.pool_size.max(1);
        let mut sessions: Vec<Mutex<Option<Session>>> =
            (0..pool).map(|_| Mutex::new(None)).collect();
        *sessions[0].get_mut() = Some(session);
        Ok(OnnxModel {
            path: path_str,
            bytes,
            options,
            signature,
            sessions,
        })
    }

    fn run_in(
        &self,
        session: &mut Session,
        inputs: &[InputTensor<'_>],
    ) -> Result<Vec<OutputTensor>> {
        let run_err = |source: BoxError| InferenceError::Run {
            model: self.path.clone(),
            source,
        };
        let mut values: Vec<(String, ort::session::SessionInputValue<'_>)> =
            Vec::with_capacity(inputs.len());
        for t in inputs {
            let shape = t.shape.clone();
            let v: ort::session::SessionInputValue<'_> = match &t.data {
                TensorData::F32(d) => TensorRef::from_array_view((shape, &d[..]))
                    .map_err(|e| run_err(e.into()))?
                    .into(),
                TensorData::F64(d) => TensorRef::from_array_view((shape, &d[..]))
                    .map_err(|e| run_err(e.into()))?
                    .into(),
                TensorData::I32(d) => TensorRef::from_array_view((shape, &d[..]))
                    .map_err(|e| run_err(e.into()))?
                    .into(),
                TensorData::I64(d) => TensorRef::from_array_view((shape, &d[..]))
                    .map_err(|e| run_err(e.into()))?
                    .into(),
                TensorData::Bool(d) => Tensor::from_array((shape, d.clone()))
                    .map_err(|e| run_err(e.into()))?
                    .into(),
                TensorData::Str(d) => {
                    // ONNX Runtime copies strings into its own tensor anyway.
                    let owned: Arc<[String]> = d.iter().map(|s| s.to_string()).collect();
                    Tensor::from_string_array((shape, owned))
                        .map_err(|e| run_err(e.into()))?
                        .into()
                }
            };
            values.push((t.name.to_string(), v));
        }
        let outputs = session.run(values).map_err(|e| run_err(e.into()))?;
        let mut result = Vec::with_capacity(self.signature.outputs.len());
        for spec in &self.signature.outputs {
            let value = outputs.get(&spec.name).ok_or_else(|| {
                run_err(format!("output '{}' missing from the results", spec.name).into())
            })?;
            result.push(extract(&spec.name, value).map_err(run_err)?);
        }
        Ok(result)
    }
}

fn new_session(bytes: &[u8], options: &OnnxOptions) -> std::result::Result<Session, BoxError> {
    let env = environment()?;
    let level = if options.optimize {
        GraphOptimizationLevel::All
    } else {
        GraphOptimizationLevel::Disable
    };
    // The builder's errors carry the builder back; only the error is kept.
    let keep = |e: ort::Error<ort::session::builder::SessionBuilder>| {
        let e: ort::Error = e.into();
        BoxError::from(e)
    };
    Ok(Session::builder(env)?
        .with_optimization_level(level)
        .map_err(keep)?
        .with_intra_threads(options.intra_threads.max(1))
        .map_err(keep)?
        .with_inter_threads(1)
        .map_err(keep)?
        .commit_from_memory(bytes)?)
}

impl InferenceModel for OnnxModel {
    fn signature(&self) -> &ModelSignature {
        &self.signature
    }

    fn run(&self, inputs: &[InputTensor<'_>]) -> Result<Vec<OutputTensor>> {
        // A free session if there is one; otherwise wait for the first (all are busy with
        // other instances' calls, which end soon).
        let n = self.sessions.len();
        let start = thread_slot() % n;
        let mut guard = (0..n)
            .find_map(|k| self.sessions[(start + k) % n].try_lock())
            .unwrap_or_else(|| self.sessions[start].lock());
        if guard.is_none() {
            *guard = Some(new_session(&self.bytes, &self.options).map_err(|source| {
                InferenceError::Load {
                    path: self.path.clone(),
                    source,
                }
            })?);
        }
        let session = guard.as_mut().expect("created above");
        self.run_in(session, inputs)
    }

    fn describe(&self) -> String {
        self.path.clone()
    }
}

/// A number per thread, to spread threads over the session pool.
fn thread_slot() -> usize {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    std::thread::current().id().hash(&mut h);
    h.finish() as usize
}

fn elem(t: TensorElementType) -> Option<ElementType> {
    Some(match t {
        TensorElementType::Float32 => ElementType::F32,
        TensorElementType::Float64 => ElementType::F64,
        TensorElementType::Int32 => ElementType::I32,
        TensorElementType::Int64 => ElementType::I64,
        TensorElementType::Bool => ElementType::Bool,
        TensorElementType::String => ElementType::Str,
        _ => return None,
    })
}

fn spec(name: &str, ty: &ValueType) -> std::result::Result<TensorSpec, BoxError> {
    let kind = match ty {
        ValueType::Tensor { ty: t, shape, .. } => ValueKind::Tensor {
            elem: elem(*t).ok_or_else(|| {
                format!("'{name}' has element type {t:?}, which ferroflow does not map to Arrow")
            })?,
            shape: shape
                .iter()
                .map(|&d| if d >= 0 { Some(d as usize) } else { None })
                .collect(),
        },
        ValueType::Sequence(inner) => match inner.as_ref() {
            ValueType::Map { key, value } if *value == TensorElementType::Float32 => {
                ValueKind::ProbabilityMaps {
                    key: elem(*key)
                        .filter(|k| matches!(k, ElementType::I64 | ElementType::Str))
                        .ok_or_else(|| format!("'{name}' has map keys of type {key:?}"))?,
                }
            }
            other => {
                return Err(format!("'{name}' is a sequence of {other:?}, not supported").into());
            }
        },
        other => return Err(format!("'{name}' has type {other:?}, not supported").into()),
    };
    Ok(TensorSpec {
        name: name.to_string(),
        kind,
    })
}

fn extract(name: &str, value: &DynValue) -> std::result::Result<OutputTensor, BoxError> {
    let err = |e: ort::Error| Context::boxed(format!("output '{name}'"), e);
    match value.dtype() {
        ValueType::Tensor { ty, .. } => {
            let (shape, data) = match ty {
                TensorElementType::Float32 => {
                    let (s, d) = value.try_extract_tensor::<f32>().map_err(err)?;
                    (s.to_vec(), OutputData::F32(d.to_vec()))
                }
                TensorElementType::Float64 => {
                    let (s, d) = value.try_extract_tensor::<f64>().map_err(err)?;
                    (s.to_vec(), OutputData::F64(d.to_vec()))
                }
                TensorElementType::Int32 => {
                    let (s, d) = value.try_extract_tensor::<i32>().map_err(err)?;
                    (s.to_vec(), OutputData::I32(d.to_vec()))
                }
                TensorElementType::Int64 => {
                    let (s, d) = value.try_extract_tensor::<i64>().map_err(err)?;
                    (s.to_vec(), OutputData::I64(d.to_vec()))
                }
                TensorElementType::Bool => {
                    let (s, d) = value.try_extract_tensor::<bool>().map_err(err)?;
                    (s.to_vec(), OutputData::Bool(d.to_vec()))
                }
                TensorElementType::String => {
                    let (s, d) = value.try_extract_strings().map_err(err)?;
                    (s.to_vec(), OutputData::Str(d))
                }
                other => return Err(format!("output '{name}' has element type {other:?}").into()),
            };
            Ok(OutputTensor {
                name: name.to_string(),
                shape: shape.iter().map(|&d| d.max(0) as usize).collect(),
                data,
            })
        }
        ValueType::Sequence(_) => {
            let maps = value
                .try_extract_sequence::<DynMapValueType>()
                .map_err(err)?;
            let rows = maps.len();
            let mut probs = Vec::new();
            let mut width = None;
            for m in &maps {
                let mut row: Vec<(Cow<'_, str>, i64, f32)> = match m.dtype() {
                    ValueType::Map {
                        key: TensorElementType::Int64,
                        ..
                    } => m
                        .try_extract_key_values::<i64, f32>()
                        .map_err(err)?
                        .into_iter()
                        .map(|(k, v)| (Cow::Borrowed(""), k, v))
                        .collect(),
                    _ => m
                        .try_extract_key_values::<String, f32>()
                        .map_err(err)?
                        .into_iter()
                        .map(|(k, v)| (Cow::Owned(k), 0, v))
                        .collect(),
                };
                // Class order: the order the probabilities are listed in.
                row.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
                if *width.get_or_insert(row.len()) != row.len() {
                    return Err(format!("output '{name}': rows have different class counts").into());
                }
                probs.extend(row.into_iter().map(|(_, _, v)| v));
            }
            Ok(OutputTensor {
                name: name.to_string(),
                shape: vec![rows, width.unwrap_or(0)],
                data: OutputData::F32(probs),
            })
        }
        other => Err(format!("output '{name}' has type {other:?}, not supported").into()),
    }
}
