//! Tables between nodes: reading files, applying a stage, reading metrics.

use std::path::Path;
use std::sync::Arc;

use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;
use ferroflow_ml::stage::AnyStage;
use ferroflow_workflow::{Node, Result};

use crate::settings::node_err;

pub(crate) fn read_path(n: &Node, path: &Path) -> Result<RecordBatch> {
    ferroflow_ml::io::read_table(path).map_err(|e| node_err(n, e))
}

pub(crate) fn first_metric(n: &Node, metrics: &RecordBatch, name: &str) -> Result<f64> {
    let col = metrics.column_by_name(name).ok_or_else(|| {
        node_err(
            n,
            format!(
                "the evaluator gave no '{name}' (it gave: {})",
                metrics
                    .schema()
                    .fields()
                    .iter()
                    .map(|f| f.name().clone())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
    })?;
    let col = arrow_cast_f64(col).map_err(|e| node_err(n, e))?;
    if col.is_empty() || col.is_null(0) {
        return Err(node_err(n, format!("'{name}' is empty")));
    }
    Ok(col.value(0))
}

/// A numeric metric column as doubles (arrow's cast kernel: any integer or float type).
fn arrow_cast_f64(col: &Arc<dyn Array>) -> std::result::Result<arrow_array::Float64Array, String> {
    use arrow_array::cast::AsArray;
    if !col.data_type().is_numeric() {
        return Err(format!(
            "a metric of type {} is not a number",
            col.data_type()
        ));
    }
    let doubles = arrow_cast::cast(col, &DataType::Float64).map_err(|e| e.to_string())?;
    Ok(doubles
        .as_primitive::<arrow_array::types::Float64Type>()
        .clone())
}

pub(crate) fn metrics_map(metrics: &RecordBatch) -> std::collections::BTreeMap<String, f64> {
    let mut out = std::collections::BTreeMap::new();
    for (f, c) in metrics.schema().fields().iter().zip(metrics.columns()) {
        if let Ok(v) = arrow_cast_f64(c)
            && !v.is_empty()
            && !v.is_null(0)
        {
            out.insert(f.name().clone(), v.value(0));
        }
    }
    out
}

pub(crate) fn transform_with(
    n: &Node,
    stage: &AnyStage,
    input: &RecordBatch,
) -> Result<RecordBatch> {
    let out = match stage {
        AnyStage::Operator(op) => op.transform(std::slice::from_ref(input)),
        AnyStage::Model(m) => m.transform(std::slice::from_ref(input)),
        AnyStage::Estimator(_) => {
            return Err(node_err(
                n,
                "this stage must be fitted first (use a train node)",
            ));
        }
    }
    .map_err(|e| node_err(n, e))?;
    out.into_iter()
        .next()
        .ok_or_else(|| node_err(n, "the stage produced no table"))
}
