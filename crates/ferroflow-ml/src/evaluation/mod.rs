//! Evaluators (Flink ML's `org.apache.flink.ml.evaluation`).

pub mod binary_classification;
pub mod multiclass_regression;
