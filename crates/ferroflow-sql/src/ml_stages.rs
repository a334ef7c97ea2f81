//! ML stages that need SQL: Flink ML's SQLTransformer, on DataFusion.
//!
//! Call [`register_ml_stages`] once so `ferroflow_ml::create_stage` (and saved models) find
//! them by class name; the `ferroflow` command does.

use arrow_array::RecordBatch;
use ferroflow_ml::params::{ParamSpec, ParamType, Params, Validator};
use ferroflow_ml::{AlgoOperator, AnyStage, MlError, register_stage};
use serde_json::Value;

/// SQLTransformer: the result of `statement` over the input table, named `__THIS__` in it
/// (`SELECT *, a + b AS c FROM __THIS__`).
#[derive(Debug, Clone)]
pub struct SqlTransformer {
    params: Params,
}

impl Default for SqlTransformer {
    fn default() -> Self {
        SqlTransformer {
            params: Params::new(vec![ParamSpec::new(
                "statement",
                ParamType::String,
                Value::Null,
                Validator::Always,
            )]),
        }
    }
}

ferroflow_ml::impl_stage!(
    SqlTransformer,
    "org.apache.flink.ml.feature.sqltransformer.SQLTransformer"
);

impl AlgoOperator for SqlTransformer {
    fn transform(&self, inputs: &[RecordBatch]) -> ferroflow_ml::Result<Vec<RecordBatch>> {
        let batch = inputs
            .first()
            .ok_or_else(|| MlError::Invalid("no input table".into()))?;
        let statement = self.params.str("statement")?;
        if !statement.contains("__THIS__") {
            return Err(MlError::Param {
                param: "statement".into(),
                message: "must read the input as __THIS__".into(),
            });
        }
        let err = |e: crate::SqlError| MlError::library("SQLTransformer", e);
        let df_err = |e: datafusion::error::DataFusionError| MlError::library("SQLTransformer", e);
        let sql = crate::BatchSql::new().map_err(err)?;
        sql.context()
            .register_batch("__this__", batch.clone())
            .map_err(df_err)?;
        let out = sql
            .query(&statement.replace("__THIS__", "__this__"))
            .map_err(err)?;
        let schema = out
            .first()
            .map(|b| b.schema())
            .unwrap_or_else(|| batch.schema());
        if out.is_empty() {
            // An empty result still has the statement's columns.
            let plan = sql
                .query(&format!(
                    "SELECT * FROM ({}) LIMIT 0",
                    statement.replace("__THIS__", "__this__")
                ))
                .map_err(err)?;
            return Ok(vec![
                plan.into_iter()
                    .next()
                    .unwrap_or_else(|| RecordBatch::new_empty(schema)),
            ]);
        }
        Ok(vec![arrow_select::concat::concat_batches(&schema, &out)?])
    }
}

/// Register the ML stages of this crate with `ferroflow-ml`.
pub fn register_ml_stages() {
    register_stage(
        "org.apache.flink.ml.feature.sqltransformer.SQLTransformer",
        || AnyStage::Operator(Box::new(SqlTransformer::default())),
    );
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::cast::AsArray;
    use arrow_array::types::Float64Type;
    use arrow_array::{ArrayRef, Float64Array};
    use serde_json::json;

    use super::*;

    #[test]
    fn statements_run_over_the_input_by_class_name() {
        register_ml_stages();
        let stage = ferroflow_ml::stage_from_json(&json!({"className": "SQLTransformer",
            "paramMap": {"statement": "SELECT *, (v1 + v2) AS v3 FROM __THIS__ WHERE v1 > 0"}}))
        .unwrap();
        let AnyStage::Operator(op) = stage else {
            panic!()
        };
        let b = RecordBatch::try_from_iter(vec![
            (
                "v1",
                Arc::new(Float64Array::from(vec![1.0, -1.0, 2.0])) as ArrayRef,
            ),
            (
                "v2",
                Arc::new(Float64Array::from(vec![10.0, 20.0, 30.0])) as ArrayRef,
            ),
        ])
        .unwrap();
        let out = op.transform(&[b]).unwrap();
        let v3 = out[0]
            .column_by_name("v3")
            .unwrap()
            .as_primitive::<Float64Type>();
        assert_eq!(v3.values().to_vec(), vec![11.0, 32.0]);
        let e = ferroflow_ml::stage_from_json(&json!({"className": "SQLTransformer",
            "paramMap": {"statement": "SELECT 1"}}))
        .map(|s| match s {
            AnyStage::Operator(op) => op
                .transform(&[RecordBatch::new_empty(Arc::new(
                    arrow_schema::Schema::empty(),
                ))])
                .unwrap_err()
                .to_string(),
            _ => unreachable!(),
        })
        .unwrap();
        assert!(e.contains("__THIS__"), "{e}");
    }
}
