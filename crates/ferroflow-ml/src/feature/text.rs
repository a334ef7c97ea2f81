//! Term features: HashingTF (hashed term frequencies), CountVectorizer (vocabulary term
//! counts) and IDF (inverse document frequency weights).

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::builder::{ListBuilder, StringBuilder};
use arrow_array::cast::AsArray;
use arrow_array::{Array, Int64Array, RecordBatch};
use arrow_schema::DataType;
use serde_json::json;

use crate::error::{MlError, Result};
use crate::params::{ParamSpec, ParamType, Params, Validator, common};
use crate::stage::{AlgoOperator, Estimator, Model};
use crate::table::first;
use crate::table::{column, model_vector, one_row, training_vectors, vectors, with_columns};
use crate::vector::{Vector, dense_column, vector_column};

/// MurmurHash3 (x86, 32-bit) of `data` with `seed`.
pub fn murmur3_32(data: &[u8], seed: u32) -> u32 {
    const C1: u32 = 0xcc9e_2d51;
    const C2: u32 = 0x1b87_3593;
    let mut h = seed;
    let chunks = data.chunks_exact(4);
    let tail = chunks.remainder();
    for c in chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
        h ^= k;
        h = h.rotate_left(13).wrapping_mul(5).wrapping_add(0xe654_6b64);
    }
    if !tail.is_empty() {
        let mut k = 0u32;
        for (i, &b) in tail.iter().enumerate() {
            k |= (b as u32) << (8 * i);
        }
        h ^= k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
    }
    h ^= data.len() as u32;
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

/// Guava's `murmur3_32().hashUnencodedChars(s)`: the hash of the UTF-16 code units,
/// little-endian, which is what Flink ML's HashingTF hashes (not UTF-8).
pub fn hash_unencoded_chars(s: &str) -> i32 {
    let bytes: Vec<u8> = s.encode_utf16().flat_map(u16::to_le_bytes).collect();
    murmur3_32(&bytes, 0) as i32
}

/// Terms (list of strings) of every row.
fn term_lists(batch: &RecordBatch, name: &str) -> Result<Vec<Option<Vec<Option<String>>>>> {
    let col = column(batch, name)?;
    let list = match col.data_type() {
        DataType::List(f)
            if matches!(
                f.data_type(),
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
            ) =>
        {
            col.as_list::<i32>()
        }
        other => {
            return Err(MlError::column(
                name,
                format!("type {other} is not a list of strings"),
            ));
        }
    };
    Ok((0..list.len())
        .map(|i| {
            (!list.is_null(i)).then(|| {
                let v = arrow_cast::cast(&list.value(i), &DataType::Utf8)
                    .expect("strings cast to Utf8");
                v.as_string::<i32>()
                    .iter()
                    .map(|s| s.map(str::to_string))
                    .collect()
            })
        })
        .collect())
}

/// HashingTF: `inputCol` (list of strings), `outputCol`, `numFeatures` (262144), `binary`.
#[derive(Debug, Clone)]
pub struct HashingTf {
    params: Params,
}

impl Default for HashingTf {
    fn default() -> Self {
        HashingTf {
            params: Params::new(vec![
                common::input_col(),
                common::output_col(),
                ParamSpec::new(
                    "numFeatures",
                    ParamType::Int,
                    json!(262144),
                    Validator::Gt(0.0),
                ),
                ParamSpec::new("binary", ParamType::Bool, json!(false), Validator::Always),
            ]),
        }
    }
}

crate::impl_stage!(HashingTf, "org.apache.flink.ml.feature.hashingtf.HashingTF");

impl AlgoOperator for HashingTf {
    fn transform(&self, inputs: &[RecordBatch]) -> Result<Vec<RecordBatch>> {
        let batch = first(inputs)?;
        let (input, output) = (self.params.str("inputCol")?, self.params.str("outputCol")?);
        let n = self.params.i64("numFeatures")?;
        let binary = self.params.bool("binary")?;
        let out: Vec<Option<Vector>> = term_lists(batch, &input)?
            .into_iter()
            .map(|terms| {
                terms.map(|terms| {
                    let mut counts: std::collections::BTreeMap<usize, f64> = Default::default();
                    for t in terms {
                        let h = t.as_deref().map_or(0, hash_unencoded_chars) as i64;
                        let idx = h.rem_euclid(n) as usize;
                        let c = counts.entry(idx).or_insert(0.0);
                        *c = if binary { 1.0 } else { *c + 1.0 };
                    }
                    Vector::Sparse {
                        size: n as usize,
                        indices: counts.keys().copied().collect(),
                        values: counts.values().copied().collect(),
                    }
                })
            })
            .collect();
        Ok(vec![with_columns(
            batch,
            vec![(output, vector_column(&out))],
        )?])
    }
}

fn cv_specs() -> Vec<ParamSpec> {
    vec![
        common::input_col(),
        common::output_col(),
        ParamSpec::new(
            "vocabularySize",
            ParamType::Int,
            json!(1 << 18),
            Validator::Gt(0.0),
        ),
        ParamSpec::new("minDF", ParamType::Double, json!(1.0), Validator::GtEq(0.0)),
        ParamSpec::new(
            "maxDF",
            ParamType::Double,
            json!(i64::MAX as f64),
            Validator::GtEq(0.0),
        ),
        ParamSpec::new("minTF", ParamType::Double, json!(1.0), Validator::GtEq(0.0)),
        ParamSpec::new("binary", ParamType::Bool, json!(false), Validator::Always),
    ]
}

crate::stage! {
    /// CountVectorizer: a vocabulary of the most frequent terms (document frequency within
    /// `[minDF, maxDF]`, counts or fractions), then per-row term counts.
    pub struct CountVectorizer("org.apache.flink.ml.feature.countvectorizer.CountVectorizer", cv_specs()) {}
}

impl Estimator for CountVectorizer {
    fn fit(&self, inputs: &[RecordBatch]) -> Result<Box<dyn Model>> {
        let docs = term_lists(first(inputs)?, &self.params.str("inputCol")?)?;
        let n = docs.iter().flatten().count() as f64;
        let bound = |x: f64| if x >= 1.0 { x } else { x * n };
        let (min_df, max_df) = (
            bound(self.params.f64("minDF")?),
            bound(self.params.f64("maxDF")?),
        );
        if min_df > max_df {
            return Err(MlError::param("maxDF", "must be >= minDF"));
        }
        let mut total: HashMap<String, u64> = HashMap::new();
        let mut df: HashMap<String, u64> = HashMap::new();
        for doc in docs.iter().flatten() {
            let mut seen = std::collections::HashSet::new();
            for t in doc.iter().flatten() {
                *total.entry(t.clone()).or_insert(0) += 1;
                if seen.insert(t) {
                    *df.entry(t.clone()).or_insert(0) += 1;
                }
            }
        }
        let mut vocab: Vec<(String, u64)> = total
            .into_iter()
            .filter(|(t, _)| {
                let d = df[t] as f64;
                d >= min_df && d <= max_df
            })
            .collect();
        // Most frequent first; ties by term, so the result does not depend on hashing.
        vocab.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        vocab.truncate(self.params.i64("vocabularySize")? as usize);
        Ok(Box::new(CountVectorizerModel {
            params: self.params.clone(),
            vocabulary: vocab.into_iter().map(|(t, _)| t).collect(),
        }))
    }
}

crate::stage! {
    /// The fitted model: model data `vocabulary`.
    pub struct CountVectorizerModel("org.apache.flink.ml.feature.countvectorizer.CountVectorizerModel", cv_specs()) {
        vocabulary: Vec<String>,
    }
}

impl AlgoOperator for CountVectorizerModel {
    fn transform(&self, inputs: &[RecordBatch]) -> Result<Vec<RecordBatch>> {
        let batch = first(inputs)?;
        let (input, output) = (self.params.str("inputCol")?, self.params.str("outputCol")?);
        let (min_tf, binary) = (self.params.f64("minTF")?, self.params.bool("binary")?);
        let index: HashMap<&str, usize> = self
            .vocabulary
            .iter()
            .enumerate()
            .map(|(i, t)| (t.as_str(), i))
            .collect();
        let out: Vec<Option<Vector>> = term_lists(batch, &input)?
            .into_iter()
            .map(|doc| {
                doc.map(|doc| {
                    let mut counts: std::collections::BTreeMap<usize, f64> = Default::default();
                    for t in doc.iter().flatten() {
                        if let Some(&i) = index.get(t.as_str()) {
                            *counts.entry(i).or_insert(0.0) += 1.0;
                        }
                    }
                    let threshold = if min_tf >= 1.0 {
                        min_tf
                    } else {
                        min_tf * doc.len() as f64
                    };
                    counts.retain(|_, c| *c >= threshold);
                    Vector::Sparse {
                        size: self.vocabulary.len(),
                        indices: counts.keys().copied().collect(),
                        values: counts
                            .values()
                            .map(|&c| if binary { 1.0 } else { c })
                            .collect(),
                    }
                })
            })
            .collect();
        Ok(vec![with_columns(
            batch,
            vec![(output, vector_column(&out))],
        )?])
    }
}

impl Model for CountVectorizerModel {
    fn model_data(&self) -> Result<Vec<RecordBatch>> {
        let mut b = ListBuilder::new(StringBuilder::new());
        for t in &self.vocabulary {
            b.values().append_value(t);
        }
        b.append(true);
        Ok(vec![one_row(vec![("vocabulary", Arc::new(b.finish()))])?])
    }

    fn set_model_data(&mut self, data: &[RecordBatch]) -> Result<()> {
        let lists = term_lists(first(data)?, "vocabulary")?;
        self.vocabulary = lists
            .into_iter()
            .next()
            .flatten()
            .ok_or_else(|| MlError::column("vocabulary", "empty"))?
            .into_iter()
            .map(Option::unwrap_or_default)
            .collect();
        Ok(())
    }
}

fn idf_specs() -> Vec<ParamSpec> {
    vec![
        common::input_col(),
        common::output_col(),
        ParamSpec::new("minDocFreq", ParamType::Int, json!(0), Validator::GtEq(0.0)),
    ]
}

crate::stage! {
    /// IDF: `idf_j = log((numDocs + 1) / (docFreq_j + 1))`, 0 for terms in fewer than
    /// `minDocFreq` documents; the output is `x .* idf`.
    pub struct Idf("org.apache.flink.ml.feature.idf.IDF", idf_specs()) {}
}

impl Estimator for Idf {
    fn fit(&self, inputs: &[RecordBatch]) -> Result<Box<dyn Model>> {
        let docs = training_vectors(first(inputs)?, &self.params.str("inputCol")?)?;
        let min = self.params.i64("minDocFreq")? as u64;
        let mut df = vec![0u64; docs[0].size()];
        for d in &docs {
            for (j, x) in d.stored() {
                if x != 0.0 {
                    df[j] += 1;
                }
            }
        }
        let n = docs.len() as f64;
        let idf = df
            .iter()
            .map(|&d| {
                if d >= min {
                    ((n + 1.0) / (d as f64 + 1.0)).ln()
                } else {
                    0.0
                }
            })
            .collect();
        Ok(Box::new(IdfModel {
            params: self.params.clone(),
            idf,
            doc_freq: df,
            num_docs: docs.len() as i64,
        }))
    }
}

crate::stage! {
    /// The fitted model: model data `idf`, `docFreq`, `numDocs`.
    pub struct IdfModel("org.apache.flink.ml.feature.idf.IDFModel", idf_specs()) {
        idf: Vec<f64>,
        doc_freq: Vec<u64>,
        num_docs: i64,
    }
}

impl AlgoOperator for IdfModel {
    fn transform(&self, inputs: &[RecordBatch]) -> Result<Vec<RecordBatch>> {
        let batch = first(inputs)?;
        let (input, output) = (self.params.str("inputCol")?, self.params.str("outputCol")?);
        let mut out = Vec::with_capacity(batch.num_rows());
        for (row, v) in vectors(batch, &input)?.into_iter().enumerate() {
            out.push(match v {
                None => None,
                Some(v) if v.size() != self.idf.len() => {
                    return Err(MlError::Row {
                        row,
                        message: format!(
                            "column '{input}': vector of size {}, the model has {}",
                            v.size(),
                            self.idf.len()
                        ),
                    });
                }
                Some(Vector::Dense(x)) => Some(Vector::Dense(
                    x.iter().zip(&self.idf).map(|(a, w)| a * w).collect(),
                )),
                Some(Vector::Sparse {
                    size,
                    indices,
                    values,
                }) => {
                    let values = indices
                        .iter()
                        .zip(&values)
                        .map(|(&i, a)| a * self.idf[i])
                        .collect();
                    Some(Vector::Sparse {
                        size,
                        indices,
                        values,
                    })
                }
            });
        }
        Ok(vec![with_columns(
            batch,
            vec![(output, vector_column(&out))],
        )?])
    }
}

impl Model for IdfModel {
    fn model_data(&self) -> Result<Vec<RecordBatch>> {
        let doc_freq: Vec<f64> = self.doc_freq.iter().map(|&d| d as f64).collect();
        Ok(vec![one_row(vec![
            ("idf", dense_column(&[Some(self.idf.clone())])),
            ("docFreq", dense_column(&[Some(doc_freq)])),
            ("numDocs", Arc::new(Int64Array::from(vec![self.num_docs]))),
        ])?])
    }

    fn set_model_data(&mut self, data: &[RecordBatch]) -> Result<()> {
        let t = first(data)?;
        self.idf = model_vector(t, "idf")?;
        self.doc_freq = model_vector(t, "docFreq")?
            .iter()
            .map(|&d| d as u64)
            .collect();
        let n = arrow_cast::cast(column(t, "numDocs")?, &DataType::Int64)?;
        self.num_docs = n.as_primitive::<arrow_array::types::Int64Type>().value(0);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::hash_unencoded_chars;

    // The indices Flink ML's HashingTFTest expects (numFeatures 262144).
    #[test]
    fn terms_hash_like_guava() {
        for (t, want) in [
            ("HashingTFTest", 67564),
            ("Hashing", 131486),
            ("Term", 113827),
            ("Frequency", 89917),
            ("Test", 228971),
        ] {
            assert_eq!(
                (hash_unencoded_chars(t) as i64).rem_euclid(262144),
                want,
                "{t}"
            );
        }
    }
}
