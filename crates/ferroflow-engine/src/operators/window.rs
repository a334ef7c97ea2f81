//! Keyed windows: tumbling, sliding and session windows on event time, and count windows.
//!
//! A window `[start, end)` fires when the watermark reaches `end - 1`; it then stays open for
//! `allowed_lateness`, during which each late record updates it and re-emits its result.
//! Records for windows already closed are late: they go to the `late` side output or are
//! dropped and counted in the `late_records_dropped` metric, never lost silently.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arrow_array::{RecordBatch, UInt32Array};
use arrow_schema::SchemaRef;
use arrow_select::take::take_record_batch;

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{ArrayRef, BooleanArray, Int64Array};

use super::aggregate::{
    Aggregate, BoundAggregate, GroupTable, bind_aggregates, grouped_schema, owned_rows,
};
use crate::error::{Result, plan_err};
use crate::graph::{DataStream, KeyedStream};
use crate::message::Watermark;
use crate::operator::RestoreContext;
use crate::operator::{
    InstanceInfo, Operator, OperatorContext, OperatorFactory, OperatorState, Output, StateKind,
};
use crate::state::{StateDecoder, StateEncoder};
use crate::time::{event_time_millis, millis, time_column_index};

/// Name of the side output that carries late records.
pub const LATE_OUTPUT: &str = "late";

/// The shape of a time window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowKind {
    /// Fixed, non-overlapping windows of `size`.
    Tumbling {
        /// Window length.
        size: Duration,
    },
    /// Windows of `size` starting every `slide` (a record falls in `size / slide` windows).
    Sliding {
        /// Window length.
        size: Duration,
        /// Distance between window starts.
        slide: Duration,
    },
    /// Per key, records closer than `gap` fall in one window.
    Session {
        /// Inactivity gap that closes a session.
        gap: Duration,
    },
}

/// What happens to a record whose windows have all closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LatePolicy {
    /// Drop it and count it in the `late_records_dropped` metric.
    #[default]
    Drop,
    /// Send it, unchanged, to the `late` side output.
    SideOutput,
}

/// A time window over an event-time column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowSpec {
    /// Window shape.
    pub kind: WindowKind,
    /// Event-time column (timestamp or Int64 milliseconds).
    pub time_column: String,
    /// How long a fired window accepts late records.
    pub allowed_lateness: Duration,
    /// Where records too late for any window go.
    pub late: LatePolicy,
}

impl WindowSpec {
    /// Tumbling windows of `size` on `time_column`.
    pub fn tumbling(time_column: &str, size: Duration) -> Self {
        Self::of(WindowKind::Tumbling { size }, time_column)
    }

    /// Sliding windows of `size` every `slide` on `time_column`.
    pub fn sliding(time_column: &str, size: Duration, slide: Duration) -> Self {
        Self::of(WindowKind::Sliding { size, slide }, time_column)
    }

    /// Session windows closed by `gap` of inactivity on `time_column`.
    pub fn session(time_column: &str, gap: Duration) -> Self {
        Self::of(WindowKind::Session { gap }, time_column)
    }

    fn of(kind: WindowKind, time_column: &str) -> Self {
        WindowSpec {
            kind,
            time_column: time_column.into(),
            allowed_lateness: Duration::ZERO,
            late: LatePolicy::Drop,
        }
    }

    /// Keep fired windows open for late records this long.
    pub fn with_allowed_lateness(mut self, lateness: Duration) -> Self {
        self.allowed_lateness = lateness;
        self
    }

    /// Send late records to the `late` side output.
    pub fn with_late_side_output(mut self) -> Self {
        self.late = LatePolicy::SideOutput;
        self
    }

    fn validate(&self, node: &str) -> Result<()> {
        let bounded = |d: Duration, what: &str| {
            if millis(d) > crate::time::MAX_EVENT_TIME_MS {
                plan_err(format!(
                    "node '{node}': window {what} {d:?} is longer than {} ms",
                    crate::time::MAX_EVENT_TIME_MS
                ))
            } else {
                Ok(())
            }
        };
        let positive = |d: Duration, what: &str| {
            if millis(d) <= 0 {
                plan_err(format!(
                    "node '{node}': window {what} must be at least 1 ms"
                ))
            } else {
                bounded(d, what)
            }
        };
        bounded(self.allowed_lateness, "allowed lateness")?;
        match self.kind {
            WindowKind::Tumbling { size } => positive(size, "size"),
            WindowKind::Sliding { size, slide } => {
                positive(size, "size")?;
                positive(slide, "slide")?;
                if slide > size {
                    return plan_err(format!(
                        "node '{node}': sliding window slide ({slide:?}) is larger than its size ({size:?}); records would fall between windows"
                    ));
                }
                Ok(())
            }
            WindowKind::Session { gap } => positive(gap, "gap"),
        }
    }
}

struct WindowFactory {
    spec: WindowSpec,
    input: SchemaRef,
    schema: SchemaRef,
    keys: Vec<usize>,
    aggs: Vec<BoundAggregate>,
    time_idx: usize,
}

impl OperatorFactory for WindowFactory {
    fn state_kind(&self) -> StateKind {
        StateKind::Keyed
    }

    fn output_schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn side_outputs(&self) -> Vec<(String, SchemaRef)> {
        vec![(LATE_OUTPUT.to_string(), self.input.clone())]
    }

    fn create(&self, _: &InstanceInfo) -> Result<Box<dyn Operator>> {
        Ok(Box::new(WindowOperator {
            table: GroupTable::new(&self.input, &self.keys, self.aggs.clone())?,
            schema: self.schema.clone(),
            spec: self.spec.clone(),
            time_idx: self.time_idx,
            lateness: millis(self.spec.allowed_lateness),
            watermark: Watermark::MIN,
            timers: BTreeMap::new(),
            cleanup: BTreeMap::new(),
            generation: Vec::new(),
            fired: Vec::new(),
            sessions: HashMap::new(),
            late_dropped: Arc::new(AtomicU64::new(0)),
            late_emitted: Arc::new(AtomicU64::new(0)),
            restored_late: (0, 0),
        }))
    }
}

/// Where the rows of one batch go.
struct Assignment {
    /// Row index for each (row, group) pair (a row may fall in several windows).
    rows: Vec<u32>,
    /// Group of each pair.
    groups: Vec<u32>,
    /// Rows too late for every window.
    late: Vec<u32>,
    /// Groups already fired that this batch updated (allowed lateness).
    refire: Vec<u32>,
}

struct WindowOperator {
    table: GroupTable,
    schema: SchemaRef,
    spec: WindowSpec,
    time_idx: usize,
    lateness: i64,
    watermark: Watermark,
    /// window end -> groups to fire when the watermark reaches end - 1.
    timers: BTreeMap<i64, Vec<(u32, u32)>>,
    /// cleanup time -> fired groups to free.
    cleanup: BTreeMap<i64, Vec<(u32, u32)>>,
    /// Bumped each time a group id is freed, so stale timer entries are ignored.
    generation: Vec<u32>,
    fired: Vec<bool>,
    /// Session windows: key -> its open sessions.
    sessions: HashMap<Box<[u8]>, Vec<u32>>,
    late_dropped: Arc<AtomicU64>,
    late_emitted: Arc<AtomicU64>,
    /// Late counts restored from a checkpoint, added to the metrics at open.
    restored_late: (u64, u64),
}

impl WindowOperator {
    fn expired(&self, end: i64) -> bool {
        (end - 1).saturating_add(self.lateness) <= self.watermark
    }

    fn track(&mut self, g: u32) {
        let n = g as usize + 1;
        if self.generation.len() < n {
            self.generation.resize(n, 0);
            self.fired.resize(n, false);
        }
    }

    /// A group was created or its end moved: schedule its firing.
    fn schedule(&mut self, g: u32, end: i64) {
        self.track(g);
        self.timers
            .entry(end)
            .or_default()
            .push((g, self.generation[g as usize]));
    }

    fn free(&mut self, g: u32) {
        if !self.table.is_live(g) {
            return;
        }
        if matches!(self.spec.kind, WindowKind::Session { .. }) {
            let key = self.table.key_of(g);
            if let Some(list) = self.sessions.get_mut(key) {
                list.retain(|x| *x != g);
                if list.is_empty() {
                    self.sessions.remove(key);
                }
            }
        }
        self.table.free_group(g);
        self.generation[g as usize] = self.generation[g as usize].wrapping_add(1);
        self.fired[g as usize] = false;
    }

    fn valid(&self, g: u32, generation: u32, end: i64) -> bool {
        self.table.is_live(g)
            && self.generation[g as usize] == generation
            && self.table.window(g).1 == end
    }

    /// Assign rows to sliding/tumbling windows.
    fn assign_fixed(
        &mut self,
        batch: &RecordBatch,
        ts: &[i64],
        size: i64,
        slide: i64,
    ) -> Result<Assignment> {
        let keys = self.table.key_rows(batch)?;
        let mut rows = Vec::with_capacity(ts.len());
        let mut groups = Vec::with_capacity(ts.len());
        let mut late = Vec::new();
        let mut refire = Vec::new();
        for (i, &t) in ts.iter().enumerate() {
            let mut start = t - t.rem_euclid(slide);
            let mut any = false;
            while start > t - size {
                let end = start + size;
                if !self.expired(end) {
                    any = true;
                    let (g, new) = self.table.group(keys.get(i), start, end);
                    if new {
                        self.schedule(g, end);
                    }
                    if end - 1 <= self.watermark {
                        // Within allowed lateness: update and fire again after this batch.
                        refire.push(g);
                    }
                    rows.push(i as u32);
                    groups.push(g);
                }
                start -= slide;
            }
            if !any {
                late.push(i as u32);
            }
        }
        Ok(Assignment {
            rows,
            groups,
            late,
            refire,
        })
    }

    fn assign_session(&mut self, batch: &RecordBatch, ts: &[i64], gap: i64) -> Result<Assignment> {
        let keys = self.table.key_rows(batch)?;
        let mut rows: Vec<u32> = Vec::with_capacity(ts.len());
        let mut groups: Vec<u32> = Vec::with_capacity(ts.len());
        let mut late = Vec::new();
        let mut refire = Vec::new();
        for (i, &t) in ts.iter().enumerate() {
            let (start, end) = (t, t + gap);
            if self.expired(end) {
                late.push(i as u32);
                continue;
            }
            let key = keys.get(i);
            let overlapping: Vec<u32> = self
                .sessions
                .get(key)
                .map(|l| {
                    l.iter()
                        .copied()
                        .filter(|&g| {
                            let (s, e) = self.table.window(g);
                            s < end && start < e
                        })
                        .collect()
                })
                .unwrap_or_default();
            let g = match overlapping.split_first() {
                None => {
                    let (g, _) = self.table.group(key, start, end);
                    self.sessions.entry(key.into()).or_default().push(g);
                    self.schedule(g, end);
                    g
                }
                Some((&target, rest)) => {
                    let (mut s, mut e) = self.table.window(target);
                    s = s.min(start);
                    e = e.max(end);
                    for &other in rest {
                        let (os, oe) = self.table.window(other);
                        s = s.min(os);
                        e = e.max(oe);
                        self.table.merge(target, other);
                        // Rows of this batch already headed for `other` now go to `target`.
                        for x in groups.iter_mut().filter(|x| **x == other) {
                            *x = target;
                        }
                        refire.retain(|x| *x != other);
                        if let Some(l) = self.sessions.get_mut(key) {
                            l.retain(|x| *x != other);
                        }
                        self.generation[other as usize] =
                            self.generation[other as usize].wrapping_add(1);
                        self.fired[other as usize] = false;
                    }
                    let old_end = self.table.window(target).1;
                    self.table.rewindow(target, s, e);
                    if e != old_end {
                        self.fired[target as usize] = false;
                        self.schedule(target, e);
                    }
                    target
                }
            };
            if end - 1 <= self.watermark || self.fired[g as usize] {
                refire.push(g);
            }
            rows.push(i as u32);
            groups.push(g);
        }
        Ok(Assignment {
            rows,
            groups,
            late,
            refire,
        })
    }

    fn after_fire(&mut self, g: u32) {
        self.fired[g as usize] = true;
        let end = self.table.window(g).1;
        if self.lateness == 0 {
            self.free(g);
        } else {
            let at = (end - 1).saturating_add(self.lateness);
            self.cleanup
                .entry(at)
                .or_default()
                .push((g, self.generation[g as usize]));
        }
    }
}

impl Operator for WindowOperator {
    fn open(&mut self, ctx: &OperatorContext) -> Result<()> {
        self.late_dropped = ctx.metrics.counter("late_records_dropped");
        self.late_emitted = ctx.metrics.counter("late_records_side_output");
        self.late_dropped
            .fetch_add(self.restored_late.0, Ordering::Relaxed);
        self.late_emitted
            .fetch_add(self.restored_late.1, Ordering::Relaxed);
        Ok(())
    }

    fn snapshot_state(&mut self) -> Result<Option<OperatorState>> {
        let groups = self.table.live_groups();
        let fired: ArrayRef = Arc::new(BooleanArray::from(
            groups
                .iter()
                .map(|g| self.fired.get(*g as usize).copied().unwrap_or(false))
                .collect::<Vec<_>>(),
        ));
        let mut e = StateEncoder::new();
        e.i64(self.watermark)
            .u64(self.late_dropped.load(Ordering::Relaxed))
            .u64(self.late_emitted.load(Ordering::Relaxed));
        Ok(Some(OperatorState {
            batches: vec![self.table.state_batch(&groups, vec![("__fired", fired)])?],
            bytes: e.finish(),
        }))
    }

    fn restore_state(&mut self, states: Vec<OperatorState>, ctx: &RestoreContext) -> Result<()> {
        let mut watermark = Watermark::MAX;
        for s in &states {
            let mut d = StateDecoder::new(&s.bytes, &ctx.instance.node);
            // After rescaling, the earliest clock: no record is taken for late too early.
            watermark = watermark.min(d.i64()?);
            self.restored_late.0 += d.u64()?;
            self.restored_late.1 += d.u64()?;
            d.end()?;
        }
        self.watermark = if states.is_empty() {
            Watermark::MIN
        } else {
            watermark
        };
        let extra = self.table.extra_from();
        for s in &states {
            for b in &s.batches {
                let keep = owned_rows(ctx, &self.table, b)?;
                let loaded = self.table.load_state(b, keep.as_deref(), 1)?;
                let fired = b.column(extra).as_boolean();
                for (row, g) in loaded {
                    self.track(g);
                    let end = self.table.window(g).1;
                    if fired.value(row) {
                        self.fired[g as usize] = true;
                        let at = (end - 1).saturating_add(self.lateness);
                        self.cleanup
                            .entry(at)
                            .or_default()
                            .push((g, self.generation[g as usize]));
                    } else {
                        self.schedule(g, end);
                    }
                    if matches!(self.spec.kind, WindowKind::Session { .. }) {
                        let key: Box<[u8]> = self.table.key_of(g).into();
                        self.sessions.entry(key).or_default().push(g);
                    }
                }
            }
        }
        Ok(())
    }

    fn process_batch(&mut self, _: usize, batch: RecordBatch, out: &mut Output) -> Result<()> {
        let ts = event_time_millis(batch.column(self.time_idx), &self.spec.time_column)?;
        let Assignment {
            rows,
            groups,
            late,
            mut refire,
        } = match self.spec.kind {
            WindowKind::Tumbling { size } => {
                let s = millis(size);
                self.assign_fixed(&batch, &ts, s, s)?
            }
            WindowKind::Sliding { size, slide } => {
                self.assign_fixed(&batch, &ts, millis(size), millis(slide))?
            }
            WindowKind::Session { gap } => self.assign_session(&batch, &ts, millis(gap))?,
        };
        let identity = rows.len() == batch.num_rows()
            && rows.iter().enumerate().all(|(i, r)| *r as usize == i);
        self.table
            .update(&batch, (!identity).then_some(rows.as_slice()), &groups)?;
        if !refire.is_empty() {
            refire.sort_unstable();
            refire.dedup();
            // Only windows whose end the watermark passed fire now; others fire on time.
            refire.retain(|&g| self.table.window(g).1 - 1 <= self.watermark);
            if !refire.is_empty() {
                out.emit(self.table.emit(&refire, true, &self.schema)?);
                for g in refire {
                    if !self.fired[g as usize] {
                        self.after_fire(g);
                    }
                }
            }
        }
        if !late.is_empty() {
            let n = late.len() as u64;
            match self.spec.late {
                LatePolicy::Drop => {
                    self.late_dropped.fetch_add(n, Ordering::Relaxed);
                }
                LatePolicy::SideOutput => {
                    self.late_emitted.fetch_add(n, Ordering::Relaxed);
                    out.emit_side(
                        LATE_OUTPUT,
                        take_record_batch(&batch, &UInt32Array::from(late))?,
                    );
                }
            }
        }
        Ok(())
    }

    fn process_watermark(&mut self, watermark: Watermark, out: &mut Output) -> Result<()> {
        if watermark <= self.watermark {
            return Ok(());
        }
        self.watermark = watermark;
        let mut due = Vec::new();
        while let Some((&end, _)) = self.timers.first_key_value() {
            if end - 1 > watermark {
                break;
            }
            let (_, entries) = self.timers.pop_first().expect("checked non-empty");
            for (g, generation) in entries {
                if self.valid(g, generation, end) && !self.fired[g as usize] {
                    due.push(g);
                }
            }
        }
        for chunk in due.chunks(8192) {
            out.emit(self.table.emit(chunk, true, &self.schema)?);
        }
        for g in due {
            self.after_fire(g);
        }
        while let Some((&at, _)) = self.cleanup.first_key_value() {
            if at > watermark {
                break;
            }
            let (_, entries) = self.cleanup.pop_first().expect("checked non-empty");
            for (g, generation) in entries {
                // A session that grew since it fired has a later cleanup time of its own.
                if self.table.is_live(g)
                    && self.generation[g as usize] == generation
                    && (self.table.window(g).1 - 1).saturating_add(self.lateness) == at
                {
                    self.free(g);
                }
            }
        }
        Ok(())
    }
}

impl KeyedStream {
    /// Aggregate per key and time window. Output: the key columns, `window_start`,
    /// `window_end`, then the aggregates. Late records go to the `late` side output when the
    /// spec asks for it (see [`DataStream::side_output`]).
    pub fn window(&self, name: &str, spec: WindowSpec, aggs: &[Aggregate]) -> Result<DataStream> {
        window_on(&self.stream, &self.keys, name, spec, aggs, false)
    }

    /// Aggregate per key over tumbling windows of `size` records (the last, partial window of
    /// each key is emitted when input ends).
    pub fn count_window(&self, name: &str, size: usize, aggs: &[Aggregate]) -> Result<DataStream> {
        if size == 0 {
            return plan_err(format!(
                "node '{name}': count window size must be at least 1"
            ));
        }
        let input = self.stream.schema();
        let bound = bind_aggregates(aggs, &input, name)?;
        let schema = grouped_schema(&input, &self.keys, &bound, false)?;
        self.stream.transform(
            name,
            Arc::new(CountWindowFactory {
                input,
                schema,
                keys: self.keys.clone(),
                aggs: bound,
                size,
            }),
        )
    }
}

impl DataStream {
    /// Aggregate over time windows of the whole stream (no key; runs as one instance).
    pub fn window_all(
        &self,
        name: &str,
        spec: WindowSpec,
        aggs: &[Aggregate],
    ) -> Result<DataStream> {
        window_on(self, &[], name, spec, aggs, true)
    }
}

fn window_on(
    stream: &DataStream,
    keys: &[usize],
    name: &str,
    spec: WindowSpec,
    aggs: &[Aggregate],
    single: bool,
) -> Result<DataStream> {
    spec.validate(name)?;
    let input = stream.schema();
    let time_idx = time_column_index(&input, &spec.time_column, name)?;
    let bound = bind_aggregates(aggs, &input, name)?;
    let schema = grouped_schema(&input, keys, &bound, true)?;
    let factory = Arc::new(WindowFactory {
        spec,
        input,
        schema,
        keys: keys.to_vec(),
        aggs: bound,
        time_idx,
    });
    if single {
        stream.transform_single(name, factory)
    } else {
        stream.transform(name, factory)
    }
}

struct CountWindowFactory {
    input: SchemaRef,
    schema: SchemaRef,
    keys: Vec<usize>,
    aggs: Vec<BoundAggregate>,
    size: usize,
}

impl OperatorFactory for CountWindowFactory {
    fn state_kind(&self) -> StateKind {
        StateKind::Keyed
    }
    fn output_schema(&self) -> SchemaRef {
        self.schema.clone()
    }
    fn create(&self, _: &InstanceInfo) -> Result<Box<dyn Operator>> {
        Ok(Box::new(CountWindow {
            table: GroupTable::new(&self.input, &self.keys, self.aggs.clone())?,
            schema: self.schema.clone(),
            size: self.size,
            progress: HashMap::new(),
        }))
    }
}

struct CountWindow {
    table: GroupTable,
    schema: SchemaRef,
    size: usize,
    /// key -> (window sequence number, records in it so far).
    progress: HashMap<Box<[u8]>, (i64, usize)>,
}

impl Operator for CountWindow {
    fn snapshot_state(&mut self) -> Result<Option<OperatorState>> {
        let groups = self.table.live_groups();
        let counts: ArrayRef = Arc::new(Int64Array::from_iter_values(groups.iter().map(|g| {
            self.progress
                .get(self.table.key_of(*g))
                .map_or(0, |p| p.1 as i64)
        })));
        Ok(Some(OperatorState {
            batches: vec![self.table.state_batch(&groups, vec![("__count", counts)])?],
            bytes: Vec::new(),
        }))
    }

    fn restore_state(&mut self, states: Vec<OperatorState>, ctx: &RestoreContext) -> Result<()> {
        let extra = self.table.extra_from();
        for s in &states {
            for b in &s.batches {
                let keep = owned_rows(ctx, &self.table, b)?;
                let loaded = self.table.load_state(b, keep.as_deref(), 1)?;
                let counts = b.column(extra).as_primitive::<Int64Type>();
                for (row, g) in loaded {
                    let seq = self.table.window(g).0;
                    let key: Box<[u8]> = self.table.key_of(g).into();
                    self.progress
                        .insert(key, (seq, counts.value(row).max(0) as usize));
                }
            }
        }
        Ok(())
    }

    fn process_batch(&mut self, _: usize, batch: RecordBatch, out: &mut Output) -> Result<()> {
        let keys = self.table.key_rows(&batch)?;
        let mut groups = Vec::with_capacity(batch.num_rows());
        let mut complete = Vec::new();
        for i in 0..batch.num_rows() {
            let key = keys.get(i);
            let entry = match self.progress.get_mut(key) {
                Some(e) => e,
                None => self.progress.entry(key.into()).or_insert((0, 0)),
            };
            let (g, _) = self.table.group(key, entry.0, entry.0);
            groups.push(g);
            entry.1 += 1;
            if entry.1 == self.size {
                complete.push(g);
                *entry = (entry.0 + 1, 0);
            }
        }
        self.table.update(&batch, None, &groups)?;
        if !complete.is_empty() {
            out.emit(self.table.emit(&complete, false, &self.schema)?);
            for g in complete {
                self.table.free_group(g);
            }
        }
        Ok(())
    }

    fn finish(&mut self, out: &mut Output) -> Result<()> {
        let groups = self.table.live_groups();
        for chunk in groups.chunks(8192) {
            out.emit(self.table.emit(chunk, false, &self.schema)?);
        }
        Ok(())
    }
}
