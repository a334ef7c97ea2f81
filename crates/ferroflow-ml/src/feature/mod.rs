//! Feature engineering stages (Flink ML's `org.apache.flink.ml.feature`).

pub mod bucketizer;
pub mod dct;
pub mod elementwise_product;
pub mod imputer;
pub mod interaction;
pub mod kbins_discretizer;
pub mod max_abs_scaler;
pub mod min_hash_lsh;
pub mod min_max_scaler;
pub mod normalizer;
pub mod one_hot_encoder;
pub mod pca;
pub mod polynomial_expansion;
pub mod robust_scaler;
pub mod simple;
pub mod standard_scaler;
pub mod stop_words_remover;
pub mod string_indexer;
pub mod text;
pub mod tokenizer;
pub mod univariate_feature_selector;
pub mod variance_threshold_selector;
pub mod vector_assembler;
pub mod vector_indexer;
