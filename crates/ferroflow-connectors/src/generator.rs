//! A deterministic, rate-limited data generator.
//!
//! Every value is a pure function of (seed, column, row index), so the same seed gives the
//! same rows whatever the parallelism and however the rows are split into batches.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::{
    ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use ferroflow_engine::{InstanceInfo, Progress, Source, SourceEvent, SourceReader};

use crate::error::{ConnectorError, Result};
use crate::splits::{Progression, Progressions};

/// How one generated column is filled.
#[derive(Debug, Clone, PartialEq)]
pub enum GenColumn {
    /// The row index (Int64).
    Sequence,
    /// Uniform integers in `[min, max]` (Int64).
    Int {
        /// Smallest value.
        min: i64,
        /// Largest value.
        max: i64,
    },
    /// Uniform floats in `[min, max)` (Float64).
    Float {
        /// Smallest value.
        min: f64,
        /// Upper bound.
        max: f64,
    },
    /// One of `values` (Utf8), uniformly.
    Choice(Vec<String>),
    /// Event time in milliseconds (timestamp): `start + index * step` minus a uniform delay
    /// in `[0, max_disorder]`, so records arrive out of order by at most `max_disorder`.
    EventTime {
        /// Time of row 0 (ms since the epoch).
        start_ms: i64,
        /// Time between consecutive rows.
        step_ms: i64,
        /// Largest delay.
        max_disorder_ms: i64,
    },
}

/// Rows as a pure function of their index: what makes a generator source deterministic
/// and checkpointable (its position is the next block of rows to make).
pub trait RowGenerator: Send + Sync + std::fmt::Debug {
    /// The rows' schema.
    fn schema(&self) -> SchemaRef;

    /// Rows `first .. first + n`: the same on every call, whatever was asked before.
    fn rows(&self, first: u64, n: usize) -> ferroflow_engine::Result<RecordBatch>;
}

/// Columns filled each by its [`GenColumn`] rule.
#[derive(Debug)]
struct Columns {
    columns: Vec<(String, GenColumn)>,
    schema: SchemaRef,
    seed: u64,
}

/// The generator source.
#[derive(Debug, Clone)]
pub struct GeneratorSource {
    generator: Arc<dyn RowGenerator>,
    rows: Option<u64>,
    rate: Option<f64>,
    batch_size: usize,
}

impl GeneratorSource {
    /// Columns in order; `rows = None` generates forever.
    pub fn new(columns: Vec<(String, GenColumn)>, rows: Option<u64>, seed: u64) -> Result<Self> {
        if columns.is_empty() {
            return Err(ConnectorError::Config(
                "the generator needs at least one column".into(),
            ));
        }
        let mut fields = Vec::new();
        for (name, c) in &columns {
            let dt = match c {
                GenColumn::Sequence | GenColumn::Int { .. } => DataType::Int64,
                GenColumn::Float { .. } => DataType::Float64,
                GenColumn::Choice(v) if v.is_empty() => {
                    return Err(ConnectorError::Config(format!(
                        "generator column '{name}': choice needs at least one value"
                    )));
                }
                GenColumn::Choice(_) => DataType::Utf8,
                GenColumn::EventTime { .. } => DataType::Timestamp(TimeUnit::Millisecond, None),
            };
            if let GenColumn::Int { min, max } = c
                && min > max
            {
                return Err(ConnectorError::Config(format!(
                    "generator column '{name}': min {min} is above max {max}"
                )));
            }
            fields.push(Field::new(name, dt, false));
        }
        let generator = Columns {
            columns,
            schema: Arc::new(Schema::new(fields)),
            seed,
        };
        Ok(GeneratorSource::from_generator(Arc::new(generator), rows))
    }

    /// Rows made by `generator`; `rows = None` generates forever.
    pub fn from_generator(generator: Arc<dyn RowGenerator>, rows: Option<u64>) -> Self {
        GeneratorSource {
            generator,
            rows,
            rate: None,
            batch_size: 8192,
        }
    }

    /// Limit the total rate to `rows_per_second` (shared by the instances).
    pub fn with_rate(mut self, rows_per_second: f64) -> Self {
        self.rate = (rows_per_second > 0.0).then_some(rows_per_second);
        self
    }

    /// Rows per batch.
    pub fn with_batch_size(mut self, n: usize) -> Self {
        self.batch_size = n.max(1);
        self
    }
}

pub(crate) fn mix(mut z: u64) -> u64 {
    // splitmix64 finaliser.
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Source for GeneratorSource {
    fn schema(&self) -> SchemaRef {
        self.generator.schema()
    }

    fn is_bounded(&self) -> bool {
        self.rows.is_some()
    }

    fn create_reader(
        &self,
        instance: &InstanceInfo,
    ) -> ferroflow_engine::Result<Box<dyn SourceReader>> {
        self.reader(
            instance,
            Progressions(vec![Progression {
                next: instance.index as u64,
                stride: instance.parallelism as u64,
            }]),
        )
    }

    fn supports_checkpoints(&self) -> bool {
        true
    }

    fn restore_reader(
        &self,
        instance: &InstanceInfo,
        splits: Vec<Vec<u8>>,
    ) -> ferroflow_engine::Result<Box<dyn SourceReader>> {
        self.reader(instance, Progressions::decode(&splits, &instance.node)?)
    }

    fn assign_splits(
        &self,
        splits: Vec<Vec<u8>>,
        parallelism: usize,
    ) -> ferroflow_engine::Result<Vec<Vec<Vec<u8>>>> {
        Progression::assign(splits, parallelism, "generator", |p| self.exhausted(p))
    }
}

impl GeneratorSource {
    fn exhausted(&self, p: &Progression) -> bool {
        self.rows
            .is_some_and(|total| p.next.saturating_mul(self.batch_size as u64) >= total)
    }

    fn reader(
        &self,
        instance: &InstanceInfo,
        mut blocks: Progressions,
    ) -> ferroflow_engine::Result<Box<dyn SourceReader>> {
        blocks.retain(|p| !self.exhausted(p));
        Ok(Box::new(GeneratorReader {
            source: self.clone(),
            blocks,
            share: instance.parallelism as u64,
            rate: self.rate.map(|r| r / instance.parallelism as f64),
            started: None,
            emitted: 0,
        }))
    }
}

struct GeneratorReader {
    source: GeneratorSource,
    /// Blocks of `batch_size` rows this instance generates next.
    blocks: Progressions,
    /// Parallelism: this instance's share of the rows is about `1 / share`.
    share: u64,
    rate: Option<f64>,
    started: Option<Instant>,
    emitted: u64,
}

impl Columns {
    fn column(&self, ci: usize, c: &GenColumn, first: u64, n: usize) -> ArrayRef {
        let salt = mix(self.seed ^ mix(ci as u64 + 1));
        let r = |i: u64| mix(salt ^ i);
        let idx = first..first + n as u64;
        match c {
            GenColumn::Sequence => Arc::new(Int64Array::from_iter_values(idx.map(|i| i as i64))),
            GenColumn::Int { min, max } => {
                let span = (*max as i128 - *min as i128 + 1) as u128;
                Arc::new(Int64Array::from_iter_values(
                    idx.map(|i| (*min as i128 + (r(i) as u128 % span) as i128) as i64),
                ))
            }
            GenColumn::Float { min, max } => {
                Arc::new(Float64Array::from_iter_values(idx.map(|i| {
                    let u = (r(i) >> 11) as f64 / (1u64 << 53) as f64;
                    min + u * (max - min)
                })))
            }
            GenColumn::Choice(values) => Arc::new(StringArray::from_iter_values(
                idx.map(|i| values[(r(i) % values.len() as u64) as usize].as_str()),
            )),
            GenColumn::EventTime {
                start_ms,
                step_ms,
                max_disorder_ms,
            } => Arc::new(TimestampMillisecondArray::from_iter_values(idx.map(|i| {
                let delay = if *max_disorder_ms > 0 {
                    (r(i) % (*max_disorder_ms as u64 + 1)) as i64
                } else {
                    0
                };
                start_ms + i as i64 * step_ms - delay
            }))),
        }
    }
}

impl RowGenerator for Columns {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn rows(&self, first: u64, n: usize) -> ferroflow_engine::Result<RecordBatch> {
        let cols = self
            .columns
            .iter()
            .enumerate()
            .map(|(ci, (_, c))| self.column(ci, c, first, n))
            .collect();
        Ok(RecordBatch::try_new(self.schema.clone(), cols)?)
    }
}

impl SourceReader for GeneratorReader {
    fn next(&mut self) -> ferroflow_engine::Result<SourceEvent> {
        let bs = self.source.batch_size as u64;
        let Some(block) = self.blocks.peek() else {
            return Ok(SourceEvent::End);
        };
        let first = block.saturating_mul(bs);
        let n = match self.source.rows {
            Some(total) if first >= total => return Ok(SourceEvent::End),
            Some(total) => (total - first).min(bs),
            None => bs,
        } as usize;
        if let Some(rate) = self.rate {
            let start = *self.started.get_or_insert_with(Instant::now);
            let due = Duration::from_secs_f64(self.emitted as f64 / rate);
            let now = start.elapsed();
            if now < due {
                return Ok(SourceEvent::Idle(due - now));
            }
        }
        let batch = self.source.generator.rows(first, n)?;
        self.blocks.advance(block);
        let source = &self.source;
        self.blocks.retain(|p| !source.exhausted(p));
        self.emitted += n as u64;
        Ok(SourceEvent::Batch(batch))
    }

    fn progress(&self) -> Option<Progress> {
        self.source.rows.map(|total| Progress {
            done: self.emitted,
            total: Some(total.div_ceil(self.share)),
        })
    }

    fn snapshot(&mut self) -> ferroflow_engine::Result<Vec<Vec<u8>>> {
        Ok(self.blocks.encode())
    }
}
