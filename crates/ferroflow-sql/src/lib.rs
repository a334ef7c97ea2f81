//! SQL for ferroflow, through DataFusion.
//!
//! - [`ExprStreamExt`]: `filter` and `select` with SQL expressions on any
//!   [`DataStream`](ferroflow_engine::DataStream), planned when the job is built;
//! - [`BatchSql`]: batch SQL over CSV, JSON-lines and Parquet files (`ferroflow sql`);
//! - [`StreamingSql`]: windowed aggregations in SQL compiled onto the engine's own operators,
//!   so they also run on unbounded input;
//! - `ml_stages` (feature `ml`): ML stages that need SQL (Flink ML's SQLTransformer).

mod batch;
mod error;
mod expr;
#[cfg(feature = "ml")]
pub mod ml_stages;
mod streaming;

pub use batch::BatchSql;
pub use error::{Result, SqlError};
pub use expr::{ExprStreamExt, PlannedExpr, plan_expr, split_alias};
#[cfg(feature = "ml")]
pub use ml_stages::{ml_stages, register_ml_stages};
pub use streaming::{StreamingSql, parse_interval};
