//! Model inference as dataflow nodes.
//!
//! A [`ModelNode`] appends a model's outputs to every row of a stream:
//!
//! ```text
//! stream ── predict("score", ModelNode::onnx("model.onnx")) ──▶ stream + output columns
//! versions ─┘ (predict_with_versions: hot swap between calls)
//! ```
//!
//! - [`InferenceModel`] / [`ModelLoader`]: what a runtime implements. ONNX Runtime is here
//!   ([`OnnxModel`], loaded from the library `scripts/setup-runtimes.sh` unpacks);
//!   TorchScript is in `ferroflow-torch`.
//! - [`Binding`]: columns to tensors (zero-copy where the Arrow buffer already has the
//!   model's element type) and outputs to columns, checked when the job is built.
//! - [`AdaptiveBatcher`]: model calls sized toward a latency target.
//! - [`load_shared`]: one loaded model per process, shared by all instances and jobs.

mod batching;
mod binding;
mod error;
mod model;
#[cfg(feature = "model-center")]
mod model_center;
mod node;
mod onnx;

pub use batching::{AdaptiveBatcher, BatchConfig};
pub use binding::{Binding, InputMapping, OutputMapping, OutputShape};
pub use error::{BoxError, Context, InferenceError, Result};
pub use model::{
    ElementType, InferenceModel, InputTensor, ModelLoader, ModelSignature, OutputData,
    OutputTensor, TensorData, TensorSpec, ValueKind, load_shared,
};
#[cfg(feature = "model-center")]
pub use model_center::ModelCenterSource;
pub use node::{
    ModelNode, ModelStreamExt, SwapMode, URI_COLUMN, VERSION_COLUMN, model_version_schema,
};
pub use onnx::{
    ONNX_RUNTIME_VERSION, OnnxLoader, OnnxModel, OnnxOptions, default_library_path,
    init_onnx_runtime, onnx_environment,
};
/// The `ort` crate this crate is built on (same version), for direct sessions.
pub use ort;
