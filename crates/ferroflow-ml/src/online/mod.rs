//! Online learning: Flink ML's online estimators (OnlineLogisticRegression, OnlineKMeans,
//! OnlineStandardScaler) and what they share.
//!
//! An [`OnlineEstimator`] makes an [`OnlineLearner`]: it is fed rows in arrival order and
//! emits model-data rows, each one version of the model, with Flink ML's model-data column
//! names plus a version column. The engine runs a learner as a single-instance node
//! ([`crate::MlStreamExt::ml_fit_online`]: global mini-batches are formed in arrival order,
//! as Flink ML's `countWindowAll` forms them) and a model as a node fed that stream as a
//! broadcast input ([`crate::MlStreamExt::ml_transform_with_model_data`]): the model data
//! replaces the model between batches, and rows that arrive before the first model wait.
//!
//! An online estimator is an [`Estimator`] too: `fit` on a bounded table replays it through
//! the learner and returns the model holding every version emitted (it scores with the
//! newest). Learners also score-then-learn ([`OnlineLearner::score_then_learn`]), which is
//! progressive validation.

mod kmeans;
mod logistic;
pub(crate) mod nodes;
mod scaler;

pub use kmeans::{OnlineKMeans, OnlineKMeansModel};
pub use logistic::{OnlineLogisticRegression, OnlineLogisticRegressionModel};
pub use scaler::{OnlineStandardScaler, OnlineStandardScalerModel};

use arrow_array::{Array, Int64Array, RecordBatch};
use arrow_schema::{Schema, SchemaRef};
use ferroflow_engine::state::{StateDecoder, StateEncoder};
use serde_json::Value;

use crate::error::{MlError, Result};
use crate::stage::Model;
pub use crate::stage::online::{LearnContext, OnlineEstimator, OnlineLearner};

/// `input` with `fields` appended (replacing fields of the same name), as
/// `with_columns` builds batches.
pub(crate) fn appended(input: &Schema, fields: Vec<arrow_schema::Field>) -> SchemaRef {
    let mut out: Vec<arrow_schema::Field> =
        input.fields().iter().map(|f| f.as_ref().clone()).collect();
    for f in fields {
        match out.iter().position(|o| o.name() == f.name()) {
            Some(i) => out[i] = f,
            None => out.push(f),
        }
    }
    std::sync::Arc::new(Schema::new(out))
}

/// How an online estimator groups rows (Flink ML's `Windows` param).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Windows {
    /// One window, ending with the input.
    Global,
    /// Every `n` rows; a last incomplete window never fires.
    CountTumbling(u64),
    /// Tumbling event-time windows of this many ms.
    EventTimeTumbling(i64),
    /// Tumbling processing-time windows of this many ms.
    ProcessingTimeTumbling(i64),
    /// Event-time sessions closed by a gap of this many ms.
    EventTimeSession(i64),
    /// Processing-time sessions closed by a gap of this many ms.
    ProcessingTimeSession(i64),
}

const WINDOW_PKG: &str = "org.apache.flink.ml.common.window.";

impl Windows {
    /// From Flink ML's saved form: `{"class": "...CountTumblingWindows", "size": 3}`,
    /// `{"class": "...EventTimeSessionWindows", "gap": 1000}`, ... (`param` names the param).
    pub fn from_json(param: &str, v: &Value) -> Result<Self> {
        let class = v
            .get("class")
            .and_then(Value::as_str)
            .ok_or_else(|| MlError::param(param, "a window needs a 'class'"))?;
        let short = class.strip_prefix(WINDOW_PKG).unwrap_or(class);
        let num = |key: &str| -> Result<i64> {
            v.get(key)
                .and_then(Value::as_i64)
                .filter(|n| *n > 0)
                .ok_or_else(|| MlError::param(param, format!("{short} needs a positive '{key}'")))
        };
        Ok(match short {
            "GlobalWindows" => Windows::Global,
            "CountTumblingWindows" => Windows::CountTumbling(num("size")? as u64),
            "EventTimeTumblingWindows" => Windows::EventTimeTumbling(num("size")?),
            "ProcessingTimeTumblingWindows" => Windows::ProcessingTimeTumbling(num("size")?),
            "EventTimeSessionWindows" => Windows::EventTimeSession(num("gap")?),
            "ProcessingTimeSessionWindows" => Windows::ProcessingTimeSession(num("gap")?),
            other => {
                return Err(MlError::param(
                    param,
                    format!(
                        "unknown window class '{other}' (GlobalWindows, CountTumblingWindows, \
                         EventTimeTumblingWindows, ProcessingTimeTumblingWindows, \
                         EventTimeSessionWindows, ProcessingTimeSessionWindows)"
                    ),
                ));
            }
        })
    }

    /// Whether windows follow event time (and need an event-time column).
    pub fn is_event_time(&self) -> bool {
        matches!(
            self,
            Windows::EventTimeTumbling(_) | Windows::EventTimeSession(_)
        )
    }
}

/// Flink ML's message when a training stream has more subtasks than rows per global batch.
pub(crate) const IDLE_SUBTASKS: &str = "There are more subtasks in the training process than the \
     number of elements in each batch. Some subtasks might be idling forever.";

/// Refuse a parallelism above the global batch size, as Flink ML does.
pub(crate) fn check_parallelism(ctx: &LearnContext, batch_size: usize) -> Result<()> {
    if ctx.parallelism > batch_size {
        return Err(MlError::param(
            "globalBatchSize",
            format!(
                "{IDLE_SUBTASKS} (parallelism {}, globalBatchSize {batch_size})",
                ctx.parallelism
            ),
        ));
    }
    Ok(())
}

/// The row of `data` (model-data tables, rows in emission order) with the highest value
/// of `version_col` (the last row on ties and when the column is absent): the newest
/// version, which a model given several scores with.
pub(crate) fn newest_row(data: &[RecordBatch], version_col: &str) -> Result<RecordBatch> {
    let mut best: Option<(i64, &RecordBatch, usize)> = None;
    for t in data {
        let versions = match t.column_by_name(version_col) {
            Some(c) => Some(
                arrow_cast::cast(c, &arrow_schema::DataType::Int64)?
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .cloned()
                    .ok_or_else(|| MlError::column(version_col, "not an integer"))?,
            ),
            None => None,
        };
        for row in 0..t.num_rows() {
            let v = match &versions {
                Some(a) if a.is_null(row) => {
                    return Err(MlError::Row {
                        row,
                        message: format!("model data: column '{version_col}' is null"),
                    });
                }
                Some(a) => a.value(row),
                None => i64::MIN,
            };
            if best.is_none_or(|(b, _, _)| v >= b) {
                best = Some((v, t, row));
            }
        }
    }
    let (_, t, row) = best.ok_or_else(|| MlError::Invalid("the model data has no row".into()))?;
    Ok(t.slice(row, 1))
}

/// The integer in the first row of model-data column `col` (`default` when the column is
/// absent or the cell null).
pub(crate) fn first_int(t: &RecordBatch, col: &str, default: i64) -> Result<i64> {
    let Some(c) = t.column_by_name(col) else {
        return Ok(default);
    };
    let c = arrow_cast::cast(c, &arrow_schema::DataType::Int64)?;
    let a = c
        .as_any()
        .downcast_ref::<Int64Array>()
        .expect("cast to Int64");
    Ok(if a.is_empty() || a.is_null(0) {
        default
    } else {
        a.value(0)
    })
}

/// A version column of one value.
pub(crate) fn version_array(v: i64) -> arrow_array::ArrayRef {
    std::sync::Arc::new(Int64Array::from(vec![v]))
}

/// Write doubles with their exact bits.
pub(crate) fn put_f64s(e: &mut StateEncoder, xs: &[f64]) {
    e.u64(xs.len() as u64);
    for x in xs {
        e.u64(x.to_bits());
    }
}

/// Read what [`put_f64s`] wrote.
pub(crate) fn get_f64s(d: &mut StateDecoder<'_>) -> Result<Vec<f64>> {
    let n = d.count(8).map_err(state_err)?;
    (0..n)
        .map(|_| d.u64().map(f64::from_bits).map_err(state_err))
        .collect()
}

pub(crate) fn state_err(e: ferroflow_engine::EngineError) -> MlError {
    MlError::Invalid(format!("learner state: {e}"))
}

/// The event times of `batch`'s rows from column `col` (integers or timestamps, ms).
pub(crate) fn event_times(batch: &RecordBatch, col: &str) -> Result<Vec<i64>> {
    let c = crate::table::column(batch, col)?;
    let ms = match c.data_type() {
        arrow_schema::DataType::Timestamp(_, _) => arrow_cast::cast(
            c,
            &arrow_schema::DataType::Timestamp(arrow_schema::TimeUnit::Millisecond, None),
        )
        .and_then(|a| arrow_cast::cast(&a, &arrow_schema::DataType::Int64))?,
        dt if dt.is_integer() => arrow_cast::cast(c, &arrow_schema::DataType::Int64)?,
        dt => {
            return Err(MlError::column(
                col,
                format!("event time must be an integer (ms) or a timestamp, not {dt}"),
            ));
        }
    };
    let a = ms
        .as_any()
        .downcast_ref::<Int64Array>()
        .expect("cast to Int64");
    (0..a.len())
        .map(|row| {
            if a.is_null(row) {
                Err(MlError::Row {
                    row,
                    message: format!("event time column '{col}' is null"),
                })
            } else {
                Ok(a.value(row))
            }
        })
        .collect()
}

/// `fit` of an online estimator: replay the table through a learner; the model holds the
/// newest version emitted.
pub(crate) fn fit_by_replay(
    est: &dyn OnlineEstimator,
    inputs: &[RecordBatch],
) -> Result<Box<dyn Model>> {
    let batch = crate::table::first(inputs)?;
    let mut learner = est.learner(
        &batch.schema(),
        &LearnContext {
            event_time_col: None,
            parallelism: 1,
        },
    )?;
    let mut rows = learner.initial()?;
    rows.extend(learner.learn(batch)?);
    rows.extend(learner.finish()?);
    if rows.is_empty() {
        return Err(MlError::Invalid(format!(
            "{}: {} training rows gave no model version (fewer rows than a batch, or no \
             window closed)",
            est.class_name(),
            batch.num_rows()
        )));
    }
    let mut model = est.new_model()?;
    model.set_model_data(&rows)?;
    Ok(model)
}

/// Copy the params `to` has from `from` (an estimator's to its model).
pub(crate) fn copy_params(
    from: &crate::params::Params,
    to: &mut crate::params::Params,
) -> Result<()> {
    for (k, v) in from.to_map() {
        if to.has(&k) {
            to.set(&k, v)?;
        }
    }
    Ok(())
}

/// The `initialModelData` param: one model-data row given inline.
pub(crate) fn initial_model_spec() -> crate::params::ParamSpec {
    crate::params::ParamSpec::new(
        "initialModelData",
        crate::params::ParamType::ModelDataRow,
        Value::Null,
        crate::params::Validator::Always,
    )
}

/// A model-data row given inline as JSON: vectors as Flink ML saves Vector params
/// (`{"values": [...]}`, `{"n": N, "indices": [...], "values": [...]}`) or as the JSON-lines
/// encoding writes them (an array; `{"size": N, "indices": [...], "values": [...]}`).
pub(crate) fn inline_model_data(param: &str, v: &Value) -> Result<RecordBatch> {
    let obj = v
        .as_object()
        .ok_or_else(|| MlError::param(param, "must be one model-data row (a JSON object)"))?;
    let mut row = serde_json::Map::new();
    for (k, x) in obj {
        let cell = match x {
            Value::Object(o) if o.contains_key("values") && !o.contains_key("size") => {
                let vec = crate::params::vector_param(x)
                    .ok_or_else(|| MlError::param(param, format!("'{k}': {x} is not a vector")))?;
                match vec {
                    crate::vector::Vector::Dense(d) => {
                        Value::Array(d.into_iter().map(crate::params::f64_json).collect())
                    }
                    crate::vector::Vector::Sparse {
                        size,
                        indices,
                        values,
                    } => serde_json::json!({
                        "size": size,
                        "indices": indices,
                        "values": values.into_iter().map(crate::params::f64_json).collect::<Vec<_>>(),
                    }),
                }
            }
            other => other.clone(),
        };
        row.insert(k.clone(), cell);
    }
    crate::io::rows_to_batch(&[row]).map_err(|e| MlError::param(param, e.to_string()))
}

pub(crate) use crate::java::JavaRandom;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn windows_parse_as_flink_ml_saves_them() {
        let w = |v| Windows::from_json("windows", &v);
        assert_eq!(
            w(json!({"class": "org.apache.flink.ml.common.window.CountTumblingWindows", "size": 3}))
                .unwrap(),
            Windows::CountTumbling(3)
        );
        assert_eq!(
            w(json!({"class": "org.apache.flink.ml.common.window.EventTimeSessionWindows", "gap": 5}))
                .unwrap(),
            Windows::EventTimeSession(5)
        );
        let e = w(json!({"class": "org.apache.flink.ml.common.window.SlidingWindows"}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("SlidingWindows"), "{e}");
        let e = w(json!({"class": "org.apache.flink.ml.common.window.CountTumblingWindows"}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("'size'"), "{e}");
    }
}
