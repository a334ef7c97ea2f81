//! In-memory source and sink, for tests and for embedding.

use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use arrow_select::concat::concat_batches;
use ferroflow_engine::{InstanceInfo, Sink, SinkWriter, Source, SourceEvent, SourceReader};
use parking_lot::Mutex;

use crate::error::{ConnectorError, Result};
use crate::splits::{Progression, Progressions};

/// A bounded source over batches held in memory; instances share the batches round robin.
#[derive(Debug, Clone)]
pub struct MemorySource {
    schema: SchemaRef,
    batches: Arc<Vec<RecordBatch>>,
}

impl MemorySource {
    /// A source of `batches`, all of `schema`.
    pub fn new(schema: SchemaRef, batches: Vec<RecordBatch>) -> Result<Self> {
        for (i, b) in batches.iter().enumerate() {
            if b.schema().fields() != schema.fields() {
                return Err(ConnectorError::Config(format!(
                    "batch {i} has schema {} but the source declares {schema}",
                    b.schema()
                )));
            }
        }
        Ok(MemorySource {
            schema,
            batches: Arc::new(batches),
        })
    }

    /// A source of `batches`, taking the schema from the first.
    pub fn from_batches(batches: Vec<RecordBatch>) -> Result<Self> {
        let schema = batches.first().map(|b| b.schema()).ok_or_else(|| {
            ConnectorError::Config("a memory source needs at least one batch".into())
        })?;
        Self::new(schema, batches)
    }
}

impl Source for MemorySource {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
    fn is_bounded(&self) -> bool {
        true
    }
    fn create_reader(
        &self,
        instance: &InstanceInfo,
    ) -> ferroflow_engine::Result<Box<dyn SourceReader>> {
        Ok(Box::new(MemoryReader {
            batches: self.batches.clone(),
            next: Progressions(vec![Progression {
                next: instance.index as u64,
                stride: instance.parallelism as u64,
            }]),
        }))
    }

    fn supports_checkpoints(&self) -> bool {
        true
    }

    fn restore_reader(
        &self,
        instance: &InstanceInfo,
        splits: Vec<Vec<u8>>,
    ) -> ferroflow_engine::Result<Box<dyn SourceReader>> {
        Ok(Box::new(MemoryReader {
            batches: self.batches.clone(),
            next: Progressions::decode(&splits, &instance.node)?,
        }))
    }

    fn assign_splits(
        &self,
        splits: Vec<Vec<u8>>,
        parallelism: usize,
    ) -> ferroflow_engine::Result<Vec<Vec<Vec<u8>>>> {
        let n = self.batches.len() as u64;
        Progression::assign(splits, parallelism, "memory source", |p| p.next >= n)
    }
}

struct MemoryReader {
    batches: Arc<Vec<RecordBatch>>,
    /// Indices of the batches still to send.
    next: Progressions,
}

impl SourceReader for MemoryReader {
    fn next(&mut self) -> ferroflow_engine::Result<SourceEvent> {
        match self
            .next
            .peek()
            .and_then(|i| Some((i, self.batches.get(usize::try_from(i).ok()?)?)))
        {
            Some((i, b)) => {
                self.next.advance(i);
                Ok(SourceEvent::Batch(b.clone()))
            }
            None => Ok(SourceEvent::End),
        }
    }

    fn snapshot(&mut self) -> ferroflow_engine::Result<Vec<Vec<u8>>> {
        Ok(self.next.encode())
    }
}

/// Collects every batch it receives; clone it to read them after (or while) the job runs.
#[derive(Debug, Clone, Default)]
pub struct MemorySink {
    batches: Arc<Mutex<Vec<RecordBatch>>>,
    finished: Arc<Mutex<usize>>,
}

impl MemorySink {
    /// An empty sink.
    pub fn new() -> Self {
        Self::default()
    }

    /// The batches received so far.
    pub fn batches(&self) -> Vec<RecordBatch> {
        self.batches.lock().clone()
    }

    /// Rows received so far.
    pub fn num_rows(&self) -> usize {
        self.batches.lock().iter().map(|b| b.num_rows()).sum()
    }

    /// Everything received, as one batch (`None` if nothing arrived).
    pub fn concat(&self) -> Option<RecordBatch> {
        let b = self.batches.lock();
        let first = b.first()?;
        concat_batches(&first.schema(), b.iter()).ok()
    }

    /// How many writer instances have finished.
    pub fn finished_writers(&self) -> usize {
        *self.finished.lock()
    }
}

impl Sink for MemorySink {
    fn inline(&self) -> bool {
        true
    }

    fn create_writer(
        &self,
        _: &InstanceInfo,
        _: SchemaRef,
    ) -> ferroflow_engine::Result<Box<dyn SinkWriter>> {
        Ok(Box::new(self.clone()))
    }
}

impl SinkWriter for MemorySink {
    fn write(&mut self, batch: RecordBatch) -> ferroflow_engine::Result<()> {
        self.batches.lock().push(batch);
        Ok(())
    }
    fn finish(&mut self) -> ferroflow_engine::Result<()> {
        *self.finished.lock() += 1;
        Ok(())
    }
}
