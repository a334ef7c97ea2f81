//! Joins: a hash join of bounded inputs and an interval join of streams.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::{Array, ArrayRef, RecordBatch, UInt32Array, new_null_array};
use arrow_row::{RowConverter, Rows, SortField};
use arrow_schema::{Field, Schema, SchemaRef};
use arrow_select::concat::concat_batches;
use arrow_select::interleave::interleave_record_batch;
use arrow_select::take::take;

use crate::error::{EngineError, Result, plan_err};
use crate::graph::DataStream;
use crate::message::Watermark;
use crate::operator::RestoreContext;
use crate::operator::{InstanceInfo, Operator, OperatorFactory, OperatorState, Output, StateKind};
use crate::state::{StateDecoder, StateEncoder};
use crate::time::{event_time_millis, time_column_index};

/// Which rows a hash join keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinType {
    /// Matching pairs only.
    Inner,
    /// Matching pairs, plus left rows without a match (right columns null).
    Left,
}

/// Left columns, then right columns; a right column whose name is taken gets `_right`.
fn joined_schema(left: &Schema, right: &Schema, right_nullable: bool) -> SchemaRef {
    let mut fields: Vec<Field> = left.fields().iter().map(|f| f.as_ref().clone()).collect();
    for f in right.fields() {
        let mut name = f.name().clone();
        while fields.iter().any(|x| x.name() == &name) {
            name.push_str("_right");
        }
        fields.push(
            Field::new(
                name,
                f.data_type().clone(),
                f.is_nullable() || right_nullable,
            )
            .with_metadata(f.metadata().clone()),
        );
    }
    Arc::new(Schema::new(fields))
}

/// Resolve and type-check join keys on both sides, naming both producer nodes.
fn join_keys(
    name: &str,
    left: &DataStream,
    right: &DataStream,
    left_keys: &[&str],
    right_keys: &[&str],
) -> Result<(Vec<usize>, Vec<usize>)> {
    if left_keys.is_empty() || left_keys.len() != right_keys.len() {
        return plan_err(format!(
            "join '{name}': needs the same non-zero number of left keys ({}) and right keys ({})",
            left_keys.len(),
            right_keys.len()
        ));
    }
    let l = left.column_indices(left_keys, &format!("join '{name}'"))?;
    let r = right.column_indices(right_keys, &format!("join '{name}'"))?;
    let (ls, rs) = (left.schema(), right.schema());
    for (a, b) in l.iter().zip(&r) {
        let (fa, fb) = (ls.field(*a), rs.field(*b));
        if fa.data_type() != fb.data_type() {
            return plan_err(format!(
                "join '{name}': key '{}' from '{}' is {} but key '{}' from '{}' is {}",
                fa.name(),
                left.node_name(),
                fa.data_type(),
                fb.name(),
                right.node_name(),
                fb.data_type()
            ));
        }
    }
    Ok((l, r))
}

fn key_converter(schema: &Schema, keys: &[usize]) -> Result<RowConverter> {
    Ok(RowConverter::new(
        keys.iter()
            .map(|&k| SortField::new(schema.field(k).data_type().clone()))
            .collect(),
    )?)
}

/// Row-encoded keys and, per row, whether any key is null (null never matches).
fn encode_keys(
    conv: &RowConverter,
    batch: &RecordBatch,
    keys: &[usize],
) -> Result<(Rows, Vec<bool>)> {
    let cols: Vec<ArrayRef> = keys.iter().map(|&k| batch.column(k).clone()).collect();
    let rows = conv.convert_columns(&cols)?;
    let mut has_null = vec![false; batch.num_rows()];
    for c in &cols {
        if c.null_count() > 0 {
            for (i, n) in has_null.iter_mut().enumerate() {
                *n |= c.is_null(i);
            }
        }
    }
    Ok((rows, has_null))
}

struct HashJoinFactory {
    left: SchemaRef,
    schema: SchemaRef,
    left_keys: Vec<usize>,
    right_keys: Vec<usize>,
    join_type: JoinType,
}

impl OperatorFactory for HashJoinFactory {
    fn state_kind(&self) -> StateKind {
        StateKind::Keyed
    }
    fn output_schema(&self) -> SchemaRef {
        self.schema.clone()
    }
    fn create(&self, _: &InstanceInfo) -> Result<Box<dyn Operator>> {
        Ok(Box::new(HashJoin {
            conv: key_converter(&self.left, &self.left_keys)?,
            left_schema: self.left.clone(),
            schema: self.schema.clone(),
            left_keys: self.left_keys.clone(),
            right_keys: self.right_keys.clone(),
            join_type: self.join_type,
            left_batches: Vec::new(),
            build: None,
        }))
    }
}

struct Built {
    left: RecordBatch,
    table: HashMap<Box<[u8]>, Vec<u32>>,
    matched: Vec<bool>,
}

struct HashJoin {
    conv: RowConverter,
    left_schema: SchemaRef,
    schema: SchemaRef,
    left_keys: Vec<usize>,
    right_keys: Vec<usize>,
    join_type: JoinType,
    left_batches: Vec<RecordBatch>,
    build: Option<Built>,
}

impl HashJoin {
    fn build(&mut self) -> Result<()> {
        let left = concat_batches(&self.left_schema, &self.left_batches)?;
        self.left_batches.clear();
        let n = left.num_rows();
        self.build_from(left, vec![false; n])
    }

    fn build_from(&mut self, left: RecordBatch, matched: Vec<bool>) -> Result<()> {
        let (rows, nulls) = encode_keys(&self.conv, &left, &self.left_keys)?;
        let mut table: HashMap<Box<[u8]>, Vec<u32>> = HashMap::new();
        for (i, null) in nulls.iter().enumerate() {
            if !null {
                table
                    .entry(rows.row(i).data().into())
                    .or_default()
                    .push(i as u32);
            }
        }
        self.build = Some(Built {
            matched,
            left,
            table,
        });
        Ok(())
    }

    /// The build side's rows with a `__matched` column.
    fn state_batch(&self) -> Result<RecordBatch> {
        let (left, matched) = match &self.build {
            Some(b) => (b.left.clone(), b.matched.clone()),
            None => {
                let left = concat_batches(&self.left_schema, &self.left_batches)?;
                let n = left.num_rows();
                (left, vec![false; n])
            }
        };
        let mut fields: Vec<Field> = self
            .left_schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields.push(Field::new(
            "__matched",
            arrow_schema::DataType::Boolean,
            false,
        ));
        let mut cols = left.columns().to_vec();
        cols.push(Arc::new(arrow_array::BooleanArray::from(matched)));
        Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), cols)?)
    }

    fn probe(&mut self, right: &RecordBatch, out: &mut Output) -> Result<()> {
        let built = self.build.as_mut().expect("probe after build");
        let (rows, nulls) = encode_keys(&self.conv, right, &self.right_keys)?;
        let (mut li, mut ri) = (Vec::new(), Vec::new());
        for (i, null) in nulls.iter().enumerate() {
            if *null {
                continue;
            }
            if let Some(m) = built.table.get(rows.row(i).data()) {
                for &l in m {
                    li.push(l);
                    ri.push(i as u32);
                    built.matched[l as usize] = true;
                }
            }
        }
        if li.is_empty() {
            return Ok(());
        }
        let (li, ri) = (UInt32Array::from(li), UInt32Array::from(ri));
        let mut cols = Vec::with_capacity(self.schema.fields().len());
        for c in built.left.columns() {
            cols.push(take(c, &li, None)?);
        }
        for c in right.columns() {
            cols.push(take(c, &ri, None)?);
        }
        out.emit(RecordBatch::try_new(self.schema.clone(), cols)?);
        Ok(())
    }
}

impl Operator for HashJoin {
    fn snapshot_state(&mut self) -> Result<Option<OperatorState>> {
        let mut e = StateEncoder::new();
        e.bool(self.build.is_some());
        Ok(Some(OperatorState {
            batches: vec![self.state_batch()?],
            bytes: e.finish(),
        }))
    }

    fn restore_state(&mut self, states: Vec<OperatorState>, ctx: &RestoreContext) -> Result<()> {
        let mut built = false;
        let mut parts = Vec::new();
        let mut matched = Vec::new();
        for s in &states {
            let mut d = StateDecoder::new(&s.bytes, &ctx.instance.node);
            built |= d.bool()?;
            d.end()?;
            for b in &s.batches {
                let n = self.left_schema.fields().len();
                if b.num_columns() != n + 1
                    || b.schema().fields()[..n]
                        .iter()
                        .zip(self.left_schema.fields())
                        .any(|(a, x)| a.data_type() != x.data_type())
                {
                    return Err(EngineError::State(format!(
                        "saved build side ({}) does not fit this join's left input ({}); was the job changed?",
                        b.schema(),
                        self.left_schema
                    )));
                }
                let rows = b.project(&(0..n).collect::<Vec<_>>())?;
                let idx = owned_rows(ctx, &rows, &self.left_keys)?;
                let rows = RecordBatch::try_new(self.left_schema.clone(), rows.columns().to_vec())?;
                parts.push(take_batch(&rows, &idx)?);
                let m = b
                    .column(n)
                    .as_any()
                    .downcast_ref::<arrow_array::BooleanArray>()
                    .ok_or_else(|| EngineError::State("__matched is not boolean".into()))?;
                matched.extend(idx.iter().map(|i| m.value(*i as usize)));
            }
        }
        if built {
            let left = concat_batches(&self.left_schema, &parts)?;
            self.build_from(left, matched)?;
        } else {
            self.left_batches = parts;
        }
        Ok(())
    }

    fn selected_input(&self) -> Option<usize> {
        // Build side first; the probe side waits in its channels (backpressure).
        self.build.is_none().then_some(0)
    }

    fn process_batch(&mut self, input: usize, batch: RecordBatch, out: &mut Output) -> Result<()> {
        match (input, self.build.is_some()) {
            (0, false) => self.left_batches.push(batch),
            (0, true) => {
                return Err(EngineError::Other(
                    "hash join received build-side rows after the build side ended".into(),
                ));
            }
            // The gate delivers the probe side only once `selected_input` releases it.
            (_, false) => {
                return Err(EngineError::Other(
                    "hash join received probe-side rows before its build side ended".into(),
                ));
            }
            (_, true) => self.probe(&batch, out)?,
        }
        Ok(())
    }

    fn end_input(&mut self, input: usize, _: &mut Output) -> Result<()> {
        if input == 0 && self.build.is_none() {
            self.build()?;
        }
        Ok(())
    }

    fn finish(&mut self, out: &mut Output) -> Result<()> {
        if self.build.is_none() {
            self.build()?;
        }
        let built = self.build.as_ref().expect("built");
        if self.join_type == JoinType::Left {
            let unmatched: Vec<u32> = (0..built.left.num_rows() as u32)
                .filter(|i| !built.matched[*i as usize])
                .collect();
            if !unmatched.is_empty() {
                let idx = UInt32Array::from(unmatched);
                let mut cols = Vec::new();
                for c in built.left.columns() {
                    cols.push(take(c, &idx, None)?);
                }
                for f in self.schema.fields().iter().skip(built.left.num_columns()) {
                    cols.push(new_null_array(f.data_type(), idx.len()));
                }
                out.emit(RecordBatch::try_new(self.schema.clone(), cols)?);
            }
        }
        Ok(())
    }
}

/// (batch, row, event time) of a kept row.
type RowRef = (u32, u32, i64);

/// Rows of one side kept for an interval join.
#[derive(Default)]
struct SideBuffer {
    batches: Vec<Option<RecordBatch>>,
    live: Vec<usize>,
    /// key -> (batch, row, event time) of its rows
    index: HashMap<Box<[u8]>, Vec<RowRef>>,
}

impl SideBuffer {
    /// Drop rows with event time below `min_ts` (they can match nothing any more).
    fn evict(&mut self, min_ts: i64) {
        let (batches, live) = (&mut self.batches, &mut self.live);
        self.index.retain(|_, rows| {
            rows.retain(|&(b, _, ts)| {
                let keep = ts >= min_ts;
                if !keep {
                    live[b as usize] -= 1;
                    if live[b as usize] == 0 {
                        batches[b as usize] = None;
                    }
                }
                keep
            });
            !rows.is_empty()
        });
    }
}

struct IntervalJoinFactory {
    schema: SchemaRef,
    conv_schema: SchemaRef,
    keys: [Vec<usize>; 2],
    times: [usize; 2],
    time_names: [String; 2],
    lower: i64,
    upper: i64,
}

impl OperatorFactory for IntervalJoinFactory {
    fn state_kind(&self) -> StateKind {
        StateKind::Keyed
    }
    fn output_schema(&self) -> SchemaRef {
        self.schema.clone()
    }
    fn create(&self, _: &InstanceInfo) -> Result<Box<dyn Operator>> {
        Ok(Box::new(IntervalJoin {
            conv: key_converter(&self.conv_schema, &self.keys[0])?,
            schema: self.schema.clone(),
            keys: self.keys.clone(),
            times: self.times,
            time_names: self.time_names.clone(),
            lower: self.lower,
            upper: self.upper,
            sides: [SideBuffer::default(), SideBuffer::default()],
        }))
    }
}

struct IntervalJoin {
    conv: RowConverter,
    schema: SchemaRef,
    keys: [Vec<usize>; 2],
    times: [usize; 2],
    time_names: [String; 2],
    lower: i64,
    upper: i64,
    sides: [SideBuffer; 2],
}

impl IntervalJoin {
    /// Keep the rows of `batch` (side `side`) for future matches, without matching them.
    fn buffer(&mut self, side: usize, batch: RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let ts = event_time_millis(batch.column(self.times[side]), &self.time_names[side])?;
        let (rows, nulls) = encode_keys(&self.conv, &batch, &self.keys[side])?;
        self.buffer_encoded(side, batch, &rows, &nulls, &ts);
        Ok(())
    }

    fn buffer_encoded(
        &mut self,
        side: usize,
        batch: RecordBatch,
        rows: &Rows,
        nulls: &[bool],
        ts: &[i64],
    ) {
        let buf = &mut self.sides[side];
        let b = buf.batches.len() as u32;
        let mut live = 0;
        for i in 0..batch.num_rows() {
            if !nulls[i] {
                buf.index
                    .entry(rows.row(i).data().into())
                    .or_default()
                    .push((b, i as u32, ts[i]));
                live += 1;
            }
        }
        buf.batches.push((live > 0).then_some(batch));
        buf.live.push(live);
    }

    /// Does a left row at `lt` match a right row at `rt`?
    fn matches(&self, lt: i64, rt: i64) -> bool {
        rt >= lt.saturating_add(self.lower) && rt <= lt.saturating_add(self.upper)
    }
}

impl Operator for IntervalJoin {
    fn process_batch(&mut self, input: usize, batch: RecordBatch, out: &mut Output) -> Result<()> {
        let side = input.min(1);
        let other = 1 - side;
        let ts = event_time_millis(batch.column(self.times[side]), &self.time_names[side])?;
        let (rows, nulls) = encode_keys(&self.conv, &batch, &self.keys[side])?;
        // (other batch, other row, this row) for each match.
        let mut pairs: Vec<(u32, u32, u32)> = Vec::new();
        for i in 0..batch.num_rows() {
            if nulls[i] {
                continue;
            }
            if let Some(cands) = self.sides[other].index.get(rows.row(i).data()) {
                for &(b, r, ots) in cands {
                    let ok = if side == 0 {
                        self.matches(ts[i], ots)
                    } else {
                        self.matches(ots, ts[i])
                    };
                    if ok {
                        pairs.push((b, r, i as u32));
                    }
                }
            }
        }
        if !pairs.is_empty() {
            let buf = &self.sides[other];
            let mut ids: Vec<u32> = pairs.iter().map(|p| p.0).collect();
            ids.sort_unstable();
            ids.dedup();
            let stored: Vec<&RecordBatch> = ids
                .iter()
                .map(|b| {
                    buf.batches[*b as usize]
                        .as_ref()
                        .expect("indexed batch is kept")
                })
                .collect();
            let pos: HashMap<u32, usize> = ids.iter().enumerate().map(|(i, b)| (*b, i)).collect();
            let other_rows = interleave_record_batch(
                &stored,
                &pairs
                    .iter()
                    .map(|p| (pos[&p.0], p.1 as usize))
                    .collect::<Vec<_>>(),
            )?;
            let this_rows = take_batch(&batch, &pairs.iter().map(|p| p.2).collect::<Vec<_>>())?;
            let (l, r) = if side == 0 {
                (this_rows, other_rows)
            } else {
                (other_rows, this_rows)
            };
            let mut cols = l.columns().to_vec();
            cols.extend(r.columns().iter().cloned());
            out.emit(RecordBatch::try_new(self.schema.clone(), cols)?);
        }
        self.buffer_encoded(side, batch, &rows, &nulls, &ts);
        Ok(())
    }

    fn snapshot_state(&mut self) -> Result<Option<OperatorState>> {
        let mut batches = Vec::new();
        for side in &self.sides {
            let mut refs: Vec<(u32, u32)> = side
                .index
                .values()
                .flat_map(|rows| rows.iter().map(|&(b, r, _)| (b, r)))
                .collect();
            refs.sort_unstable();
            let ids: Vec<u32> = {
                let mut v: Vec<u32> = refs.iter().map(|x| x.0).collect();
                v.dedup();
                v
            };
            let pos: HashMap<u32, usize> = ids.iter().enumerate().map(|(i, b)| (*b, i)).collect();
            let stored: Vec<&RecordBatch> = ids
                .iter()
                .map(|b| {
                    side.batches[*b as usize]
                        .as_ref()
                        .expect("indexed batch is kept")
                })
                .collect();
            batches.push(if stored.is_empty() {
                None
            } else {
                Some(interleave_record_batch(
                    &stored,
                    &refs
                        .iter()
                        .map(|(b, r)| (pos[b], *r as usize))
                        .collect::<Vec<_>>(),
                )?)
            });
        }
        let mut e = StateEncoder::new();
        e.bool(batches[0].is_some()).bool(batches[1].is_some());
        Ok(Some(OperatorState {
            batches: batches.into_iter().flatten().collect(),
            bytes: e.finish(),
        }))
    }

    fn restore_state(&mut self, states: Vec<OperatorState>, ctx: &RestoreContext) -> Result<()> {
        for s in states {
            let mut d = StateDecoder::new(&s.bytes, &ctx.instance.node);
            let present = [d.bool()?, d.bool()?];
            d.end()?;
            let mut batches = s.batches.into_iter();
            for (side, present) in present.into_iter().enumerate() {
                if !present {
                    continue;
                }
                let b = batches.next().ok_or_else(|| {
                    EngineError::State(format!(
                        "{}: a saved join side is missing",
                        ctx.instance.node
                    ))
                })?;
                let keep = owned_rows(ctx, &b, &self.keys[side])?;
                let b = take_batch(&b, &keep)?;
                self.buffer(side, b)?;
            }
        }
        Ok(())
    }

    fn process_watermark(&mut self, wm: Watermark, _: &mut Output) -> Result<()> {
        // Future right rows have ts > wm and need lt >= rt - upper; future left rows need
        // rt <= lt + upper... so a left row is done once lt + upper < wm, a right row once
        // rt - lower < wm.
        self.sides[0].evict(wm.saturating_sub(self.upper));
        self.sides[1].evict(wm.saturating_add(self.lower));
        Ok(())
    }
}

/// Indices of the saved rows (keyed on `keys`) this instance keeps at a restore: all at the
/// old parallelism, those whose keys it now owns after rescaling.
fn owned_rows(ctx: &RestoreContext, batch: &RecordBatch, keys: &[usize]) -> Result<Vec<u32>> {
    let n = batch.num_rows() as u32;
    if ctx.same_parallelism() {
        return Ok((0..n).collect());
    }
    let cols: Vec<ArrayRef> = keys.iter().map(|&k| batch.column(k).clone()).collect();
    let own = ctx.owns_keys(&cols, batch.num_rows())?;
    Ok((0..n).filter(|i| own[*i as usize]).collect())
}

fn take_batch(batch: &RecordBatch, idx: &[u32]) -> Result<RecordBatch> {
    Ok(arrow_select::take::take_record_batch(
        batch,
        &UInt32Array::from(idx.to_vec()),
    )?)
}

impl DataStream {
    /// Join with `right` on equal keys once both (bounded) inputs have arrived; the left side
    /// is the build side and is held in memory. Both sides are hash-partitioned on the keys.
    pub fn hash_join(
        &self,
        name: &str,
        right: &DataStream,
        left_keys: &[&str],
        right_keys: &[&str],
        join_type: JoinType,
    ) -> Result<DataStream> {
        if !self.is_bounded() {
            return plan_err(format!(
                "hash join '{name}': its build (left) input from '{}' is unbounded; use an interval join for two streams",
                self.node_name()
            ));
        }
        let (l, r) = join_keys(name, self, right, left_keys, right_keys)?;
        let schema = joined_schema(&self.schema(), &right.schema(), join_type == JoinType::Left);
        let left = self.clone().key_by(left_keys)?.stream;
        let right_s = right.clone().key_by(right_keys)?.stream;
        left.transform_multi(
            name,
            &[&right_s],
            Arc::new(HashJoinFactory {
                left: self.schema(),
                schema,
                left_keys: l,
                right_keys: r,
                join_type,
            }),
        )
    }

    /// Join with `right` on equal keys where the right event time lies in
    /// `[left_time + lower, left_time + upper]` (milliseconds). State is dropped as the
    /// watermark passes, so this runs on unbounded streams.
    #[allow(clippy::too_many_arguments)]
    pub fn interval_join(
        &self,
        name: &str,
        right: &DataStream,
        left_keys: &[&str],
        right_keys: &[&str],
        left_time: &str,
        right_time: &str,
        lower_ms: i64,
        upper_ms: i64,
    ) -> Result<DataStream> {
        if lower_ms > upper_ms {
            return plan_err(format!(
                "interval join '{name}': lower bound {lower_ms} ms is above upper bound {upper_ms} ms"
            ));
        }
        let (l, r) = join_keys(name, self, right, left_keys, right_keys)?;
        let lt = time_column_index(&self.schema(), left_time, name)?;
        let rt = time_column_index(&right.schema(), right_time, name)?;
        let schema = joined_schema(&self.schema(), &right.schema(), false);
        let left = self.clone().key_by(left_keys)?.stream;
        let right_s = right.clone().key_by(right_keys)?.stream;
        left.transform_multi(
            name,
            &[&right_s],
            Arc::new(IntervalJoinFactory {
                schema,
                conv_schema: self.schema(),
                keys: [l, r],
                times: [lt, rt],
                time_names: [left_time.to_string(), right_time.to_string()],
                lower: lower_ms,
                upper: upper_ms,
            }),
        )
    }
}
