//! ML stages that need SQL: Flink ML's SQLTransformer, on DataFusion.
//!
//! [`ml_stages`] is the ML library's stages with these added; whatever reads stages by class
//! name (the `ferroflow` command's `ml` commands, native jobs, stream jobs) is handed it.

use arrow_array::RecordBatch;
use ferroflow_ml::params::{ParamSpec, ParamType, Params, Validator};
use ferroflow_ml::{AlgoOperator, AnyStage, MlError, StageRegistry};
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

/// Add the ML stages of this crate (SQLTransformer) to `registry`; refused when one of
/// their class names is there already.
pub fn register_ml_stages(registry: &mut StageRegistry) -> ferroflow_ml::Result<()> {
    registry.register(
        "org.apache.flink.ml.feature.sqltransformer.SQLTransformer",
        || AnyStage::Operator(Box::new(SqlTransformer::default())),
    )
}

/// The ML library's stages and this crate's.
pub fn ml_stages() -> StageRegistry {
    let mut registry = ferroflow_ml::builtin_stages();
    register_ml_stages(&mut registry).expect("SQLTransformer is not a built-in stage");
    registry
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
        let stages = ml_stages();
        let stage = stages
            .from_json(&json!({"className": "SQLTransformer",
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
        let e = stages
            .from_json(&json!({"className": "SQLTransformer",
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

    /// A pipeline holding SQLTransformer is read, fitted, saved and loaded back with the
    /// registry that has it; the ML library's own registry refuses it by name, and
    /// registering the class twice is refused.
    #[test]
    fn a_pipeline_with_sql_is_read_and_loaded_with_the_registry_that_has_it() {
        let pipeline = json!({"className": "Pipeline", "stages": [
            {"className": "SQLTransformer",
             "paramMap": {"statement": "SELECT *, v1 * 2 AS v2 FROM __THIS__"}},
            {"className": "VectorAssembler",
             "paramMap": {"inputCols": ["v1", "v2"], "outputCol": "features",
                          "inputSizes": [1, 1]}},
            {"className": "StandardScaler",
             "paramMap": {"inputCol": "features", "outputCol": "scaled"}},
        ]});
        let err = ferroflow_ml::stage_from_json(&pipeline)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("SQLTransformer"), "{err}");

        let stages = ml_stages();
        let AnyStage::Estimator(est) = stages.from_json(&pipeline).unwrap() else {
            panic!("a Pipeline is an estimator")
        };
        let table = RecordBatch::try_from_iter(vec![(
            "v1",
            Arc::new(Float64Array::from(vec![1.0, 2.0, 3.0])) as ArrayRef,
        )])
        .unwrap();
        let model = est.fit(std::slice::from_ref(&table)).unwrap();
        let want = model.transform(std::slice::from_ref(&table)).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let saved = dir.path().join("model");
        model.save(&saved).unwrap();

        let err = ferroflow_ml::load_stage(&saved).err().unwrap().to_string();
        assert!(err.contains("SQLTransformer"), "{err}");
        let AnyStage::Model(back) = stages.load(&saved).unwrap() else {
            panic!("a saved PipelineModel loads as a model")
        };
        let got = back.transform(std::slice::from_ref(&table)).unwrap();
        assert_eq!(got, want);
        assert_eq!(got[0].schema().field(1).name(), "v2");

        let mut again = ml_stages();
        let err = register_ml_stages(&mut again).unwrap_err().to_string();
        assert!(err.contains("registered twice"), "{err}");
    }
}
