//! VectorIndexer: features with few distinct values become category indices (zero first,
//! then ascending).

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_array::builder::{Float64Builder, Int32Builder, MapBuilder};
use serde_json::json;

use crate::error::{MlError, Result};
use crate::params::{ParamSpec, ParamType, Params, Validator, common};
use crate::stage::{AlgoOperator, Estimator, Model};
use crate::table::first;
use crate::table::{filter_rows, one_row, training_vectors, vectors, with_columns};
use crate::vector::{Vector, vector_column};

fn specs() -> Vec<ParamSpec> {
    vec![
        common::input_col(),
        common::output_col(),
        ParamSpec::new(
            "maxCategories",
            ParamType::Int,
            json!(20),
            Validator::GtEq(2.0),
        ),
        common::handle_invalid("error", common::ERROR_SKIP_KEEP),
    ]
}

crate::stage! {
    /// The estimator: `inputCol`, `outputCol`, `maxCategories` (20), `handleInvalid`.
    pub struct VectorIndexer("org.apache.flink.ml.feature.vectorindexer.VectorIndexer", specs()) {}
}

/// Category maps keyed by the bits of the value (doubles are not `Ord`).
type CategoryMaps = BTreeMap<usize, Vec<(f64, usize)>>;

impl Estimator for VectorIndexer {
    fn fit(&self, inputs: &[RecordBatch]) -> Result<Box<dyn Model>> {
        let max = self.params.i64("maxCategories")? as usize;
        let data = training_vectors(first(inputs)?, &self.params.str("inputCol")?)?;
        let mut maps = CategoryMaps::new();
        for j in 0..data[0].size() {
            let mut values: Vec<f64> = data.iter().map(|v| v.get(j)).collect();
            values.sort_by(f64::total_cmp);
            values.dedup();
            // Zero, when present, is category 0 (so sparse vectors stay sparse), as in Flink
            // ML and Spark; the other values follow in ascending order.
            if let Some(z) = values.iter().position(|&v| v == 0.0) {
                let zero = values.remove(z);
                values.insert(0, zero);
            }
            if values.len() <= max {
                maps.insert(
                    j,
                    values
                        .into_iter()
                        .enumerate()
                        .map(|(i, v)| (v, i))
                        .collect(),
                );
            }
        }
        Ok(Box::new(VectorIndexerModel {
            params: self.params.clone(),
            maps,
        }))
    }
}

/// The fitted model: model data `categoryMaps` (feature -> value -> index).
#[derive(Debug, Clone)]
pub struct VectorIndexerModel {
    params: Params,
    maps: CategoryMaps,
}

impl Default for VectorIndexerModel {
    fn default() -> Self {
        VectorIndexerModel {
            params: Params::new(specs()),
            maps: CategoryMaps::new(),
        }
    }
}

crate::impl_stage!(
    VectorIndexerModel,
    "org.apache.flink.ml.feature.vectorindexer.VectorIndexerModel"
);

impl AlgoOperator for VectorIndexerModel {
    fn transform(&self, inputs: &[RecordBatch]) -> Result<Vec<RecordBatch>> {
        let batch = first(inputs)?;
        let (input, output) = (self.params.str("inputCol")?, self.params.str("outputCol")?);
        let handle = self.params.str("handleInvalid")?;
        let mut keep = vec![true; batch.num_rows()];
        let mut out = Vec::with_capacity(batch.num_rows());
        'rows: for (row, v) in vectors(batch, &input)?.into_iter().enumerate() {
            let Some(v) = v else {
                out.push(None);
                continue;
            };
            let mut x = v.to_dense();
            for (&j, map) in &self.maps {
                if j >= x.len() {
                    return Err(MlError::Row {
                        row,
                        message: format!("column '{input}': vector of size {}", x.len()),
                    });
                }
                match map.iter().find(|(value, _)| *value == x[j]) {
                    Some(&(_, i)) => x[j] = i as f64,
                    None => match handle.as_str() {
                        "keep" => x[j] = map.len() as f64,
                        "skip" => {
                            keep[row] = false;
                            out.push(None);
                            continue 'rows;
                        }
                        _ => {
                            return Err(MlError::Row {
                                row,
                                message: format!(
                                    "column '{input}': The input contains unseen double: {}. See handleInvalid parameter for more options.",
                                    super::string_indexer::java_double(x[j])
                                ),
                            });
                        }
                    },
                }
            }
            out.push(Some(match v {
                Vector::Dense(_) => Vector::Dense(x),
                Vector::Sparse { size, .. } => {
                    let (indices, values) = x
                        .iter()
                        .enumerate()
                        .filter(|(_, a)| **a != 0.0)
                        .map(|(i, a)| (i, *a))
                        .unzip();
                    Vector::Sparse {
                        size,
                        indices,
                        values,
                    }
                }
            }));
        }
        let indexed = with_columns(batch, vec![(output, vector_column(&out))])?;
        Ok(vec![filter_rows(&indexed, &keep)?])
    }
}

impl Model for VectorIndexerModel {
    fn model_data(&self) -> Result<Vec<RecordBatch>> {
        let inner = MapBuilder::new(None, Float64Builder::new(), Int32Builder::new());
        let mut b = MapBuilder::new(None, Int32Builder::new(), inner);
        for (&j, map) in &self.maps {
            b.keys().append_value(j as i32);
            for &(v, i) in map {
                b.values().keys().append_value(v);
                b.values().values().append_value(i as i32);
            }
            b.values().append(true)?;
        }
        b.append(true)?;
        Ok(vec![one_row(vec![("categoryMaps", Arc::new(b.finish()))])?])
    }

    fn set_model_data(&mut self, data: &[RecordBatch]) -> Result<()> {
        use arrow_array::Array;
        use arrow_array::cast::AsArray;
        let col = crate::table::column(first(data)?, "categoryMaps")?;
        let outer = col
            .as_map_opt()
            .ok_or_else(|| MlError::column("categoryMaps", "expected a map"))?;
        if outer.is_empty() {
            return Err(MlError::column("categoryMaps", "empty"));
        }
        let entries = outer.value(0);
        let keys = arrow_cast::cast(entries.column(0), &arrow_schema::DataType::Int64)?;
        let inner = entries.column(1).as_map();
        let mut maps = CategoryMaps::new();
        for (k, j) in keys
            .as_primitive::<arrow_array::types::Int64Type>()
            .iter()
            .enumerate()
        {
            let m = inner.value(k);
            let vals = arrow_cast::cast(m.column(0), &arrow_schema::DataType::Float64)?;
            let idx = arrow_cast::cast(m.column(1), &arrow_schema::DataType::Int64)?;
            let pairs = vals
                .as_primitive::<arrow_array::types::Float64Type>()
                .iter()
                .zip(idx.as_primitive::<arrow_array::types::Int64Type>().iter())
                .map(|(v, i)| (v.unwrap_or(f64::NAN), i.unwrap_or(0) as usize))
                .collect();
            maps.insert(j.unwrap_or(0) as usize, pairs);
        }
        self.maps = maps;
        Ok(())
    }
}
