//! YAML job specs: the same jobs as the Rust API, for people who do not write Rust.
//!
//! See `docs/job-spec.md` in the repository for the format. [`load`] reads a spec file and
//! returns a [`JobGraph`](ferroflow_engine::JobGraph) ready for the runtime.

//!
//! Source types, sink types and extension operations are open: [`Factories`] maps the names
//! a spec uses to the [`SourceFactory`], [`SinkFactory`] and [`NodeFactory`] that build them,
//! each reading its entry's [`Settings`] into its own typed configuration.

mod builtin;
mod compile;
mod context;
mod error;
mod registry;
pub mod spec;
mod values;

pub use compile::{build, build_spec, build_spec_with, load, load_with, parse};
pub use error::{Result, SpecError};
pub use registry::{BuildContext, Factories, NodeFactory, NodeInputs, SinkFactory, SourceFactory};
pub use spec::{JobSpec, Settings};
pub use values::{parse_aggregate, parse_duration, parse_type};
