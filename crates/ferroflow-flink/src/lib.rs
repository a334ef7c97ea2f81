//! The `flink` job type: when one machine is not enough, a workflow job runs on an Apache
//! Flink cluster, through its REST API only.
//!
//! - **What runs**: a job's nodes translated to Flink SQL ([`translate`]: file datasets and
//!   SQL transforms), Flink SQL as written (`sql:`), a user's own jar (`jar:`) or PyFlink
//!   script (`pyflink:`). A node that cannot be translated is refused at submission with the
//!   node and the reason; nothing silently runs natively instead.
//! - **How**: SQL goes through a small runner program (`java/FerroflowSqlRunner.java`,
//!   compiled against the cluster's own jars by `scripts/flink-local.sh runner-jar`),
//!   uploaded with `POST /jars/upload` and started with `POST /jars/<id>/run`; the job's
//!   state is polled at `/jobs/<id>`; a failure carries the root cause from
//!   `/jobs/<id>/exceptions`.
//! - **Control acts on the Flink job itself**: a stop cancels it (`PATCH
//!   /jobs/<id>?mode=cancel`) or, with `savepoints:`, stops it with a savepoint; a run
//!   with `resume: true` starts from the newest savepoint; a run that finds an earlier run's
//!   Flink job still alive (its runner was killed) stops that job first. So RESTART leaves
//!   exactly one Flink job running.
//! - **Versions**: the paths and fields used exist in Flink 1.18 to 2.x; the cluster's
//!   version is read from `/overview` and logged. CI runs against 2.3.

mod error;
mod plugin;
pub mod rest;
pub mod translate;

pub use error::{FlinkError, Result};
pub use plugin::{FlinkPlugin, PYTHON_DRIVER, RUNNER_CLASS, default_runner_jar};
pub use rest::FlinkRest;
pub use translate::{Translation, check_node, translate};
