//! Aggregate functions over groups, and the keyed (non-windowed) aggregation operator.
//!
//! Groups are identified by the Arrow row encoding of their key columns plus a window start,
//! and live in a hash table of dense group ids; each aggregate keeps its state in vectors
//! indexed by group id and updates them a column at a time.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type};
use arrow_array::{
    Array, ArrayRef, Float64Array, Int64Array, RecordBatch, TimestampMillisecondArray, UInt32Array,
};
use arrow_cast::cast;
use arrow_row::{RowConverter, Rows, SortField};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow_select::take::take;
use hashbrown::{HashSet, HashTable};

use crate::error::{EngineError, Result, plan_err};
use crate::graph::{DataStream, KeyedStream};
use crate::operator::RestoreContext;
use crate::operator::{InstanceInfo, Operator, OperatorFactory, OperatorState, Output, StateKind};
use crate::time::column_names;

/// An aggregate function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggFunc {
    /// Rows (with no column) or non-null values (with one).
    Count,
    /// Sum of a numeric column (Int64 for integers, Float64 otherwise; null if no values).
    Sum,
    /// Smallest value of a numeric or temporal column.
    Min,
    /// Largest value of a numeric or temporal column.
    Max,
    /// Mean of a numeric column, as Float64.
    Avg,
    /// Distinct non-null values of a column.
    CountDistinct,
}

impl AggFunc {
    /// Parse a function name as written in specs and SQL (`count`, `sum`, `count_distinct`...).
    pub fn parse(name: &str) -> Result<AggFunc> {
        Ok(match name.to_ascii_lowercase().as_str() {
            "count" => AggFunc::Count,
            "sum" => AggFunc::Sum,
            "min" => AggFunc::Min,
            "max" => AggFunc::Max,
            "avg" | "mean" => AggFunc::Avg,
            "count_distinct" | "distinct_count" => AggFunc::CountDistinct,
            other => {
                return plan_err(format!(
                    "unknown aggregate function '{other}' (known: count, sum, min, max, avg, count_distinct)"
                ));
            }
        })
    }
}

/// One aggregate of a query: a function over a column, under an output name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Aggregate {
    /// The function.
    pub func: AggFunc,
    /// Input column; `None` only for `count(*)`.
    pub column: Option<String>,
    /// Output column name.
    pub alias: String,
}

impl Aggregate {
    /// `count(*) AS alias`.
    pub fn count_star(alias: &str) -> Self {
        Aggregate {
            func: AggFunc::Count,
            column: None,
            alias: alias.into(),
        }
    }

    /// `func(column) AS alias`.
    pub fn new(func: AggFunc, column: &str, alias: &str) -> Self {
        Aggregate {
            func,
            column: Some(column.into()),
            alias: alias.into(),
        }
    }
}

/// An aggregate resolved against an input schema.
#[derive(Debug, Clone)]
pub(crate) struct BoundAggregate {
    func: AggFunc,
    column: Option<usize>,
    input_type: DataType,
    pub(crate) output: Field,
}

enum Numeric {
    Int,
    Float,
}

fn numeric_kind(t: &DataType) -> Option<Numeric> {
    if t.is_integer() {
        Some(Numeric::Int)
    } else if t.is_floating()
        || matches!(t, DataType::Decimal128(_, _) | DataType::Decimal256(_, _))
    {
        Some(Numeric::Float)
    } else {
        None
    }
}

fn is_temporal_int(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Timestamp(_, _) | DataType::Date32 | DataType::Date64 | DataType::Time64(_)
    ) || matches!(t, DataType::Time32(_))
}

/// Resolve aggregates against `schema`, naming `node` in errors.
pub(crate) fn bind_aggregates(
    aggs: &[Aggregate],
    schema: &Schema,
    node: &str,
) -> Result<Vec<BoundAggregate>> {
    if aggs.is_empty() {
        return plan_err(format!("node '{node}': at least one aggregate is needed"));
    }
    aggs.iter()
        .map(|a| {
            let (column, input_type) = match &a.column {
                None if a.func == AggFunc::Count => (None, DataType::Null),
                None => {
                    return plan_err(format!(
                        "node '{node}': aggregate '{}' needs a column",
                        a.alias
                    ));
                }
                Some(c) => {
                    let idx = schema.index_of(c).map_err(|_| {
                        EngineError::plan(format!(
                            "node '{node}': aggregate '{}' reads column '{c}', which is not among the input columns [{}]",
                            a.alias,
                            column_names(schema)
                        ))
                    })?;
                    (Some(idx), schema.field(idx).data_type().clone())
                }
            };
            let bad_type = || {
                plan_err(format!(
                    "node '{node}': {:?}({}) is not defined for type {input_type}",
                    a.func,
                    a.column.as_deref().unwrap_or("*")
                ))
            };
            let out_type = match a.func {
                AggFunc::Count | AggFunc::CountDistinct => DataType::Int64,
                AggFunc::Avg => match numeric_kind(&input_type) {
                    Some(_) => DataType::Float64,
                    None => return bad_type(),
                },
                AggFunc::Sum => match numeric_kind(&input_type) {
                    Some(Numeric::Int) => DataType::Int64,
                    Some(Numeric::Float) => DataType::Float64,
                    None => return bad_type(),
                },
                AggFunc::Min | AggFunc::Max => {
                    if numeric_kind(&input_type).is_some() || is_temporal_int(&input_type) {
                        input_type.clone()
                    } else {
                        return bad_type();
                    }
                }
            };
            let nullable = !matches!(a.func, AggFunc::Count | AggFunc::CountDistinct);
            Ok(BoundAggregate {
                func: a.func,
                column,
                input_type,
                output: Field::new(&a.alias, out_type, nullable),
            })
        })
        .collect()
}

/// Per-group state of one aggregate.
trait GroupAcc: Send {
    fn resize(&mut self, groups: usize);
    /// `values[i]` belongs to group `groups[i]`; `values` is `None` for `count(*)`.
    fn update(&mut self, values: Option<&ArrayRef>, groups: &[u32]) -> Result<()>;
    fn merge(&mut self, dst: u32, src: u32);
    fn reset(&mut self, g: u32);
    fn evaluate(&self, groups: &[u32]) -> Result<ArrayRef>;
    /// Types of the columns `state` returns (checked when a state is loaded).
    fn state_types(&self) -> Vec<DataType>;
    /// The state of `groups` as columns, one row per group.
    fn state(&self, groups: &[u32]) -> Vec<ArrayRef>;
    /// Load row `i` of `cols` (as `state` wrote them) into group `groups[i]`.
    fn load(&mut self, groups: &[u32], cols: &[ArrayRef]) -> Result<()>;
}

struct CountAcc(Vec<i64>);

impl GroupAcc for CountAcc {
    fn resize(&mut self, n: usize) {
        self.0.resize(n, 0);
    }
    fn update(&mut self, values: Option<&ArrayRef>, groups: &[u32]) -> Result<()> {
        match values {
            Some(v) if v.null_count() > 0 => {
                for (i, g) in groups.iter().enumerate() {
                    if v.is_valid(i) {
                        self.0[*g as usize] += 1;
                    }
                }
            }
            _ => {
                for g in groups {
                    self.0[*g as usize] += 1;
                }
            }
        }
        Ok(())
    }
    fn merge(&mut self, dst: u32, src: u32) {
        self.0[dst as usize] += self.0[src as usize];
    }
    fn reset(&mut self, g: u32) {
        self.0[g as usize] = 0;
    }
    fn evaluate(&self, groups: &[u32]) -> Result<ArrayRef> {
        Ok(Arc::new(Int64Array::from_iter_values(
            groups.iter().map(|g| self.0[*g as usize]),
        )))
    }
    fn state_types(&self) -> Vec<DataType> {
        vec![DataType::Int64]
    }
    fn state(&self, groups: &[u32]) -> Vec<ArrayRef> {
        vec![Arc::new(Int64Array::from_iter_values(
            groups.iter().map(|g| self.0[*g as usize]),
        ))]
    }
    fn load(&mut self, groups: &[u32], cols: &[ArrayRef]) -> Result<()> {
        let v = cols[0].as_primitive::<Int64Type>();
        for (i, g) in groups.iter().enumerate() {
            self.0[*g as usize] = v.value(i);
        }
        Ok(())
    }
}

/// Sum, min, max and avg share one shape: a value and a count per group.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fold {
    Sum,
    Min,
    Max,
    Avg,
}

struct FoldAcc<T> {
    fold: Fold,
    values: Vec<T>,
    counts: Vec<i64>,
    /// Type to cast the result back to (min/max of temporal or narrow types).
    output: DataType,
}

trait FoldValue: Copy + Send + PartialOrd + Default + 'static {
    const TYPE: DataType;
    fn add(self, o: Self) -> Self;
    fn column(values: Vec<Option<Self>>) -> ArrayRef;
    fn read(a: &ArrayRef) -> Result<ArrayRef>;
    fn values(a: &ArrayRef) -> &[Self];
}

impl FoldValue for i64 {
    const TYPE: DataType = DataType::Int64;
    fn add(self, o: Self) -> Self {
        self.wrapping_add(o)
    }
    fn column(values: Vec<Option<Self>>) -> ArrayRef {
        Arc::new(Int64Array::from(values))
    }
    fn read(a: &ArrayRef) -> Result<ArrayRef> {
        Ok(cast(a, &DataType::Int64)?)
    }
    fn values(a: &ArrayRef) -> &[Self] {
        a.as_primitive::<Int64Type>().values()
    }
}

impl FoldValue for f64 {
    const TYPE: DataType = DataType::Float64;
    fn add(self, o: Self) -> Self {
        self + o
    }
    fn column(values: Vec<Option<Self>>) -> ArrayRef {
        Arc::new(Float64Array::from(values))
    }
    fn read(a: &ArrayRef) -> Result<ArrayRef> {
        Ok(cast(a, &DataType::Float64)?)
    }
    fn values(a: &ArrayRef) -> &[Self] {
        a.as_primitive::<Float64Type>().values()
    }
}

impl<T: FoldValue> FoldAcc<T> {
    fn combine(fold: Fold, cur: T, v: T, first: bool) -> T {
        if first {
            return v;
        }
        match fold {
            Fold::Sum | Fold::Avg => cur.add(v),
            Fold::Min => {
                if v < cur {
                    v
                } else {
                    cur
                }
            }
            Fold::Max => {
                if v > cur {
                    v
                } else {
                    cur
                }
            }
        }
    }
}

impl<T: FoldValue> GroupAcc for FoldAcc<T> {
    fn resize(&mut self, n: usize) {
        self.values.resize(n, T::default());
        self.counts.resize(n, 0);
    }
    fn update(&mut self, values: Option<&ArrayRef>, groups: &[u32]) -> Result<()> {
        let arr = T::read(values.expect("fold aggregates read a column"))?;
        let vals = T::values(&arr);
        let nulls = arr.logical_nulls();
        for (i, g) in groups.iter().enumerate() {
            if nulls.as_ref().is_some_and(|n| n.is_null(i)) {
                continue;
            }
            let g = *g as usize;
            self.values[g] = Self::combine(self.fold, self.values[g], vals[i], self.counts[g] == 0);
            self.counts[g] += 1;
        }
        Ok(())
    }
    fn merge(&mut self, dst: u32, src: u32) {
        let (d, s) = (dst as usize, src as usize);
        if self.counts[s] > 0 {
            self.values[d] = Self::combine(
                self.fold,
                self.values[d],
                self.values[s],
                self.counts[d] == 0,
            );
            self.counts[d] += self.counts[s];
        }
    }
    fn reset(&mut self, g: u32) {
        self.values[g as usize] = T::default();
        self.counts[g as usize] = 0;
    }
    fn evaluate(&self, groups: &[u32]) -> Result<ArrayRef> {
        let col = T::column(
            groups
                .iter()
                .map(|g| {
                    let g = *g as usize;
                    (self.counts[g] > 0).then_some(self.values[g])
                })
                .collect(),
        );
        if self.fold == Fold::Avg {
            // Avg: divide the float sum by the count.
            let sums = cast(&col, &DataType::Float64)?;
            let sums = sums.as_primitive::<Float64Type>();
            let out: Float64Array = groups
                .iter()
                .enumerate()
                .map(|(i, g)| {
                    let c = self.counts[*g as usize];
                    (c > 0).then(|| sums.value(i) / c as f64)
                })
                .collect();
            return Ok(Arc::new(out));
        }
        if col.data_type() == &self.output {
            Ok(col)
        } else {
            Ok(cast(&col, &self.output)?)
        }
    }
    fn state_types(&self) -> Vec<DataType> {
        vec![T::TYPE, DataType::Int64]
    }
    fn state(&self, groups: &[u32]) -> Vec<ArrayRef> {
        vec![
            T::column(
                groups
                    .iter()
                    .map(|g| Some(self.values[*g as usize]))
                    .collect(),
            ),
            Arc::new(Int64Array::from_iter_values(
                groups.iter().map(|g| self.counts[*g as usize]),
            )),
        ]
    }
    fn load(&mut self, groups: &[u32], cols: &[ArrayRef]) -> Result<()> {
        let vals = T::values(&cols[0]);
        let counts = cols[1].as_primitive::<Int64Type>();
        for (i, g) in groups.iter().enumerate() {
            self.values[*g as usize] = vals[i];
            self.counts[*g as usize] = counts.value(i);
        }
        Ok(())
    }
}

struct DistinctAcc {
    converter: RowConverter,
    sets: Vec<HashSet<Box<[u8]>>>,
}

impl GroupAcc for DistinctAcc {
    fn resize(&mut self, n: usize) {
        self.sets.resize_with(n, HashSet::new);
    }
    fn update(&mut self, values: Option<&ArrayRef>, groups: &[u32]) -> Result<()> {
        let v = values.expect("count_distinct reads a column");
        let rows = self.converter.convert_columns(std::slice::from_ref(v))?;
        for (i, g) in groups.iter().enumerate() {
            if v.is_valid(i) {
                let set = &mut self.sets[*g as usize];
                let r = rows.row(i);
                if !set.contains(r.as_ref()) {
                    set.insert(r.as_ref().into());
                }
            }
        }
        Ok(())
    }
    fn merge(&mut self, dst: u32, src: u32) {
        let src = std::mem::take(&mut self.sets[src as usize]);
        self.sets[dst as usize].extend(src);
    }
    fn reset(&mut self, g: u32) {
        self.sets[g as usize] = HashSet::new();
    }
    fn evaluate(&self, groups: &[u32]) -> Result<ArrayRef> {
        Ok(Arc::new(Int64Array::from_iter_values(
            groups.iter().map(|g| self.sets[*g as usize].len() as i64),
        )))
    }
    fn state_types(&self) -> Vec<DataType> {
        vec![DataType::Binary]
    }
    fn state(&self, groups: &[u32]) -> Vec<ArrayRef> {
        // Each set as length-prefixed row-encoded values, sorted so equal sets encode equally.
        let encoded: Vec<Vec<u8>> = groups
            .iter()
            .map(|g| {
                let mut vals: Vec<&Box<[u8]>> = self.sets[*g as usize].iter().collect();
                vals.sort();
                let mut out = Vec::new();
                for v in vals {
                    out.extend_from_slice(&(v.len() as u32).to_le_bytes());
                    out.extend_from_slice(v);
                }
                out
            })
            .collect();
        vec![Arc::new(arrow_array::BinaryArray::from_iter_values(
            encoded.iter().map(|v| v.as_slice()),
        ))]
    }
    fn load(&mut self, groups: &[u32], cols: &[ArrayRef]) -> Result<()> {
        let bin = cols[0].as_binary::<i32>();
        for (i, g) in groups.iter().enumerate() {
            let mut b = bin.value(i);
            let set = &mut self.sets[*g as usize];
            while !b.is_empty() {
                if b.len() < 4 {
                    return Err(EngineError::State(
                        "a distinct-value set is cut short".into(),
                    ));
                }
                let n = u32::from_le_bytes(b[..4].try_into().expect("4 bytes")) as usize;
                if b.len() - 4 < n {
                    return Err(EngineError::State(
                        "a distinct-value set is cut short".into(),
                    ));
                }
                set.insert(b[4..4 + n].into());
                b = &b[4 + n..];
            }
        }
        Ok(())
    }
}

fn make_acc(a: &BoundAggregate) -> Result<Box<dyn GroupAcc>> {
    let fold = |f: Fold| -> Box<dyn GroupAcc> {
        let float = matches!(numeric_kind(&a.input_type), Some(Numeric::Float));
        let output = a.output.data_type().clone();
        if float || f == Fold::Avg && !a.input_type.is_integer() {
            Box::new(FoldAcc::<f64> {
                fold: f,
                values: Vec::new(),
                counts: Vec::new(),
                output,
            })
        } else {
            Box::new(FoldAcc::<i64> {
                fold: f,
                values: Vec::new(),
                counts: Vec::new(),
                output,
            })
        }
    };
    Ok(match a.func {
        AggFunc::Count => Box::new(CountAcc(Vec::new())),
        AggFunc::Sum => fold(Fold::Sum),
        AggFunc::Min => fold(Fold::Min),
        AggFunc::Max => fold(Fold::Max),
        AggFunc::Avg => fold(Fold::Avg),
        AggFunc::CountDistinct => Box::new(DistinctAcc {
            converter: RowConverter::new(vec![SortField::new(a.input_type.clone())])?,
            sets: Vec::new(),
        }),
    })
}

/// Encoded keys of a batch's rows (no key columns: every row has the empty key).
pub(crate) enum KeyRows {
    Rows(Rows),
    Empty,
}

impl KeyRows {
    pub(crate) fn get(&self, i: usize) -> &[u8] {
        match self {
            KeyRows::Rows(r) => r.row(i).data(),
            KeyRows::Empty => &[],
        }
    }
}

const STATE: ahash::RandomState = ahash::RandomState::with_seeds(1, 2, 3, 4);

struct Slot {
    key: Box<[u8]>,
    start: i64,
    end: i64,
    live: bool,
}

/// Groups keyed by (key row, window start) with dense ids and their aggregate state.
pub(crate) struct GroupTable {
    converter: RowConverter,
    key_cols: Vec<usize>,
    table: HashTable<u32>,
    slots: Vec<Slot>,
    free: Vec<u32>,
    aggs: Vec<BoundAggregate>,
    accs: Vec<Box<dyn GroupAcc>>,
}

impl GroupTable {
    pub(crate) fn new(
        schema: &Schema,
        key_cols: &[usize],
        aggs: Vec<BoundAggregate>,
    ) -> Result<Self> {
        let converter = RowConverter::new(
            key_cols
                .iter()
                .map(|&k| SortField::new(schema.field(k).data_type().clone()))
                .collect(),
        )?;
        let accs = aggs.iter().map(make_acc).collect::<Result<_>>()?;
        Ok(GroupTable {
            converter,
            key_cols: key_cols.to_vec(),
            table: HashTable::new(),
            slots: Vec::new(),
            free: Vec::new(),
            aggs,
            accs,
        })
    }

    /// Row-encode the key columns of `batch`.
    pub(crate) fn key_rows(&self, batch: &RecordBatch) -> Result<KeyRows> {
        let cols: Vec<ArrayRef> = self
            .key_cols
            .iter()
            .map(|&k| batch.column(k).clone())
            .collect();
        self.key_rows_of(&cols)
    }

    fn hash(key: &[u8], start: i64) -> u64 {
        STATE.hash_one((key, start))
    }

    /// The group of (key, window), created if new (`true` in the second field).
    pub(crate) fn group(&mut self, key: &[u8], start: i64, end: i64) -> (u32, bool) {
        let h = Self::hash(key, start);
        let slots = &self.slots;
        if let Some(g) = self.table.find(h, |&g| {
            let s = &slots[g as usize];
            s.start == start && &*s.key == key
        }) {
            return (*g, false);
        }
        let g = match self.free.pop() {
            Some(g) => {
                self.slots[g as usize] = Slot {
                    key: key.into(),
                    start,
                    end,
                    live: true,
                };
                g
            }
            None => {
                self.slots.push(Slot {
                    key: key.into(),
                    start,
                    end,
                    live: true,
                });
                let n = self.slots.len();
                for a in &mut self.accs {
                    a.resize(n);
                }
                (n - 1) as u32
            }
        };
        let slots = &self.slots;
        self.table.insert_unique(h, g, |&x| {
            let s = &slots[x as usize];
            Self::hash(&s.key, s.start)
        });
        (g, true)
    }

    /// Window bounds of a group.
    pub(crate) fn window(&self, g: u32) -> (i64, i64) {
        let s = &self.slots[g as usize];
        (s.start, s.end)
    }

    /// Change a group's window (session merges); the group keeps its id.
    pub(crate) fn rewindow(&mut self, g: u32, start: i64, end: i64) {
        let (old_key, old_start) = {
            let s = &self.slots[g as usize];
            (s.key.clone(), s.start)
        };
        if old_start != start {
            let slots = &self.slots;
            if let Ok(e) = self
                .table
                .find_entry(Self::hash(&old_key, old_start), |&x| x == g)
            {
                e.remove();
            }
            let _ = slots;
            self.slots[g as usize].start = start;
            let slots = &self.slots;
            self.table
                .insert_unique(Self::hash(&old_key, start), g, |&x| {
                    let s = &slots[x as usize];
                    Self::hash(&s.key, s.start)
                });
        }
        self.slots[g as usize].end = end;
    }

    /// Fold the rows `rows` of `batch` (all rows if `None`) into groups `groups`.
    pub(crate) fn update(
        &mut self,
        batch: &RecordBatch,
        rows: Option<&[u32]>,
        groups: &[u32],
    ) -> Result<()> {
        let idx = rows.map(|r| UInt32Array::from(r.to_vec()));
        for (a, acc) in self.aggs.iter().zip(self.accs.iter_mut()) {
            let col = match a.column {
                None => None,
                Some(c) => Some(match &idx {
                    None => batch.column(c).clone(),
                    Some(i) => take(batch.column(c), i, None)?,
                }),
            };
            acc.update(col.as_ref(), groups)?;
        }
        Ok(())
    }

    /// Merge the state of group `src` into `dst` and free `src`.
    pub(crate) fn merge(&mut self, dst: u32, src: u32) {
        for a in &mut self.accs {
            a.merge(dst, src);
        }
        self.free_group(src);
    }

    /// Encoded key of a group.
    pub(crate) fn key_of(&self, g: u32) -> &[u8] {
        &self.slots[g as usize].key
    }

    /// Whether a group id is in use.
    pub(crate) fn is_live(&self, g: u32) -> bool {
        self.slots.get(g as usize).is_some_and(|s| s.live)
    }

    /// Ids of every live group.
    pub(crate) fn live_groups(&self) -> Vec<u32> {
        (0..self.slots.len() as u32)
            .filter(|g| self.is_live(*g))
            .collect()
    }

    /// Drop a group and its state; its id is reused.
    pub(crate) fn free_group(&mut self, g: u32) {
        let s = &self.slots[g as usize];
        if !s.live {
            return;
        }
        let h = Self::hash(&s.key, s.start);
        if let Ok(e) = self.table.find_entry(h, |&x| x == g) {
            e.remove();
        }
        for a in &mut self.accs {
            a.reset(g);
        }
        self.slots[g as usize].live = false;
        self.slots[g as usize].key = Box::new([]);
        self.free.push(g);
    }

    /// The key columns of `groups`, decoded from their row encoding.
    fn key_columns(&self, groups: &[u32]) -> Result<Vec<ArrayRef>> {
        if self.key_cols.is_empty() {
            return Ok(Vec::new());
        }
        let parser = self.converter.parser();
        Ok(self.converter.convert_rows(
            groups
                .iter()
                .map(|g| parser.parse(&self.slots[*g as usize].key)),
        )?)
    }

    /// The state of `groups`: key columns, `__start`, `__end`, each aggregate's state
    /// columns, then `extra` (operator-specific per-group columns).
    pub(crate) fn state_batch(
        &self,
        groups: &[u32],
        extra: Vec<(&str, ArrayRef)>,
    ) -> Result<RecordBatch> {
        let mut cols = self.key_columns(groups)?;
        let mut fields: Vec<Field> = cols
            .iter()
            .enumerate()
            .map(|(i, c)| Field::new(format!("__key{i}"), c.data_type().clone(), true))
            .collect();
        cols.push(Arc::new(Int64Array::from_iter_values(
            groups.iter().map(|g| self.slots[*g as usize].start),
        )));
        cols.push(Arc::new(Int64Array::from_iter_values(
            groups.iter().map(|g| self.slots[*g as usize].end),
        )));
        fields.push(Field::new("__start", DataType::Int64, false));
        fields.push(Field::new("__end", DataType::Int64, false));
        for (a, acc) in self.accs.iter().enumerate() {
            for (j, c) in acc.state(groups).into_iter().enumerate() {
                fields.push(Field::new(
                    format!("__agg{a}_{j}"),
                    c.data_type().clone(),
                    true,
                ));
                cols.push(c);
            }
        }
        for (name, c) in extra {
            fields.push(Field::new(name, c.data_type().clone(), true));
            cols.push(c);
        }
        Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), cols)?)
    }

    /// Load groups saved by [`GroupTable::state_batch`] (the rows `keep` accepts, all when
    /// `None`), checking that the columns fit this table's keys and aggregates. Returns
    /// (row, group) for each loaded row; the `extra` columns follow at `extra_from()`.
    pub(crate) fn load_state(
        &mut self,
        batch: &RecordBatch,
        keep: Option<&[bool]>,
        extra: usize,
    ) -> Result<Vec<(usize, u32)>> {
        let mut expected: Vec<DataType> = self
            .key_cols
            .iter()
            .map(|_| DataType::Null)
            .chain([DataType::Int64, DataType::Int64])
            .collect();
        for acc in &self.accs {
            expected.extend(acc.state_types());
        }
        let nk = self.key_cols.len();
        let cols = batch.columns();
        let fits = cols.len() == expected.len() + extra
            && cols
                .iter()
                .zip(&expected)
                .skip(nk)
                .all(|(c, t)| c.data_type() == t)
            && self.converter.convert_columns(&cols[..nk]).is_ok();
        if !fits {
            return Err(EngineError::State(format!(
                "saved groups ({}) do not fit this operator's keys and aggregates; was the job changed?",
                batch.schema()
            )));
        }
        let keys = self.key_rows_of(&cols[..nk])?;
        let starts = cols[nk].as_primitive::<Int64Type>();
        let ends = cols[nk + 1].as_primitive::<Int64Type>();
        let mut loaded = Vec::new();
        for i in 0..batch.num_rows() {
            if keep.is_some_and(|k| !k[i]) {
                continue;
            }
            let (g, _) = self.group(keys.get(i), starts.value(i), ends.value(i));
            loaded.push((i, g));
        }
        let rows = UInt32Array::from(loaded.iter().map(|(i, _)| *i as u32).collect::<Vec<_>>());
        let groups: Vec<u32> = loaded.iter().map(|(_, g)| *g).collect();
        let mut at = nk + 2;
        for acc in &mut self.accs {
            let w = acc.state_types().len();
            let taken: Vec<ArrayRef> = cols[at..at + w]
                .iter()
                .map(|c| take(c, &rows, None))
                .collect::<std::result::Result<_, _>>()?;
            acc.load(&groups, &taken)?;
            at += w;
        }
        Ok(loaded)
    }

    /// Index of the first `extra` column of a state batch.
    pub(crate) fn extra_from(&self) -> usize {
        self.key_cols.len()
            + 2
            + self
                .accs
                .iter()
                .map(|a| a.state_types().len())
                .sum::<usize>()
    }

    /// Key columns of a state batch (for [`crate::RestoreContext::owns_keys`]).
    pub(crate) fn state_keys<'a>(&self, batch: &'a RecordBatch) -> &'a [ArrayRef] {
        &batch.columns()[..self.key_cols.len()]
    }

    fn key_rows_of(&self, cols: &[ArrayRef]) -> Result<KeyRows> {
        if self.key_cols.is_empty() {
            return Ok(KeyRows::Empty);
        }
        Ok(KeyRows::Rows(self.converter.convert_columns(cols)?))
    }

    /// Key columns, then (if `windows`) window_start and window_end, then the aggregates.
    pub(crate) fn emit(
        &self,
        groups: &[u32],
        windows: bool,
        schema: &SchemaRef,
    ) -> Result<RecordBatch> {
        let mut cols = self.key_columns(groups)?;
        if windows {
            cols.push(Arc::new(TimestampMillisecondArray::from_iter_values(
                groups.iter().map(|g| self.slots[*g as usize].start),
            )));
            cols.push(Arc::new(TimestampMillisecondArray::from_iter_values(
                groups.iter().map(|g| self.slots[*g as usize].end),
            )));
        }
        for acc in &self.accs {
            cols.push(acc.evaluate(groups)?);
        }
        // Key columns come back from the row format as their own type; align nullability.
        Ok(RecordBatch::try_new(schema.clone(), cols)?)
    }
}

/// Output schema: key columns (nullable as in the input), optional window bounds, aggregates.
pub(crate) fn grouped_schema(
    input: &Schema,
    keys: &[usize],
    aggs: &[BoundAggregate],
    windows: bool,
) -> Result<SchemaRef> {
    let mut fields: Vec<Field> = keys.iter().map(|&k| input.field(k).clone()).collect();
    if windows {
        let ts = DataType::Timestamp(TimeUnit::Millisecond, None);
        fields.push(Field::new("window_start", ts.clone(), false));
        fields.push(Field::new("window_end", ts, false));
    }
    fields.extend(aggs.iter().map(|a| a.output.clone()));
    let mut seen = std::collections::HashSet::new();
    for f in &fields {
        if !seen.insert(f.name().clone()) {
            return plan_err(format!(
                "output column '{}' appears twice; give the aggregate another alias",
                f.name()
            ));
        }
    }
    Ok(Arc::new(Schema::new(fields)))
}

/// When a keyed aggregation emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmitMode {
    /// Once, when input ends (batch semantics).
    Final,
    /// After each input batch, the new value of every group it touched (an upsert stream
    /// keyed by the group columns), so unbounded input gives results as it goes.
    Updates,
}

struct KeyedAggFactory {
    schema: SchemaRef,
    input: SchemaRef,
    keys: Vec<usize>,
    aggs: Vec<BoundAggregate>,
    mode: EmitMode,
}

impl OperatorFactory for KeyedAggFactory {
    fn state_kind(&self) -> StateKind {
        StateKind::Keyed
    }
    fn output_schema(&self) -> SchemaRef {
        self.schema.clone()
    }
    fn create(&self, _: &InstanceInfo) -> Result<Box<dyn Operator>> {
        Ok(Box::new(KeyedAgg {
            table: GroupTable::new(&self.input, &self.keys, self.aggs.clone())?,
            schema: self.schema.clone(),
            mode: self.mode,
        }))
    }
}

struct KeyedAgg {
    table: GroupTable,
    schema: SchemaRef,
    mode: EmitMode,
}

/// The rows of a saved group batch this instance keeps: all at the old parallelism, those
/// whose keys it now owns after rescaling.
pub(crate) fn owned_rows(
    ctx: &RestoreContext,
    table: &GroupTable,
    batch: &RecordBatch,
) -> Result<Option<Vec<bool>>> {
    if ctx.same_parallelism() {
        return Ok(None);
    }
    Ok(Some(
        ctx.owns_keys(table.state_keys(batch), batch.num_rows())?,
    ))
}

impl Operator for KeyedAgg {
    fn snapshot_state(&mut self) -> Result<Option<OperatorState>> {
        let groups = self.table.live_groups();
        Ok(Some(OperatorState {
            batches: vec![self.table.state_batch(&groups, Vec::new())?],
            bytes: Vec::new(),
        }))
    }

    fn restore_state(&mut self, states: Vec<OperatorState>, ctx: &RestoreContext) -> Result<()> {
        for s in states {
            for b in &s.batches {
                let keep = owned_rows(ctx, &self.table, b)?;
                self.table.load_state(b, keep.as_deref(), 0)?;
            }
        }
        Ok(())
    }

    fn process_batch(&mut self, _: usize, batch: RecordBatch, out: &mut Output) -> Result<()> {
        let rows = self.table.key_rows(&batch)?;
        let mut groups = Vec::with_capacity(batch.num_rows());
        for i in 0..batch.num_rows() {
            groups.push(self.table.group(rows.get(i), 0, 0).0);
        }
        self.table.update(&batch, None, &groups)?;
        if self.mode == EmitMode::Updates {
            groups.sort_unstable();
            groups.dedup();
            out.emit(self.table.emit(&groups, false, &self.schema)?);
        }
        Ok(())
    }

    fn finish(&mut self, out: &mut Output) -> Result<()> {
        if self.mode == EmitMode::Final {
            let groups = self.table.live_groups();
            for chunk in groups.chunks(8192) {
                out.emit(self.table.emit(chunk, false, &self.schema)?);
            }
        }
        Ok(())
    }
}

impl KeyedStream {
    /// Aggregate per key. Emits once at the end when the input is bounded, and an update per
    /// touched key after each batch when it is not (see [`EmitMode`]).
    pub fn aggregate(&self, name: &str, aggs: &[Aggregate]) -> Result<DataStream> {
        let mode = if self.stream.is_bounded() {
            EmitMode::Final
        } else {
            EmitMode::Updates
        };
        self.aggregate_with(name, aggs, mode)
    }

    /// Aggregate per key with an explicit emit mode.
    pub fn aggregate_with(
        &self,
        name: &str,
        aggs: &[Aggregate],
        mode: EmitMode,
    ) -> Result<DataStream> {
        let input = self.stream.schema();
        let bound = bind_aggregates(aggs, &input, name)?;
        let schema = grouped_schema(&input, &self.keys, &bound, false)?;
        self.stream.transform(
            name,
            Arc::new(KeyedAggFactory {
                schema,
                input,
                keys: self.keys.clone(),
                aggs: bound,
                mode,
            }),
        )
    }
}
