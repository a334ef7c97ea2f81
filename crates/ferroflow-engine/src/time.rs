//! Event time: timestamp extraction and watermark strategies.

use std::time::Duration;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Int64Type, TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType,
};
use arrow_array::{Array, ArrayRef};
use arrow_schema::{DataType, Schema, TimeUnit};

use crate::error::{EngineError, Result, plan_err};

/// How a source derives watermarks from its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatermarkStrategy {
    /// Column holding the event time: a timestamp of any unit, or Int64 milliseconds.
    pub time_column: String,
    /// Records may arrive up to this much later than a newer record (bounded out-of-orderness).
    pub max_out_of_orderness: Duration,
    /// After this long without data an instance is marked idle and stops holding back
    /// downstream watermarks.
    pub idle_timeout: Option<Duration>,
}

impl WatermarkStrategy {
    /// Bounded out-of-orderness on `time_column`.
    pub fn bounded_out_of_orderness(time_column: impl Into<String>, max: Duration) -> Self {
        WatermarkStrategy {
            time_column: time_column.into(),
            max_out_of_orderness: max,
            idle_timeout: None,
        }
    }

    /// Mark the source idle after `timeout` without data.
    pub fn with_idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = Some(timeout);
        self
    }
}

/// Check that `column` of `schema` can carry event time; returns its index.
pub fn time_column_index(schema: &Schema, column: &str, node: &str) -> Result<usize> {
    let idx = schema.index_of(column).map_err(|_| {
        EngineError::plan(format!(
            "node '{node}': time column '{column}' not found in input columns [{}]",
            column_names(schema)
        ))
    })?;
    match schema.field(idx).data_type() {
        DataType::Int64 | DataType::Timestamp(_, _) => Ok(idx),
        other => plan_err(format!(
            "node '{node}': time column '{column}' has type {other}; expected a timestamp or Int64 milliseconds"
        )),
    }
}

/// Event times of `array` in milliseconds since the epoch. Nulls are an error naming `column`.
///
/// Event times must lie within ±[`MAX_EVENT_TIME_MS`] (about 285 000 years around 1970):
/// a value outside is refused naming the column and row, so window and watermark
/// arithmetic (`t + size`, `end - 1`, seconds times 1000) can never overflow.
pub fn event_time_millis(array: &ArrayRef, column: &str) -> Result<Vec<i64>> {
    if array.null_count() > 0 {
        return Err(EngineError::Other(format!(
            "time column '{column}' has {} null values; every record needs an event time",
            array.null_count()
        )));
    }
    let out = match array.data_type() {
        DataType::Int64 => array.as_primitive::<Int64Type>().values().to_vec(),
        DataType::Timestamp(TimeUnit::Millisecond, _) => array
            .as_primitive::<TimestampMillisecondType>()
            .values()
            .to_vec(),
        DataType::Timestamp(TimeUnit::Second, _) => array
            .as_primitive::<TimestampSecondType>()
            .values()
            .iter()
            .map(|v| v.saturating_mul(1000))
            .collect(),
        DataType::Timestamp(TimeUnit::Microsecond, _) => array
            .as_primitive::<TimestampMicrosecondType>()
            .values()
            .iter()
            .map(|v| v.div_euclid(1000))
            .collect(),
        DataType::Timestamp(TimeUnit::Nanosecond, _) => array
            .as_primitive::<TimestampNanosecondType>()
            .values()
            .iter()
            .map(|v| v.div_euclid(1_000_000))
            .collect(),
        other => {
            return Err(EngineError::Other(format!(
                "time column '{column}' has type {other}; expected a timestamp or Int64"
            )));
        }
    };
    if let Some(row) = out
        .iter()
        .position(|t| t.unsigned_abs() > MAX_EVENT_TIME_MS as u64)
    {
        return Err(EngineError::Other(format!(
            "time column '{column}', row {row}: event time {} ms is outside ±{MAX_EVENT_TIME_MS} ms",
            out[row]
        )));
    }
    Ok(out)
}

/// The largest event time (and, negated, the smallest) records may carry, in milliseconds
/// since the epoch: 2^53. Window sizes, gaps and lateness are bounded by it too, so their
/// sums stay far from `i64`'s limits.
pub const MAX_EVENT_TIME_MS: i64 = 1 << 53;

pub(crate) fn column_names(schema: &Schema) -> String {
    schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Milliseconds in a duration, saturating.
pub(crate) fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{ArrayRef, Int64Array, TimestampSecondArray};

    use super::*;

    #[test]
    fn extreme_event_times_are_refused_with_their_row() {
        let ok: ArrayRef = Arc::new(Int64Array::from(vec![
            0,
            MAX_EVENT_TIME_MS,
            -MAX_EVENT_TIME_MS,
        ]));
        assert_eq!(event_time_millis(&ok, "ts").unwrap()[1], MAX_EVENT_TIME_MS);
        for bad in [i64::MAX, i64::MIN, MAX_EVENT_TIME_MS + 1] {
            let a: ArrayRef = Arc::new(Int64Array::from(vec![1, bad]));
            let e = event_time_millis(&a, "ts").unwrap_err().to_string();
            assert!(
                e.contains("'ts', row 1") && e.contains(&bad.to_string()),
                "{e}"
            );
        }
        // Seconds times 1000 would overflow: refused, not wrapped.
        let secs: ArrayRef = Arc::new(TimestampSecondArray::from(vec![i64::MAX / 10]));
        assert!(event_time_millis(&secs, "ts").is_err());
    }
}
