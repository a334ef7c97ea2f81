//! YAML job specs: the same jobs as the Rust API, for people who do not write Rust.
//!
//! See `docs/job-spec.md` in the repository for the format. [`load`] reads a spec file and
//! returns a [`JobGraph`](ferroflow_engine::JobGraph) ready for the runtime.

mod compile;
mod error;
pub mod spec;

pub use compile::{build, build_spec, load, parse, parse_aggregate, parse_duration, parse_type};
pub use error::{Result, SpecError};
pub use spec::JobSpec;
