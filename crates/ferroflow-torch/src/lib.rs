//! TorchScript as dataflow nodes, through libtorch (`tch`).
//!
//! - [`TorchLoader`] / [`TorchModel`]: TorchScript modules for `ferroflow-inference`'s model
//!   node (`ModelNode::new(Arc::new(TorchLoader::new(options)), path)`): the same batching,
//!   sharing and hot swap as ONNX models. Input columns become tensors without a copy
//!   (`Tensor::from_blob`) when their Arrow buffer has the right element type.
//! - [`TorchTrainer`] / [`TorchStreamExt::train_torch`]: training on streaming batches,
//!   emitting model versions a prediction node downstream picks up.
//!
//! libtorch 2.13.0 comes from the PyPI torch wheel (`scripts/setup-runtimes.sh`); the build
//! script adds an rpath to it.

mod model;
mod optim;
mod train;

pub use model::{LIBTORCH_VERSION, TorchLoader, TorchModel, TorchOptions, input, scalar_input};
pub use optim::Optimizer;
pub use train::{Loss, TorchStreamExt, TorchTrainer, trainer_output_schema};
