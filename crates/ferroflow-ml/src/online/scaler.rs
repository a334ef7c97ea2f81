//! OnlineStandardScaler: cumulative mean and sample standard deviation, one model version per
//! non-empty window, as Flink ML's
//! `org.apache.flink.ml.feature.standardscaler.OnlineStandardScaler`.
//!
//! Statistics accumulate over every window so far (not per window). Each window that holds
//! rows emits `mean`, `std`, `version` (from 0) and `timestamp` (the window's max timestamp
//! for event-time windows, `Long.MAX_VALUE` otherwise). At the end of input the global
//! window and open event-time windows fire (Flink's final watermark); an incomplete count
//! window and open processing-time windows do not (Flink stops processing-time timers at
//! the end of input). Rows later than the watermark for their event-time window are dropped
//! and counted, as Flink drops late rows of windows without allowed lateness.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::{ArrayRef, Int64Array, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use ferroflow_engine::state::{StateDecoder, StateEncoder};
use serde_json::json;

use super::{
    LearnContext, OnlineEstimator, OnlineLearner, Windows, event_times, get_f64s, newest_row,
    put_f64s, state_err, version_array,
};
use crate::error::{MlError, Result};
use crate::params::{ParamSpec, ParamType, Params, Validator, common};
use crate::stage::{AlgoOperator, Estimator, Model, Stage};
use crate::table::{column, model_vector, one_row, with_columns};
use crate::vector::{Vector, dense_column, dense_type, read_vectors};

fn model_specs() -> Vec<ParamSpec> {
    vec![
        common::input_col(),
        common::output_col(),
        ParamSpec::new("withMean", ParamType::Bool, json!(false), Validator::Always),
        ParamSpec::new("withStd", ParamType::Bool, json!(true), Validator::Always),
        ParamSpec::new(
            "modelVersionCol",
            ParamType::String,
            json!("version"),
            Validator::Always,
        ),
        ParamSpec::new(
            "maxAllowedModelDelayMs",
            ParamType::Int,
            json!(0),
            Validator::GtEq(0.0),
        ),
    ]
}

fn specs() -> Vec<ParamSpec> {
    let mut s = model_specs();
    s.push(ParamSpec::new(
        "windows",
        ParamType::Window,
        json!({"class": "org.apache.flink.ml.common.window.GlobalWindows"}),
        Validator::Always,
    ));
    s
}

/// The estimator.
#[derive(Debug, Clone)]
pub struct OnlineStandardScaler {
    params: Params,
}

impl Default for OnlineStandardScaler {
    fn default() -> Self {
        OnlineStandardScaler {
            params: Params::new(specs()),
        }
    }
}

crate::impl_stage!(
    OnlineStandardScaler,
    "org.apache.flink.ml.feature.standardscaler.OnlineStandardScaler"
);

impl Estimator for OnlineStandardScaler {
    fn fit(&self, inputs: &[RecordBatch]) -> Result<Box<dyn Model>> {
        super::fit_by_replay(self, inputs)
    }

    fn as_online(&self) -> Option<&dyn OnlineEstimator> {
        Some(self)
    }

    fn as_online_mut(&mut self) -> Option<&mut dyn OnlineEstimator> {
        Some(self)
    }
}

/// The columns the model appends.
fn output_fields(p: &Params) -> Result<Vec<Field>> {
    Ok(vec![
        Field::new(p.str("outputCol")?, dense_type(), true),
        Field::new(p.str("modelVersionCol")?, DataType::Int64, true),
    ])
}

impl OnlineEstimator for OnlineStandardScaler {
    fn learner(&self, schema: &Schema, ctx: &LearnContext) -> Result<Box<dyn OnlineLearner>> {
        let p = &self.params;
        let windows = Windows::from_json("windows", p.get("windows")?)?;
        let input = p.str("inputCol")?;
        schema
            .field_with_name(&input)
            .map_err(|_| MlError::column(&input, "not in the training stream"))?;
        let event_time = match (&ctx.event_time_col, windows.is_event_time()) {
            (Some(c), true) => {
                schema
                    .field_with_name(c)
                    .map_err(|_| MlError::column(c, "event-time column not in the stream"))?;
                Some(c.clone())
            }
            (None, true) => {
                return Err(MlError::param(
                    "windows",
                    "event-time windows need an event-time column (--event-time-col)",
                ));
            }
            (_, false) => None,
        };
        Ok(Box::new(Cumulative {
            input,
            windows,
            event_time,
            scoring: Scoring::of(p)?,
            sum: Vec::new(),
            sq: Vec::new(),
            n: 0,
            version: 0,
            open: BTreeMap::new(),
            watermark: i64::MIN,
            late: 0,
            model: None,
            held: Vec::new(),
            rows_wanted: true,
        }))
    }

    fn scored_fields(&self) -> Result<Vec<Field>> {
        output_fields(&self.params)
    }

    fn new_model(&self) -> Result<Box<dyn Model>> {
        let mut m = OnlineStandardScalerModel::default();
        super::copy_params(&self.params, &mut m.params)?;
        Ok(Box::new(m))
    }

    fn model_data_schema(&self) -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("mean", dense_type(), true),
            Field::new("std", dense_type(), true),
            Field::new("version", DataType::Int64, true),
            Field::new("timestamp", DataType::Int64, true),
        ]))
    }
}

/// Sums of the rows of one window.
#[derive(Debug, Clone, Default)]
struct Acc {
    sum: Vec<f64>,
    sq: Vec<f64>,
    n: u64,
    /// Session windows: where the window ends (exclusive).
    end: i64,
}

impl Acc {
    fn add(&mut self, v: &Vector) {
        if self.sum.is_empty() {
            self.sum = vec![0.0; v.size()];
            self.sq = vec![0.0; v.size()];
        }
        for (i, x) in v.stored() {
            self.sum[i] += x;
            self.sq[i] += x * x;
        }
        self.n += 1;
    }

    fn merge(&mut self, o: Acc) {
        if self.sum.is_empty() {
            self.sum = o.sum;
            self.sq = o.sq;
        } else {
            for (a, b) in self.sum.iter_mut().zip(&o.sum) {
                *a += b;
            }
            for (a, b) in self.sq.iter_mut().zip(&o.sq) {
                *a += b;
            }
        }
        self.n += o.n;
        self.end = self.end.max(o.end);
    }
}

/// How the model scales (from the params), for scoring.
#[derive(Debug, Clone)]
struct Scoring {
    input: String,
    output: String,
    version_col: String,
    with_mean: bool,
    with_std: bool,
}

impl Scoring {
    fn of(p: &Params) -> Result<Self> {
        Ok(Scoring {
            input: p.str("inputCol")?,
            output: p.str("outputCol")?,
            version_col: p.str("modelVersionCol")?,
            with_mean: p.bool("withMean")?,
            with_std: p.bool("withStd")?,
        })
    }
}

/// A model version: mean, inverse std, version, timestamp.
#[derive(Debug, Clone)]
struct Stats {
    mean: Vec<f64>,
    std: Vec<f64>,
    version: i64,
    timestamp: i64,
}

impl Stats {
    fn row(&self) -> Result<RecordBatch> {
        one_row(vec![
            ("mean", dense_column(&[Some(self.mean.clone())])),
            ("std", dense_column(&[Some(self.std.clone())])),
            ("version", version_array(self.version)),
            ("timestamp", version_array(self.timestamp)),
        ])
    }

    fn scale(&self, s: &Scoring, row: usize, v: &Vector) -> Result<Vec<f64>> {
        self.check_size(s, row, v)?;
        let mut x = Vec::with_capacity(v.size());
        self.scale_into(s, v, &mut x);
        Ok(x)
    }

    /// Append `v` scaled to `out`; `v` has the model's size.
    fn scale_into(&self, s: &Scoring, v: &Vector, out: &mut Vec<f64>) {
        let start = out.len();
        match v {
            Vector::Dense(x) => out.extend_from_slice(x),
            Vector::Sparse {
                size,
                indices,
                values,
            } => {
                out.resize(start + size, 0.0);
                for (&i, &x) in indices.iter().zip(values) {
                    out[start + i] = x;
                }
            }
        }
        for (i, xi) in out[start..].iter_mut().enumerate() {
            if s.with_mean {
                *xi -= self.mean[i];
            }
            if s.with_std {
                *xi *= if self.std[i] == 0.0 {
                    0.0
                } else {
                    1.0 / self.std[i]
                };
            }
        }
    }

    fn check_size(&self, s: &Scoring, row: usize, v: &Vector) -> Result<()> {
        if v.size() == self.mean.len() {
            return Ok(());
        }
        Err(MlError::Row {
            row,
            message: format!(
                "column '{}': vector of size {}, the model has {}",
                s.input,
                v.size(),
                self.mean.len()
            ),
        })
    }
}

struct Cumulative {
    input: String,
    windows: Windows,
    event_time: Option<String>,
    scoring: Scoring,
    sum: Vec<f64>,
    sq: Vec<f64>,
    n: u64,
    version: i64,
    /// Open windows by start (count and global windows use start 0).
    open: BTreeMap<i64, Acc>,
    watermark: i64,
    late: u64,
    /// Progressive validation: the newest model, and rows waiting for a first model.
    model: Option<Stats>,
    held: Vec<RecordBatch>,
    /// Whether closing a window builds its model-data row (progressive validation reads
    /// the model in place and wants none).
    rows_wanted: bool,
}

impl Cumulative {
    /// Fold a closed window into the statistics; emit a version if it held rows.
    fn close(&mut self, acc: Acc, timestamp: i64) -> Result<Option<RecordBatch>> {
        if acc.n == 0 {
            return Ok(None);
        }
        if self.sum.is_empty() {
            self.sum = vec![0.0; acc.sum.len()];
            self.sq = vec![0.0; acc.sum.len()];
        }
        if acc.sum.len() != self.sum.len() {
            return Err(MlError::column(
                &self.input,
                format!(
                    "vectors of size {} after vectors of size {}",
                    acc.sum.len(),
                    self.sum.len()
                ),
            ));
        }
        for (a, b) in self.sum.iter_mut().zip(&acc.sum) {
            *a += b;
        }
        for (a, b) in self.sq.iter_mut().zip(&acc.sq) {
            *a += b;
        }
        self.n += acc.n;
        let n = self.n as f64;
        // The new version in the old one's buffers (a version per row is common).
        let mut stats = self.model.take().unwrap_or(Stats {
            mean: Vec::new(),
            std: Vec::new(),
            version: 0,
            timestamp: 0,
        });
        stats.mean.clear();
        // Flink ML scales by the reciprocal.
        stats.mean.extend(self.sum.iter().map(|s| s * (1.0 / n)));
        stats.std.clear();
        if self.n > 1 {
            stats.std.extend(
                self.sq
                    .iter()
                    .zip(&stats.mean)
                    .map(|(q, m)| ((q - n * m * m) / (n - 1.0)).sqrt()),
            );
        } else {
            stats.std.resize(stats.mean.len(), 0.0);
        }
        stats.version = self.version;
        stats.timestamp = timestamp;
        self.version += 1;
        let row = if self.rows_wanted {
            Some(stats.row()?)
        } else {
            None
        };
        self.model = Some(stats);
        Ok(row)
    }

    fn window_end_timestamp(&self, start: i64, acc: &Acc) -> i64 {
        match self.windows {
            Windows::EventTimeTumbling(size) | Windows::ProcessingTimeTumbling(size) => {
                start.saturating_add(size) - 1
            }
            Windows::EventTimeSession(_) | Windows::ProcessingTimeSession(_) => acc.end - 1,
            Windows::Global | Windows::CountTumbling(_) => i64::MAX,
        }
    }

    /// Add one row at time `t` (event or processing time); returns a version when the row
    /// completes a count window.
    fn add(&mut self, v: &Vector, t: i64) -> Result<Option<RecordBatch>> {
        if let Some(first) = self.open.values().find(|a| !a.sum.is_empty())
            && first.sum.len() != v.size()
        {
            return Err(MlError::column(
                &self.input,
                format!(
                    "vector of size {} in a window of size {}",
                    v.size(),
                    first.sum.len()
                ),
            ));
        }
        match self.windows {
            Windows::Global => self.open.entry(0).or_default().add(v),
            Windows::CountTumbling(size) => {
                let acc = self.open.entry(0).or_default();
                acc.add(v);
                if acc.n == size {
                    let acc = self.open.remove(&0).expect("just added");
                    return self.close(acc, i64::MAX);
                }
            }
            Windows::EventTimeTumbling(size) | Windows::ProcessingTimeTumbling(size) => {
                let start = t - t.rem_euclid(size);
                if self.windows.is_event_time() && start.saturating_add(size) - 1 <= self.watermark
                {
                    self.late += 1;
                    return Ok(None);
                }
                self.open.entry(start).or_default().add(v);
            }
            Windows::EventTimeSession(gap) | Windows::ProcessingTimeSession(gap) => {
                let end = t.saturating_add(gap);
                // Every open session this one touches merges with it (Flink: start <= the
                // other's end and end >= the other's start).
                let touching: Vec<i64> = self
                    .open
                    .iter()
                    .filter(|(s, a)| **s <= end && a.end >= t)
                    .map(|(s, _)| *s)
                    .collect();
                // Open sessions end after the watermark, so only a row merging with none
                // can be late.
                if touching.is_empty() && self.windows.is_event_time() && end - 1 <= self.watermark
                {
                    self.late += 1;
                    return Ok(None);
                }
                let mut acc = Acc {
                    end,
                    ..Acc::default()
                };
                acc.add(v);
                let mut start = t;
                for s in touching {
                    let other = self.open.remove(&s).expect("listed");
                    start = start.min(s);
                    acc.merge(other);
                }
                self.open.insert(start, acc);
            }
        }
        Ok(None)
    }

    /// Close every time window whose max timestamp is at most `t`, in order.
    fn fire_until(&mut self, t: i64) -> Result<Vec<RecordBatch>> {
        let mut out = Vec::new();
        loop {
            let due = self
                .open
                .iter()
                .map(|(s, a)| (self.window_end_timestamp(*s, a), *s))
                .filter(|(end, _)| *end <= t)
                .min();
            let Some((end, start)) = due else { break };
            let acc = self.open.remove(&start).expect("listed");
            let ts = if self.windows.is_event_time() {
                end
            } else {
                i64::MAX
            };
            out.extend(self.close(acc, ts)?);
        }
        Ok(out)
    }

    fn is_time_window(&self) -> bool {
        !matches!(self.windows, Windows::Global | Windows::CountTumbling(_))
    }

    fn now() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64)
    }

    fn times(&self, batch: &RecordBatch) -> Result<Vec<i64>> {
        match (&self.event_time, self.windows) {
            (Some(c), _) => event_times(batch, c),
            (None, Windows::ProcessingTimeTumbling(_) | Windows::ProcessingTimeSession(_)) => {
                Ok(vec![Self::now(); batch.num_rows()])
            }
            (None, _) => Ok(vec![0; batch.num_rows()]),
        }
    }

    fn rows(&self, batch: &RecordBatch) -> Result<Vec<Vector>> {
        read_vectors(&self.input, column(batch, &self.input)?)?
            .into_iter()
            .enumerate()
            .map(|(row, v)| {
                v.ok_or_else(|| MlError::Row {
                    row,
                    message: format!("column '{}': The vector must not be null.", self.input),
                })
            })
            .collect()
    }

    /// Scaled rows of `batch` with the model now (`None` per row without a model).
    fn score(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        let rows = self.rows(batch)?;
        let s = &self.scoring;
        let (out, versions): (Vec<Option<Vec<f64>>>, Vec<Option<i64>>) = match &self.model {
            Some(m) => (
                rows.iter()
                    .enumerate()
                    .map(|(i, v)| m.scale(s, i, v).map(Some))
                    .collect::<Result<_>>()?,
                vec![Some(m.version); rows.len()],
            ),
            None => (vec![None; rows.len()], vec![None; rows.len()]),
        };
        with_columns(
            batch,
            vec![
                (s.output.clone(), dense_column(&out)),
                (
                    s.version_col.clone(),
                    Arc::new(Int64Array::from(versions)) as ArrayRef,
                ),
            ],
        )
    }
}

impl OnlineLearner for Cumulative {
    fn learn(&mut self, batch: &RecordBatch) -> Result<Vec<RecordBatch>> {
        let times = self.times(batch)?;
        let mut out = Vec::new();
        for (v, t) in self.rows(batch)?.iter().zip(times) {
            out.extend(self.add(v, t)?);
        }
        Ok(out)
    }

    fn watermark(&mut self, watermark: i64) -> Result<Vec<RecordBatch>> {
        if !self.windows.is_event_time() {
            return Ok(Vec::new());
        }
        self.watermark = self.watermark.max(watermark);
        self.fire_until(self.watermark)
    }

    fn next_timer(&self) -> Option<i64> {
        if self.windows.is_event_time() || !self.is_time_window() {
            return None;
        }
        self.open
            .iter()
            .map(|(s, a)| self.window_end_timestamp(*s, a))
            .min()
    }

    fn on_timer(&mut self, now_ms: i64) -> Result<Vec<RecordBatch>> {
        if self.windows.is_event_time() || !self.is_time_window() {
            return Ok(Vec::new());
        }
        self.fire_until(now_ms)
    }

    fn finish(&mut self) -> Result<Vec<RecordBatch>> {
        match self.windows {
            Windows::Global => match self.open.remove(&0) {
                Some(acc) => Ok(self.close(acc, i64::MAX)?.into_iter().collect()),
                None => Ok(Vec::new()),
            },
            w if w.is_event_time() => self.fire_until(i64::MAX),
            _ => Ok(Vec::new()),
        }
    }

    /// Learn each row, then scale it with the newest model (a scaler sees no label, so it
    /// may learn a row before scaling it, as Flink ML's model scores a row with the model
    /// its window produced once that arrives). Rows before the first model wait for it.
    fn score_then_learn(&mut self, batch: &RecordBatch) -> Result<Vec<RecordBatch>> {
        if self.windows.is_event_time() {
            return Err(MlError::param(
                "windows",
                "progressive validation replays rows without event time: use count, \
                 global or processing-time windows",
            ));
        }
        self.rows_wanted = false;
        if batch.num_rows() == 0 {
            return Ok(Vec::new());
        }
        let times = self.times(batch)?;
        let rows = self.rows(batch)?;
        // Row-major scaled rows: every row of a batch returned has a model (rows before the
        // first model in this batch are scaled with it once it comes).
        let mut scaled: Vec<f64> = Vec::new();
        let mut versions: Vec<i64> = Vec::with_capacity(rows.len());
        let mut out = Vec::new();
        let mut waiting = self.model.is_none();
        for (i, (v, t)) in rows.iter().zip(times).enumerate() {
            self.add(v, t)?;
            if self.is_time_window() {
                self.fire_until(Self::now())?;
            }
            if self.model.is_none() {
                continue;
            }
            if waiting {
                // The first model: the rows that waited for it are scaled with it.
                waiting = false;
                for h in std::mem::take(&mut self.held) {
                    out.push(self.score(&h)?);
                }
                let m = self.model.as_ref().expect("checked");
                scaled.reserve(rows.len() * m.mean.len());
                for (j, w) in rows[..i].iter().enumerate() {
                    m.check_size(&self.scoring, j, w)?;
                    m.scale_into(&self.scoring, w, &mut scaled);
                    versions.push(m.version);
                }
            }
            let m = self.model.as_ref().expect("checked");
            m.check_size(&self.scoring, i, v)?;
            m.scale_into(&self.scoring, v, &mut scaled);
            versions.push(m.version);
        }
        if waiting {
            self.held.push(batch.clone());
            return Ok(out);
        }
        let s = &self.scoring;
        let width = scaled.len() / rows.len();
        let column = if width == 0 {
            dense_column(&vec![Some(Vec::new()); rows.len()])
        } else {
            crate::vector::dense_matrix_column(scaled, width)
        };
        out.push(with_columns(
            batch,
            vec![
                (s.output.clone(), column),
                (
                    s.version_col.clone(),
                    Arc::new(Int64Array::from(versions)) as ArrayRef,
                ),
            ],
        )?);
        Ok(out)
    }

    fn finish_scoring(&mut self) -> Result<Vec<RecordBatch>> {
        std::mem::take(&mut self.held)
            .iter()
            .map(|h| self.score(h))
            .collect()
    }

    fn held_for_scoring(&self) -> Vec<RecordBatch> {
        self.held.clone()
    }

    fn restore_held(&mut self, held: Vec<RecordBatch>) -> Result<()> {
        self.held = held;
        Ok(())
    }

    fn snapshot(&self, e: &mut StateEncoder) {
        put_f64s(e, &self.sum);
        put_f64s(e, &self.sq);
        e.u64(self.n)
            .i64(self.version)
            .i64(self.watermark)
            .u64(self.late);
        e.u64(self.open.len() as u64);
        for (s, a) in &self.open {
            e.i64(*s).i64(a.end).u64(a.n);
            put_f64s(e, &a.sum);
            put_f64s(e, &a.sq);
        }
        match &self.model {
            Some(m) => {
                e.bool(true);
                put_f64s(e, &m.mean);
                put_f64s(e, &m.std);
                e.i64(m.version).i64(m.timestamp);
            }
            None => {
                e.bool(false);
            }
        }
    }

    fn restore(&mut self, d: &mut StateDecoder<'_>) -> Result<()> {
        self.sum = get_f64s(d)?;
        self.sq = get_f64s(d)?;
        self.n = d.u64().map_err(state_err)?;
        self.version = d.i64().map_err(state_err)?;
        self.watermark = d.i64().map_err(state_err)?;
        self.late = d.u64().map_err(state_err)?;
        let open = d.count(24).map_err(state_err)?;
        self.open.clear();
        for _ in 0..open {
            let s = d.i64().map_err(state_err)?;
            let end = d.i64().map_err(state_err)?;
            let n = d.u64().map_err(state_err)?;
            let sum = get_f64s(d)?;
            let sq = get_f64s(d)?;
            self.open.insert(s, Acc { sum, sq, n, end });
        }
        self.model = if d.bool().map_err(state_err)? {
            Some(Stats {
                mean: get_f64s(d)?,
                std: get_f64s(d)?,
                version: d.i64().map_err(state_err)?,
                timestamp: d.i64().map_err(state_err)?,
            })
        } else {
            None
        };
        Ok(())
    }

    fn late_rows(&self) -> u64 {
        self.late
    }
}

/// The model: scales with the newest model data it was given (`mean`, `std`, `version`,
/// `timestamp`) and writes the version in `modelVersionCol`.
#[derive(Debug, Clone)]
pub struct OnlineStandardScalerModel {
    params: Params,
    model: Option<Stats>,
}

impl Default for OnlineStandardScalerModel {
    fn default() -> Self {
        OnlineStandardScalerModel {
            params: Params::new(model_specs()),
            model: None,
        }
    }
}

crate::impl_stage!(
    OnlineStandardScalerModel,
    "org.apache.flink.ml.feature.standardscaler.OnlineStandardScalerModel"
);

impl AlgoOperator for OnlineStandardScalerModel {
    fn transform(&self, inputs: &[RecordBatch]) -> Result<Vec<RecordBatch>> {
        let batch = crate::table::first(inputs)?;
        let m = self
            .model
            .as_ref()
            .ok_or_else(|| MlError::Invalid(format!("{}: no model data", self.class_name())))?;
        let s = Scoring::of(&self.params)?;
        let rows = read_vectors(&s.input, column(batch, &s.input)?)?;
        let out = rows
            .iter()
            .enumerate()
            .map(|(i, v)| v.as_ref().map(|v| m.scale(&s, i, v)).transpose())
            .collect::<Result<Vec<_>>>()?;
        Ok(vec![with_columns(
            batch,
            vec![
                (s.output, dense_column(&out)),
                (
                    s.version_col,
                    Arc::new(Int64Array::from(vec![m.version; rows.len()])) as ArrayRef,
                ),
            ],
        )?])
    }
}

impl Model for OnlineStandardScalerModel {
    fn model_data(&self) -> Result<Vec<RecordBatch>> {
        match &self.model {
            Some(m) => Ok(vec![m.row()?]),
            None => Ok(Vec::new()),
        }
    }

    fn set_model_data(&mut self, data: &[RecordBatch]) -> Result<()> {
        let t = newest_row(data, "version")?;
        let mean = model_vector(&t, "mean")?;
        let std = model_vector(&t, "std")?;
        if mean.len() != std.len() {
            return Err(MlError::Invalid(format!(
                "model data: mean of size {} and std of size {}",
                mean.len(),
                std.len()
            )));
        }
        self.model = Some(Stats {
            mean,
            std,
            version: super::first_int(&t, "version", 0)?,
            timestamp: super::first_int(&t, "timestamp", i64::MAX)?,
        });
        Ok(())
    }

    fn version(&self) -> Option<i64> {
        self.model.as_ref().map(|m| m.version)
    }

    fn output_schema(&self, input: &Schema) -> Result<Option<SchemaRef>> {
        Ok(Some(super::appended(input, output_fields(&self.params)?)))
    }

    fn scores_until(&self) -> Option<i64> {
        let delay = self.params.i64("maxAllowedModelDelayMs").unwrap_or(0);
        Some(
            self.model
                .as_ref()
                .map_or(i64::MIN, |m| m.timestamp.saturating_add(delay)),
        )
    }
}
