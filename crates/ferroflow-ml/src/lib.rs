//! ferroflow's ML library: Flink ML's stage API, params and algorithms, compatible with Flink
//! ML by class name, param names and results.
//!
//! - [`stage`]: `Stage`, `AlgoOperator`, `Estimator`, `Model`; stages by class name (full or
//!   short); save and load in Flink ML's metadata layout.
//! - [`params`]: typed params with Flink ML's names, defaults and validators.
//! - [`vector`]: dense and sparse vectors and their Arrow columns.
//! - [`io`]: tables as JSON lines in the conformance encoding.
//! - [`feature`]: feature stages; [`linear`]: LogisticRegression, LinearSVC,
//!   LinearRegression on [`optimizer`]'s SGD (Flink ML's semantics and losses).
//!
//! Tables are Arrow `RecordBatch`es: fit reads a bounded table; a model's `transform` maps
//! a batch to a batch, so it also runs per batch on a stream.

pub mod alink;
pub mod als;
mod classes;
pub mod classification;
pub mod clustering;
pub mod dataflow;
mod error;
pub mod evaluation;
pub mod feature;
pub mod gbdt;
pub mod graph;
pub mod io;
mod java;
pub mod linear;
pub mod online;
pub mod optimizer;
pub mod params;
pub mod pipeline;
pub mod recommendation;
mod simd;
pub mod stage;
pub mod stats;
pub mod swap;
mod table;
pub mod vector;
pub mod version_metrics;

pub use classes::{builtin_stages, create_stage, load_stage, stage_classes, stage_from_json};
pub use dataflow::{FittedModel, MlStreamExt, OnlineFit};
pub use error::{BoxError, MlError, Result};
pub use graph::{StageGraph, StageGraphBuilder, StageGraphModel, TableId};
pub use params::{ParamSpec, ParamType, Params, Validator};
pub use stage::{
    AlgoOperator, AnyStage, Estimator, Factory, FromJson, Loader, Model, Stage, StageRegistry,
    save_model, save_stage,
};
pub use swap::VersionedModel;
pub use vector::Vector;

/// Implements [`Stage`] for a struct with a `params: Params` field.
#[macro_export]
#[doc(hidden)]
macro_rules! impl_stage {
    ($ty:ty, $class:expr) => {
        impl $crate::stage::Stage for $ty {
            fn class_name(&self) -> &'static str {
                $class
            }
            fn params(&self) -> &$crate::params::Params {
                &self.params
            }
            fn params_mut(&mut self) -> &mut $crate::params::Params {
                &mut self.params
            }
        }
    };
}

/// Declares a stage: the struct (its `params` plus its model data, each field starting at its
/// `Default`), `Default` with the given param specs, and [`Stage`] with the Flink ML class name.
#[macro_export]
#[doc(hidden)]
macro_rules! stage {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident($class:expr, $specs:expr) {
            $($(#[$field_meta:meta])* $field:ident: $field_ty:ty),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone)]
        $vis struct $name {
            params: $crate::params::Params,
            $($(#[$field_meta])* $field: $field_ty,)*
        }

        impl Default for $name {
            fn default() -> Self {
                $name {
                    params: $crate::params::Params::new($specs),
                    $($field: Default::default(),)*
                }
            }
        }

        $crate::impl_stage!($name, $class);
    };
}
