//! Feature engineering stages (Flink ML's `org.apache.flink.ml.feature`).

pub mod bucketizer;
pub mod max_abs_scaler;
pub mod min_max_scaler;
pub mod normalizer;
pub mod standard_scaler;
pub mod vector_assembler;
