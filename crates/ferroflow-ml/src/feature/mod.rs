//! Feature engineering stages (Flink ML's `org.apache.flink.ml.feature`).

pub mod bucketizer;
pub mod dct;
pub mod elementwise_product;
pub mod interaction;
pub mod max_abs_scaler;
pub mod min_max_scaler;
pub mod normalizer;
pub mod polynomial_expansion;
pub mod standard_scaler;
pub mod tokenizer;
pub mod vector_assembler;
