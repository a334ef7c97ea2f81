//! Small feature transformers: Binarizer, VectorSlicer, NGram, FeatureHasher, RandomSplitter.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::builder::{ListBuilder, StringBuilder};
use arrow_array::cast::AsArray;
use arrow_array::{Array, Float64Array, RecordBatch};
use arrow_schema::DataType;
use serde_json::{Value, json};

use super::string_indexer::java_double;
use super::text::hash_unencoded_chars;
use crate::error::{MlError, Result};
use crate::params::{ParamSpec, ParamType, Params, Validator, common};
use crate::stage::AlgoOperator;
use crate::table::first;
use crate::table::{column, doubles, filter_rows, vectors, with_columns};
use crate::vector::{Vector, is_vector_type, vector_column};

/// Binarizer: values above the column's threshold become 1, others 0 (numbers and vectors;
/// sparse vectors stay sparse).
#[derive(Debug, Clone)]
pub struct Binarizer {
    params: Params,
}

impl Default for Binarizer {
    fn default() -> Self {
        Binarizer {
            params: Params::new(vec![
                common::input_cols(),
                common::output_cols(),
                ParamSpec::new(
                    "thresholds",
                    ParamType::DoubleArray,
                    Value::Null,
                    Validator::NonEmpty,
                ),
            ]),
        }
    }
}

crate::impl_stage!(Binarizer, "org.apache.flink.ml.feature.binarizer.Binarizer");

impl AlgoOperator for Binarizer {
    fn transform(&self, inputs: &[RecordBatch]) -> Result<Vec<RecordBatch>> {
        let batch = first(inputs)?;
        let ins = self.params.strings("inputCols")?;
        let outs = self.params.strings("outputCols")?;
        let ts = self.params.f64s("thresholds")?;
        if ins.len() != outs.len() || ins.len() != ts.len() {
            return Err(MlError::param(
                "thresholds",
                "inputCols, outputCols and thresholds must have the same length",
            ));
        }
        let mut columns = Vec::new();
        for ((c, o), &t) in ins.iter().zip(&outs).zip(&ts) {
            let bin = |x: f64| if x > t { 1.0 } else { 0.0 };
            if is_vector_type(column(batch, c)?.data_type()) {
                let out: Vec<Option<Vector>> = vectors(batch, c)?
                    .into_iter()
                    .map(|v| {
                        v.map(|v| match v {
                            Vector::Dense(x) => Vector::Dense(x.into_iter().map(bin).collect()),
                            Vector::Sparse {
                                size,
                                indices,
                                values,
                            } => {
                                let (indices, values) = indices
                                    .into_iter()
                                    .zip(values)
                                    .filter(|(_, x)| *x > t)
                                    .map(|(i, _)| (i, 1.0))
                                    .unzip();
                                Vector::Sparse {
                                    size,
                                    indices,
                                    values,
                                }
                            }
                        })
                    })
                    .collect();
                columns.push((o.clone(), vector_column(&out)));
            } else {
                let out: Float64Array =
                    doubles(batch, c)?.into_iter().map(|x| x.map(bin)).collect();
                columns.push((o.clone(), Arc::new(out) as _));
            }
        }
        Ok(vec![with_columns(batch, columns)?])
    }
}

/// VectorSlicer: the elements at `indices`, in that order.
#[derive(Debug, Clone)]
pub struct VectorSlicer {
    params: Params,
}

impl Default for VectorSlicer {
    fn default() -> Self {
        VectorSlicer {
            params: Params::new(vec![
                common::input_col(),
                common::output_col(),
                ParamSpec::new(
                    "indices",
                    ParamType::IntArray,
                    Value::Null,
                    Validator::NonEmpty,
                ),
            ]),
        }
    }
}

crate::impl_stage!(
    VectorSlicer,
    "org.apache.flink.ml.feature.vectorslicer.VectorSlicer"
);

impl AlgoOperator for VectorSlicer {
    fn transform(&self, inputs: &[RecordBatch]) -> Result<Vec<RecordBatch>> {
        let batch = first(inputs)?;
        let (input, output) = (self.params.str("inputCol")?, self.params.str("outputCol")?);
        let idx = self.params.i64s("indices")?;
        let mut seen = std::collections::HashSet::new();
        if idx.iter().any(|&i| i < 0 || !seen.insert(i)) {
            return Err(MlError::param(
                "indices",
                "must be distinct and non-negative",
            ));
        }
        let idx: Vec<usize> = idx.into_iter().map(|i| i as usize).collect();
        let mut out = Vec::with_capacity(batch.num_rows());
        for (row, v) in vectors(batch, &input)?.into_iter().enumerate() {
            out.push(match v {
                None => None,
                Some(v) => {
                    if let Some(&bad) = idx.iter().find(|&&i| i >= v.size()) {
                        return Err(MlError::Row {
                            row,
                            message: format!("column '{input}': index {bad} out of range for a vector of size {}", v.size()),
                        });
                    }
                    Some(v.select(&idx))
                }
            });
        }
        Ok(vec![with_columns(
            batch,
            vec![(output, vector_column(&out))],
        )?])
    }
}

/// NGram: arrays of strings to arrays of their n-grams (joined by a space).
#[derive(Debug, Clone)]
pub struct NGram {
    params: Params,
}

impl Default for NGram {
    fn default() -> Self {
        NGram {
            params: Params::new(vec![
                common::input_col(),
                common::output_col(),
                ParamSpec::new("n", ParamType::Int, json!(2), Validator::GtEq(1.0)),
            ]),
        }
    }
}

crate::impl_stage!(NGram, "org.apache.flink.ml.feature.ngram.NGram");

impl AlgoOperator for NGram {
    fn transform(&self, inputs: &[RecordBatch]) -> Result<Vec<RecordBatch>> {
        let batch = first(inputs)?;
        let (input, output) = (self.params.str("inputCol")?, self.params.str("outputCol")?);
        let n = self.params.i64("n")? as usize;
        let col = column(batch, &input)?;
        let DataType::List(_) = col.data_type() else {
            return Err(MlError::column(
                &input,
                format!("type {} is not a list of strings", col.data_type()),
            ));
        };
        let list = col.as_list::<i32>();
        let mut b = ListBuilder::new(StringBuilder::new());
        for i in 0..list.len() {
            if list.is_null(i) {
                b.append(false);
                continue;
            }
            let v = arrow_cast::cast(&list.value(i), &DataType::Utf8)?;
            let tokens: Vec<&str> = v
                .as_string::<i32>()
                .iter()
                .map(|s| s.unwrap_or("null"))
                .collect();
            for w in tokens.windows(n) {
                b.values().append_value(w.join(" "));
            }
            b.append(true);
        }
        Ok(vec![with_columns(
            batch,
            vec![(output, Arc::new(b.finish()) as _)],
        )?])
    }
}

/// FeatureHasher: columns hashed into one sparse vector. Numeric columns (not listed in
/// `categoricalCols`) add their value at `hash(column)`; others add 1 at
/// `hash(column=value)` (hashes as Flink ML's: murmur3 over UTF-16, non-negative modulo).
#[derive(Debug, Clone)]
pub struct FeatureHasher {
    params: Params,
}

impl Default for FeatureHasher {
    fn default() -> Self {
        FeatureHasher {
            params: Params::new(vec![
                common::input_cols(),
                common::output_col(),
                ParamSpec::new(
                    "categoricalCols",
                    ParamType::StringArray,
                    json!([]),
                    Validator::Always,
                ),
                ParamSpec::new(
                    "numFeatures",
                    ParamType::Int,
                    json!(262144),
                    Validator::Gt(0.0),
                ),
            ]),
        }
    }
}

crate::impl_stage!(
    FeatureHasher,
    "org.apache.flink.ml.feature.featurehasher.FeatureHasher"
);

impl AlgoOperator for FeatureHasher {
    fn transform(&self, inputs: &[RecordBatch]) -> Result<Vec<RecordBatch>> {
        let batch = first(inputs)?;
        let cols = self.params.strings("inputCols")?;
        let categorical = self.params.strings("categoricalCols")?;
        let n = self.params.i64("numFeatures")?;
        // Flink ML: floorMod(Math.abs(hash), n); Math.abs keeps Integer.MIN_VALUE negative.
        let index =
            |s: &str| (hash_unencoded_chars(s).wrapping_abs() as i64).rem_euclid(n) as usize;
        let mut acc: Vec<BTreeMap<usize, f64>> = vec![BTreeMap::new(); batch.num_rows()];
        // As Flink ML: first the input columns not named categorical, as numbers (another
        // type is an error, not silently a category), then every categorical column, in
        // `categoricalCols` order (the order sums of colliding indices are added in).
        for c in cols.iter().filter(|c| !categorical.contains(c)) {
            let col = column(batch, c)?;
            if !col.data_type().is_numeric() {
                return Err(MlError::column(
                    c,
                    format!(
                        "type {} is not numeric: name it in categoricalCols to hash its values \
                         as categories",
                        col.data_type()
                    ),
                ));
            }
            let i = index(c);
            for (r, x) in doubles(batch, c)?.into_iter().enumerate() {
                if let Some(x) = x {
                    *acc[r].entry(i).or_insert(0.0) += x;
                }
            }
        }
        for c in &categorical {
            let col = column(batch, c)?;
            let text: Vec<Option<String>> = match col.data_type() {
                dt if dt.is_floating() => doubles(batch, c)?
                    .into_iter()
                    .map(|x| x.map(java_double))
                    .collect(),
                _ => {
                    let s = arrow_cast::cast(col, &DataType::Utf8)?;
                    s.as_string::<i32>()
                        .iter()
                        .map(|v| v.map(str::to_string))
                        .collect()
                }
            };
            for (r, v) in text.into_iter().enumerate() {
                if let Some(v) = v {
                    *acc[r].entry(index(&format!("{c}={v}"))).or_insert(0.0) += 1.0;
                }
            }
        }
        let out: Vec<Option<Vector>> = acc
            .into_iter()
            .map(|m| {
                Some(Vector::Sparse {
                    size: n as usize,
                    indices: m.keys().copied().collect(),
                    values: m.values().copied().collect(),
                })
            })
            .collect();
        Ok(vec![with_columns(
            batch,
            vec![(self.params.str("outputCol")?, vector_column(&out))],
        )?])
    }
}

/// RandomSplitter: rows split at random into tables in proportion to `weights` (one output
/// table per weight), reproducibly for a `seed`.
#[derive(Debug, Clone)]
pub struct RandomSplitter {
    params: Params,
}

impl Default for RandomSplitter {
    fn default() -> Self {
        RandomSplitter {
            params: Params::new(vec![
                ParamSpec::new(
                    "weights",
                    ParamType::DoubleArray,
                    json!([1.0, 1.0]),
                    Validator::NonEmpty,
                ),
                ParamSpec::new("seed", ParamType::Int, json!(0), Validator::Always),
            ]),
        }
    }
}

crate::impl_stage!(
    RandomSplitter,
    "org.apache.flink.ml.feature.randomsplitter.RandomSplitter"
);

impl AlgoOperator for RandomSplitter {
    fn transform(&self, inputs: &[RecordBatch]) -> Result<Vec<RecordBatch>> {
        let batch = first(inputs)?;
        let w = self.params.f64s("weights")?;
        if w.len() < 2 || w.iter().any(|&x| x <= 0.0) {
            return Err(MlError::param("weights", "at least two positive weights"));
        }
        let total: f64 = w.iter().sum();
        let mut bounds = Vec::with_capacity(w.len());
        let mut acc = 0.0;
        for x in &w {
            acc += x / total;
            bounds.push(acc);
        }
        let mut state = (self.params.i64("seed")? as u64) ^ 0x9e37_79b9_7f4a_7c15;
        let assign: Vec<usize> = (0..batch.num_rows())
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let u = (state >> 11) as f64 / (1u64 << 53) as f64;
                bounds.iter().position(|&b| u < b).unwrap_or(w.len() - 1)
            })
            .collect();
        (0..w.len())
            .map(|k| filter_rows(batch, &assign.iter().map(|&a| a == k).collect::<Vec<_>>()))
            .collect()
    }
}
