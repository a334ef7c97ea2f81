//! MinHashLSH: locality-sensitive hashing for Jaccard distance (Flink ML's
//! `org.apache.flink.ml.feature.lsh.MinHashLSH`).
//!
//! Every non-zero entry of a vector is an element of a set. Fitting draws, from Java's
//! `java.util.Random(seed)` exactly as Flink ML does, `numHashTables *
//! numHashFunctionsPerTable` pairs (a, b); a set's hash under (a, b) is
//! `min over its indices i of ((1 + i) * a + b) mod 2038074743`. The output column holds one
//! dense vector per hash table, of `numHashFunctionsPerTable` hashes (as `[[..], [..]]`).
//! The model also answers approximate nearest-neighbour and similarity-join queries
//! ([`MinHashLshModel::approx_nearest_neighbors`], [`MinHashLshModel::approx_similarity_join`]):
//! candidates share at least one hash table's vector with each other, and the Jaccard
//! distance decides.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arrow_array::builder::{Float64Builder, ListBuilder};
use arrow_array::{ArrayRef, Float64Array, Int64Array, RecordBatch};
use serde_json::json;

use crate::error::{MlError, Result};
use crate::params::{ParamSpec, ParamType, Params, Validator, common};
use crate::stage::{AlgoOperator, Estimator, Model};
use crate::table::{column, first, one_row, vectors, with_columns};
use crate::vector::Vector;

/// A large prime smaller than sqrt(2^63 - 1) (Flink ML's `HASH_PRIME`).
const HASH_PRIME: i64 = 2_038_074_743;

const CLASS: &str = "org.apache.flink.ml.feature.lsh.MinHashLSH";

use crate::java::{JavaRandom, string_hash as java_string_hash};

fn specs() -> Vec<ParamSpec> {
    vec![
        common::input_col(),
        common::output_col(),
        ParamSpec::new(
            "seed",
            ParamType::Int,
            json!(java_string_hash(CLASS)),
            Validator::Always,
        ),
        ParamSpec::new(
            "numHashTables",
            ParamType::Int,
            json!(1),
            Validator::Gt(0.0),
        ),
        ParamSpec::new(
            "numHashFunctionsPerTable",
            ParamType::Int,
            json!(1),
            Validator::Gt(0.0),
        ),
    ]
}

crate::stage! {
    /// The estimator: draws the hash functions (the data gives only the vector size).
    pub struct MinHashLsh("org.apache.flink.ml.feature.lsh.MinHashLSH", specs()) {}
}

impl Estimator for MinHashLsh {
    fn fit(&self, inputs: &[RecordBatch]) -> Result<Box<dyn Model>> {
        let input = self.params.str("inputCol")?;
        let dim = vectors(first(inputs)?, &input)?
            .into_iter()
            .flatten()
            .next()
            .map(|v| v.size())
            .ok_or_else(|| MlError::column(&input, "no vector to size the hash functions by"))?;
        if dim as i64 > HASH_PRIME {
            return Err(MlError::column(
                &input,
                format!("vectors of size {dim} exceed the threshold {HASH_PRIME}"),
            ));
        }
        let tables = self.params.i64("numHashTables")? as usize;
        let per_table = self.params.i64("numHashFunctionsPerTable")? as usize;
        let mut random = JavaRandom::new(self.params.i64("seed")?);
        let (mut a, mut b) = (vec![], vec![]);
        for _ in 0..tables * per_table {
            a.push(1 + random.next_int((HASH_PRIME - 1) as i32) as i64);
            b.push(random.next_int((HASH_PRIME - 1) as i32) as i64);
        }
        Ok(Box::new(MinHashLshModel {
            params: self.params.clone(),
            tables,
            per_table,
            a,
            b,
        }))
    }
}

/// The fitted model: model data `numHashTables`, `numHashFunctionsPerTable`,
/// `randCoefficientA`, `randCoefficientB`.
#[derive(Debug, Clone)]
pub struct MinHashLshModel {
    params: Params,
    tables: usize,
    per_table: usize,
    a: Vec<i64>,
    b: Vec<i64>,
}

impl Default for MinHashLshModel {
    fn default() -> Self {
        MinHashLshModel {
            params: Params::new(specs()),
            tables: 0,
            per_table: 0,
            a: vec![],
            b: vec![],
        }
    }
}

crate::impl_stage!(
    MinHashLshModel,
    "org.apache.flink.ml.feature.lsh.MinHashLSHModel"
);

/// The set a vector stands for: a sparse vector's stored indices (as Flink ML's
/// `toSparse`), a dense vector's non-zero ones.
fn set_of(v: &Vector) -> Vec<usize> {
    match v {
        Vector::Sparse { indices, .. } => indices.clone(),
        Vector::Dense(d) => (0..d.len()).filter(|i| d[*i] != 0.0).collect(),
    }
}

fn jaccard_distance(x: &[usize], y: &[usize]) -> f64 {
    let (mut i, mut j, mut both) = (0, 0, 0);
    while i < x.len() && j < y.len() {
        match x[i].cmp(&y[j]) {
            std::cmp::Ordering::Equal => {
                both += 1;
                i += 1;
                j += 1;
            }
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
        }
    }
    let union = x.len() + y.len() - both;
    1.0 - both as f64 / union as f64
}

/// A row's set (its non-zero indices) and its hashes, one vector per table.
type Hashed = (Vec<usize>, Vec<Vec<f64>>);

impl MinHashLshModel {
    /// One vector of hashes per table.
    pub fn hash(&self, v: &Vector) -> Result<Vec<Vec<f64>>> {
        let set = set_of(v);
        if set.is_empty() {
            return Err(MlError::Invalid(
                "Must have at least 1 non zero entry.".into(),
            ));
        }
        Ok((0..self.tables)
            .map(|t| {
                (0..self.per_table)
                    .map(|f| {
                        let (a, b) = (
                            self.a[t * self.per_table + f],
                            self.b[t * self.per_table + f],
                        );
                        set.iter()
                            .map(|&i| ((1 + i as i64) * a + b) % HASH_PRIME)
                            .min()
                            .unwrap_or(HASH_PRIME) as f64
                    })
                    .collect()
            })
            .collect())
    }

    /// Each row's set and hashes.
    fn hashes_of(&self, batch: &RecordBatch) -> Result<Vec<Hashed>> {
        let input = self.params.str("inputCol")?;
        vectors(batch, &input)?
            .into_iter()
            .enumerate()
            .map(|(row, v)| {
                let v = v.ok_or_else(|| MlError::Row {
                    row,
                    message: format!("column '{input}' is null"),
                })?;
                let h = self.hash(&v).map_err(|e| MlError::Row {
                    row,
                    message: format!("column '{input}': {e}"),
                })?;
                Ok((set_of(&v), h))
            })
            .collect()
    }

    /// At most `k` rows of `dataset` nearest to `key` by Jaccard distance among those sharing
    /// a hash table's vector with it, nearest first, with the distance in `dist_col`.
    pub fn approx_nearest_neighbors(
        &self,
        dataset: &RecordBatch,
        key: &Vector,
        k: usize,
        dist_col: &str,
    ) -> Result<RecordBatch> {
        let key_hashes = self.hash(key)?;
        let key_set = set_of(key);
        let mut found: Vec<(f64, usize)> = self
            .hashes_of(dataset)?
            .into_iter()
            .enumerate()
            .filter(|(_, (_, h))| h.iter().zip(&key_hashes).any(|(a, b)| a == b))
            .map(|(row, (set, _))| (jaccard_distance(&set, &key_set), row))
            .collect();
        found.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        found.truncate(k);
        let rows =
            arrow_array::UInt32Array::from(found.iter().map(|f| f.1 as u32).collect::<Vec<_>>());
        let picked = arrow_select::take::take_record_batch(dataset, &rows)?;
        let dist = Arc::new(Float64Array::from(
            found.iter().map(|f| f.0).collect::<Vec<_>>(),
        )) as ArrayRef;
        with_columns(&picked, vec![(dist_col.to_string(), dist)])
    }

    /// Pairs of rows of `a` and `b` sharing a hash table's vector whose Jaccard distance is at
    /// most `threshold`: columns `datasetA.<id>`, `datasetB.<id>` and `dist_col`, ordered by
    /// the two ids' rows.
    pub fn approx_similarity_join(
        &self,
        a: &RecordBatch,
        b: &RecordBatch,
        threshold: f64,
        id_col: &str,
        dist_col: &str,
    ) -> Result<RecordBatch> {
        let (ha, hb) = (self.hashes_of(a)?, self.hashes_of(b)?);
        // Bucket b's rows by (table, hash vector).
        let mut buckets: HashMap<(usize, Vec<u64>), Vec<usize>> = HashMap::new();
        for (row, (_, h)) in hb.iter().enumerate() {
            for (t, v) in h.iter().enumerate() {
                let key = (t, v.iter().map(|x| x.to_bits()).collect());
                buckets.entry(key).or_default().push(row);
            }
        }
        let mut pairs: Vec<(usize, usize, f64)> = vec![];
        let mut seen: HashSet<(usize, usize)> = HashSet::new();
        for (ra, (set_a, h)) in ha.iter().enumerate() {
            for (t, v) in h.iter().enumerate() {
                let key = (t, v.iter().map(|x| x.to_bits()).collect::<Vec<_>>());
                for &rb in buckets.get(&key).into_iter().flatten() {
                    if seen.insert((ra, rb)) {
                        let d = jaccard_distance(set_a, &hb[rb].0);
                        if d <= threshold {
                            pairs.push((ra, rb, d));
                        }
                    }
                }
            }
        }
        pairs.sort_by_key(|p| (p.0, p.1));
        let take = |batch: &RecordBatch, rows: Vec<u32>| -> Result<ArrayRef> {
            let ids = column(batch, id_col)?;
            Ok(arrow_select::take::take(
                ids,
                &arrow_array::UInt32Array::from(rows),
                None,
            )?)
        };
        let ids_a = take(a, pairs.iter().map(|p| p.0 as u32).collect())?;
        let ids_b = take(b, pairs.iter().map(|p| p.1 as u32).collect())?;
        let dist = Arc::new(Float64Array::from(
            pairs.iter().map(|p| p.2).collect::<Vec<_>>(),
        )) as ArrayRef;
        Ok(RecordBatch::try_from_iter(vec![
            (format!("datasetA.{id_col}"), ids_a),
            (format!("datasetB.{id_col}"), ids_b),
            (dist_col.to_string(), dist),
        ])?)
    }
}

impl AlgoOperator for MinHashLshModel {
    fn transform(&self, inputs: &[RecordBatch]) -> Result<Vec<RecordBatch>> {
        let batch = first(inputs)?;
        let hashes = self.hashes_of(batch)?;
        let mut out = ListBuilder::new(ListBuilder::new(Float64Builder::new()));
        for (_, tables) in &hashes {
            for t in tables {
                out.values().values().append_slice(t);
                out.values().append(true);
            }
            out.append(true);
        }
        let col = Arc::new(out.finish()) as ArrayRef;
        Ok(vec![with_columns(
            batch,
            vec![(self.params.str("outputCol")?, col)],
        )?])
    }
}

fn int_list(values: &[i64]) -> ArrayRef {
    let mut b = ListBuilder::new(arrow_array::builder::Int64Builder::new());
    b.values().append_slice(values);
    b.append(true);
    Arc::new(b.finish())
}

fn read_ints(table: &RecordBatch, name: &str) -> Result<Vec<i64>> {
    use arrow_array::Array;
    use arrow_array::cast::AsArray;
    let col = column(table, name)?;
    let list = col
        .as_list_opt::<i32>()
        .ok_or_else(|| MlError::column(name, "is not a list of integers"))?;
    if list.is_empty() || list.is_null(0) {
        return Err(MlError::column(name, "model data has no value"));
    }
    let values = arrow_cast::cast(&list.value(0), &arrow_schema::DataType::Int64)?;
    Ok(values
        .as_primitive::<arrow_array::types::Int64Type>()
        .iter()
        .map(|v| v.unwrap_or(0))
        .collect())
}

impl Model for MinHashLshModel {
    fn model_data(&self) -> Result<Vec<RecordBatch>> {
        Ok(vec![one_row(vec![
            (
                "numHashTables",
                Arc::new(Int64Array::from(vec![self.tables as i64])) as _,
            ),
            (
                "numHashFunctionsPerTable",
                Arc::new(Int64Array::from(vec![self.per_table as i64])) as _,
            ),
            ("randCoefficientA", int_list(&self.a)),
            ("randCoefficientB", int_list(&self.b)),
        ])?])
    }

    fn set_model_data(&mut self, data: &[RecordBatch]) -> Result<()> {
        let t = data
            .first()
            .ok_or_else(|| MlError::Invalid("no model data table".into()))?;
        let scalar = |name: &str| -> Result<usize> {
            crate::table::doubles(t, name)?
                .first()
                .copied()
                .flatten()
                .map(|v| v as usize)
                .ok_or_else(|| MlError::column(name, "model data has no value"))
        };
        self.tables = scalar("numHashTables")?;
        self.per_table = scalar("numHashFunctionsPerTable")?;
        self.a = read_ints(t, "randCoefficientA")?;
        self.b = read_ints(t, "randCoefficientB")?;
        let n = self.tables * self.per_table;
        if self.a.len() != n || self.b.len() != n {
            return Err(MlError::Invalid(format!(
                "randCoefficientA/B hold {}/{} values, numHashTables * numHashFunctionsPerTable is {n}",
                self.a.len(),
                self.b.len()
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_random_and_string_hash_match_java() {
        // Printed by Java 17: new Random(42).nextInt(100) twice, nextInt(16) (a power of two
        // takes the high bits), String.hashCode, and the first draw of Flink ML's generator.
        let mut r = JavaRandom::new(42);
        assert_eq!(r.next_int(100), 30);
        assert_eq!(r.next_int(100), 63);
        assert_eq!(JavaRandom::new(42).next_int(16), 11);
        assert_eq!(java_string_hash("hello"), 99_162_322);
        assert_eq!(java_string_hash(CLASS), -1_229_568_175);
        let mut r = JavaRandom::new(2022);
        assert_eq!(1 + r.next_int((HASH_PRIME - 1) as i32), 1_329_273_298);
        assert_eq!(r.next_int((HASH_PRIME - 1) as i32), 261_376_546);
    }

    fn sparse_rows() -> RecordBatch {
        let rows = [vec![0, 1, 2], vec![2, 3, 4], vec![0, 2, 4]]
            .into_iter()
            .map(|i| Some(Vector::sparse(6, i, vec![1.0; 3]).unwrap()))
            .collect::<Vec<_>>();
        RecordBatch::try_from_iter(vec![
            ("id", Arc::new(Int64Array::from(vec![0, 1, 2])) as ArrayRef),
            ("vec", crate::vector::vector_column(&rows)),
        ])
        .unwrap()
    }

    fn fitted(tables: i64, per_table: i64) -> MinHashLshModel {
        let mut est = MinHashLsh::default();
        est.params
            .set_all(
                json!({"inputCol": "vec", "outputCol": "hashes", "seed": 2022,
                       "numHashTables": tables, "numHashFunctionsPerTable": per_table})
                .as_object()
                .unwrap(),
            )
            .unwrap();
        let m = est.fit(&[sparse_rows()]).unwrap();
        let data = m.model_data().unwrap();
        let mut back = MinHashLshModel {
            params: est.params.clone(),
            ..Default::default()
        };
        back.set_model_data(&data).unwrap();
        back
    }

    /// Flink ML's MinHashLSHTest.testFitAndPredict and ...WithNumHashFunctionPerTableIsOne:
    /// seed 2022, the three sets {0,1,2}, {2,3,4}, {0,2,4} of size 6.
    #[test]
    fn fit_and_predict_give_flink_mls_hashes() {
        let m = fitted(5, 3);
        let out = m.transform(&[sparse_rows()]).unwrap();
        let got: Vec<Vec<Vec<f64>>> = m
            .hashes_of(&out[0])
            .unwrap()
            .into_iter()
            .map(|(_, h)| h)
            .collect();
        let want = vec![
            vec![
                vec![1.73046954E8, 1.57275425E8, 6.90717571E8],
                vec![5.02301169E8, 7.967141E8, 4.06089319E8],
                vec![2.83652171E8, 1.97714719E8, 6.04731316E8],
                vec![5.2181506E8, 6.36933726E8, 6.13894128E8],
                vec![3.04301769E8, 1.113672955E9, 6.1388711E8],
            ],
            vec![
                vec![1.73046954E8, 1.57275425E8, 6.7798584E7],
                vec![6.38582806E8, 1.78703694E8, 4.06089319E8],
                vec![6.232638E8, 9.28867E7, 9.92010642E8],
                vec![2.461064E8, 1.12787481E8, 1.92180297E8],
                vec![2.38162496E8, 1.552933319E9, 2.77995137E8],
            ],
            vec![
                vec![1.73046954E8, 1.57275425E8, 6.90717571E8],
                vec![1.453197722E9, 7.967141E8, 4.06089319E8],
                vec![6.232638E8, 1.97714719E8, 6.04731316E8],
                vec![2.461064E8, 1.12787481E8, 1.92180297E8],
                vec![1.224130231E9, 1.113672955E9, 2.77995137E8],
            ],
        ];
        // Flink ML's test compares the rows as an unordered collection.
        let (mut got, mut want) = (got, want);
        let order = |a: &Vec<Vec<f64>>, b: &Vec<Vec<f64>>| a.partial_cmp(b).unwrap();
        got.sort_by(order);
        want.sort_by(order);
        assert_eq!(got, want);
        assert!(out[0].column_by_name("hashes").is_some());
        let one: Vec<Vec<Vec<f64>>> = fitted(5, 1)
            .hashes_of(&sparse_rows())
            .unwrap()
            .into_iter()
            .map(|(_, h)| h)
            .collect();
        // The first of the three (unordered) rows of Flink ML's expectation is {0,1,2}'s.
        assert_eq!(
            one[0],
            vec![
                vec![1.73046954E8],
                vec![1.57275425E8],
                vec![6.7798584E7],
                vec![6.38582806E8],
                vec![1.78703694E8]
            ]
        );
    }

    #[test]
    fn nearest_neighbors_and_similarity_join() {
        let m = fitted(5, 1);
        let data = sparse_rows();
        let key = Vector::sparse(6, vec![1, 3], vec![1.0, 1.0]).unwrap();
        let nn = m
            .approx_nearest_neighbors(&data, &key, 2, "distCol")
            .unwrap();
        let d = nn
            .column_by_name("distCol")
            .unwrap()
            .as_any()
            .downcast_ref::<Float64Array>()
            .unwrap();
        // Every candidate's distance is its true Jaccard distance, nearest first.
        assert!(nn.num_rows() <= 2 && d.values().windows(2).all(|w| w[0] <= w[1]));
        for (i, dist) in d.values().iter().enumerate() {
            assert!([0.75, 1.0].contains(dist), "row {i}: {dist}");
        }
        let join = m
            .approx_similarity_join(&data, &data, 0.6, "id", "distCol")
            .unwrap();
        assert_eq!(join.schema().field(0).name(), "datasetA.id");
        let d = join
            .column(2)
            .as_any()
            .downcast_ref::<Float64Array>()
            .unwrap();
        // Each row pairs with itself at distance 0; {0,1,2}~{0,2,4} and {2,3,4}~{0,2,4} are 0.5.
        assert!(d.values().iter().all(|v| *v <= 0.6));
        assert!(d.values().iter().filter(|v| **v == 0.0).count() == 3);
    }

    /// Flink ML's MinHashLSHTest.testHashFunction.
    #[test]
    fn hash_function_of_flink_mls_test() {
        let m = MinHashLshModel {
            params: Params::new(specs()),
            tables: 3,
            per_table: 1,
            a: vec![0, 1, 3],
            b: vec![1, 2, 0],
        };
        let v = Vector::sparse(10, vec![2, 3, 5, 7], vec![1.0; 4]).unwrap();
        assert_eq!(m.hash(&v).unwrap(), vec![vec![1.0], vec![5.0], vec![9.0]]);
        // Dense and sparse forms of a set hash alike; an empty set is refused.
        assert_eq!(
            m.hash(&Vector::Dense(v.to_dense())).unwrap(),
            m.hash(&v).unwrap()
        );
        let empty = Vector::sparse(10, vec![], vec![]).unwrap();
        assert!(
            m.hash(&empty)
                .unwrap_err()
                .to_string()
                .contains("at least 1 non zero entry")
        );
    }

    #[test]
    fn jaccard() {
        assert_eq!(jaccard_distance(&[0, 1, 2], &[2, 3, 4]), 1.0 - 1.0 / 5.0);
        assert_eq!(jaccard_distance(&[0, 1], &[0, 1]), 0.0);
    }
}
