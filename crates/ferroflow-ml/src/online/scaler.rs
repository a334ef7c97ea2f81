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
use crate::vector::{Vector, dense_column, dense_matrix_view, dense_type, read_vectors};

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

crate::stage! {
    /// The estimator.
    pub struct OnlineStandardScaler("org.apache.flink.ml.feature.standardscaler.OnlineStandardScaler", specs()) {}
}

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
        self.scale_in_place(s, &mut out[start..]);
    }

    /// Scale `x` (of the model's size) in place.
    fn scale_in_place(&self, s: &Scoring, x: &mut [f64]) {
        crate::simd::standardize(
            x,
            s.with_mean.then_some(&self.mean[..]),
            s.with_std.then_some(&self.std[..]),
        );
    }

    fn check_size(&self, s: &Scoring, row: usize, v: &Vector) -> Result<()> {
        self.check_width(s, row, v.size())
    }

    fn check_width(&self, s: &Scoring, row: usize, width: usize) -> Result<()> {
        if width == self.mean.len() {
            return Ok(());
        }
        Err(MlError::Row {
            row,
            message: format!(
                "column '{}': vector of size {width}, the model has {}",
                s.input,
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
        self.fold(&acc.sum, &acc.sq, acc.n, timestamp)
    }

    /// Fold a closed window's sums (`n > 0` rows) into the statistics and make the next
    /// version, in the previous version's buffers (a version per row is common).
    fn fold(
        &mut self,
        sum: &[f64],
        sq: &[f64],
        n: u64,
        timestamp: i64,
    ) -> Result<Option<RecordBatch>> {
        if self.sum.is_empty() {
            self.sum = vec![0.0; sum.len()];
            self.sq = vec![0.0; sum.len()];
        }
        if sum.len() != self.sum.len() {
            return Err(MlError::column(
                &self.input,
                format!(
                    "vectors of size {} after vectors of size {}",
                    sum.len(),
                    self.sum.len()
                ),
            ));
        }
        crate::simd::add_assign(&mut self.sum, sum);
        crate::simd::add_assign(&mut self.sq, sq);
        self.n += n;
        let mut stats = self.model.take().unwrap_or(Stats {
            mean: Vec::new(),
            std: Vec::new(),
            version: 0,
            timestamp: 0,
        });
        crate::simd::mean_std(&self.sum, &self.sq, self.n, &mut stats.mean, &mut stats.std);
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

impl Cumulative {
    /// [`OnlineLearner::score_then_learn`] for count windows over a dense column without
    /// nulls (`x`: the batch's rows, `w` wide): the row-by-row arithmetic, reading rows in
    /// place and reusing the window's buffers instead of a vector and a window per row.
    fn score_then_learn_dense(
        &mut self,
        batch: &RecordBatch,
        x: &[f64],
        w: usize,
        size: u64,
    ) -> Result<Vec<RecordBatch>> {
        let mut acc = self.open.remove(&0).unwrap_or_default();
        if acc.sum.is_empty() {
            acc.sum = vec![0.0; w];
            acc.sq = vec![0.0; w];
        }
        let result = self.score_dense_rows(batch, x, w, size, &mut acc);
        if acc.n > 0 {
            self.open.insert(0, acc);
        }
        result
    }

    fn score_dense_rows(
        &mut self,
        batch: &RecordBatch,
        x: &[f64],
        w: usize,
        size: u64,
        acc: &mut Acc,
    ) -> Result<Vec<RecordBatch>> {
        debug_assert_eq!(x.len(), batch.num_rows() * w);
        if acc.sum.len() != w {
            return Err(MlError::column(
                &self.input,
                format!("vector of size {w} in a window of size {}", acc.sum.len()),
            ));
        }
        let rows = batch.num_rows();
        let mut scaled: Vec<f64> = Vec::new();
        let mut versions: Vec<i64> = Vec::with_capacity(rows);
        let mut out = Vec::new();
        let mut waiting = self.model.is_none();
        if !waiting {
            scaled.reserve(rows * w);
        }
        for (r, xr) in x.chunks_exact(w).enumerate() {
            crate::simd::add_moments(&mut acc.sum, &mut acc.sq, xr);
            acc.n += 1;
            if acc.n == size {
                self.fold(&acc.sum, &acc.sq, acc.n, i64::MAX)?;
                acc.sum.fill(0.0);
                acc.sq.fill(0.0);
                acc.n = 0;
            }
            if self.model.is_none() {
                continue;
            }
            if waiting {
                // The first model: the rows that waited for it are scaled with it.
                waiting = false;
                self.release_held(&mut out)?;
                let m = self.model.as_ref().expect("checked");
                m.check_width(&self.scoring, 0, w)?;
                scaled.reserve(rows * w);
                for j in 0..r {
                    let at = scaled.len();
                    scaled.extend_from_slice(&x[j * w..(j + 1) * w]);
                    m.scale_in_place(&self.scoring, &mut scaled[at..]);
                    versions.push(m.version);
                }
            }
            let m = self.model.as_ref().expect("checked");
            m.check_width(&self.scoring, r, w)?;
            let at = scaled.len();
            scaled.extend_from_slice(xr);
            m.scale_in_place(&self.scoring, &mut scaled[at..]);
            versions.push(m.version);
        }
        if waiting {
            self.held.push(batch.clone());
            return Ok(out);
        }
        out.push(self.with_scaled(
            batch,
            crate::vector::dense_matrix_column(scaled, w),
            versions,
        )?);
        Ok(out)
    }

    /// The first model came: the batches held for it, scaled with it, go out first.
    fn release_held(&mut self, out: &mut Vec<RecordBatch>) -> Result<()> {
        for h in std::mem::take(&mut self.held) {
            out.push(self.score(&h)?);
        }
        Ok(())
    }

    /// `batch` with its scaled rows and the version that scaled each.
    fn with_scaled(
        &self,
        batch: &RecordBatch,
        scaled: ArrayRef,
        versions: Vec<i64>,
    ) -> Result<RecordBatch> {
        let s = &self.scoring;
        with_columns(
            batch,
            vec![
                (s.output.clone(), scaled),
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
        if let Windows::CountTumbling(size) = self.windows
            && let Some((x, w)) = dense_matrix_view(column(batch, &self.input)?)
            && w > 0
        {
            return self.score_then_learn_dense(batch, x, w, size);
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
                self.release_held(&mut out)?;
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
        let width = scaled.len() / rows.len();
        let column = if width == 0 {
            dense_column(&vec![Some(Vec::new()); rows.len()])
        } else {
            crate::vector::dense_matrix_column(scaled, width)
        };
        out.push(self.with_scaled(batch, column, versions)?);
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

crate::stage! {
    /// The model: scales with the newest model data it was given (`mean`, `std`, `version`,
    /// `timestamp`) and writes the version in `modelVersionCol`.
    pub struct OnlineStandardScalerModel("org.apache.flink.ml.feature.standardscaler.OnlineStandardScalerModel", model_specs()) {
        model: Option<Stats>,
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stage::AnyStage;
    use crate::stage_from_json;
    use crate::vector::{dense_matrix_column, vector_column_general};
    use arrow_array::Array;

    fn learner(size: u64, schema: &Schema) -> Box<dyn OnlineLearner> {
        let stage = stage_from_json(&json!({
            "className": "OnlineStandardScaler",
            "paramMap": {"inputCol": "x", "outputCol": "y", "withMean": true, "withStd": true,
                "windows": {"class": "org.apache.flink.ml.common.window.CountTumblingWindows",
                            "size": size}}
        }))
        .unwrap();
        let AnyStage::Estimator(e) = stage else {
            panic!("an estimator")
        };
        e.as_online()
            .unwrap()
            .learner(schema, &LearnContext::default())
            .unwrap()
    }

    /// Scaled values (bits) and versions of the batches a learner returned, in order.
    fn scored(batches: Vec<RecordBatch>) -> Vec<(Vec<u64>, i64)> {
        let mut out = Vec::new();
        for b in batches {
            let y = read_vectors("y", b.column_by_name("y").unwrap()).unwrap();
            let v = b.column_by_name("version").unwrap();
            let v = v.as_any().downcast_ref::<Int64Array>().unwrap();
            for (row, y) in y.into_iter().enumerate() {
                let bits = y.unwrap().to_dense().iter().map(|x| x.to_bits()).collect();
                out.push((bits, v.value(row)));
            }
        }
        out
    }

    /// Progressive scaling of a dense column without nulls (read in place, windows reused)
    /// gives, to the bit, what the row-by-row path gives for the same rows in the general
    /// vector encoding: for windows of one row and of three (rows waiting for the first
    /// model, windows across batches, an incomplete window at the end).
    #[test]
    fn the_dense_path_scales_as_the_row_by_row_path() {
        let w = 3;
        let rows: Vec<Vec<f64>> = (0..10)
            .map(|i| {
                (0..w)
                    .map(|j| ((i * w + j) as f64 * 0.77).sin() * 5.0 + j as f64)
                    .collect()
            })
            .collect();
        for size in [1, 3] {
            let (mut dense, mut general) = (Vec::new(), Vec::new());
            let (mut a, mut b) = (None, None);
            let mut at = 0;
            for len in [2, 5, 3] {
                let part = &rows[at..at + len];
                at += len;
                let d = dense_matrix_column(part.concat(), w);
                let g = vector_column_general(
                    &part
                        .iter()
                        .map(|r| Some(Vector::Dense(r.clone())))
                        .collect::<Vec<_>>(),
                );
                for (col, out, l) in [(d, &mut dense, &mut a), (g, &mut general, &mut b)] {
                    let schema = Arc::new(Schema::new(vec![Field::new(
                        "x",
                        col.data_type().clone(),
                        true,
                    )]));
                    let batch = RecordBatch::try_new(schema.clone(), vec![col]).unwrap();
                    let l = l.get_or_insert_with(|| learner(size, &schema));
                    out.extend(scored(l.score_then_learn(&batch).unwrap()));
                }
            }
            for (out, l) in [(&mut dense, &mut a), (&mut general, &mut b)] {
                out.extend(scored(l.as_mut().unwrap().finish_scoring().unwrap()));
            }
            assert_eq!(dense.len(), rows.len(), "size {size}");
            assert_eq!(dense, general, "size {size}");
            // Versions count windows: the first model is version 0.
            let last = dense.last().unwrap().1;
            assert_eq!(last, (rows.len() as i64 / size as i64) - 1, "size {size}");
        }
    }
}
