//! The interfaces sources and sinks implement (the implementations live in
//! `ferroflow-connectors`).

use std::time::Duration;

use arrow_array::RecordBatch;
use arrow_schema::{Schema, SchemaRef};

use crate::error::Result;
use crate::operator::InstanceInfo;

/// What a source reader produced.
#[derive(Debug)]
pub enum SourceEvent {
    /// A batch of rows.
    Batch(RecordBatch),
    /// Nothing available now; ask again after about this long. Sources whose input may grow
    /// (directory watch, generators at a rate) return this.
    Idle(Duration),
    /// The input is exhausted (bounded sources only).
    End,
}

/// How far a bounded reader has got, in units it chooses (bytes, rows, files).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// Units done.
    pub done: u64,
    /// Units in all, when known.
    pub total: Option<u64>,
}

/// A source of record batches: a file set, a generator, a topic.
pub trait Source: Send + Sync {
    /// Schema of every batch it produces.
    fn schema(&self) -> SchemaRef;

    /// `true` if it ends by itself; a job whose sources are all bounded is a batch job.
    fn is_bounded(&self) -> bool;

    /// Check what can be checked before the job starts (files exist, directories readable).
    fn validate(&self) -> Result<()> {
        Ok(())
    }

    /// Open the reader of one parallel instance; instances split the input between them.
    fn create_reader(&self, instance: &InstanceInfo) -> Result<Box<dyn SourceReader>>;
}

/// Reads one instance's share of a source. Runs on an I/O thread, never on the CPU pool.
pub trait SourceReader: Send {
    /// Produce the next event.
    fn next(&mut self) -> Result<SourceEvent>;

    /// Progress of a bounded reader.
    fn progress(&self) -> Option<Progress> {
        None
    }
}

/// A destination of record batches.
pub trait Sink: Send + Sync {
    /// Check that this sink accepts batches of `schema` (called when the job is built).
    fn check_schema(&self, _schema: &Schema) -> Result<()> {
        Ok(())
    }

    /// Parallel writers this sink wants (`None`: the job's parallelism). A sink writing one
    /// file or one terminal says 1.
    fn parallelism_hint(&self) -> Option<usize> {
        None
    }

    /// `true` when its writers never block (memory, discard): the engine may then run the
    /// writer inside the producing operator chain on the CPU pool, saving a hand-off to an
    /// I/O thread per batch. Sinks that do I/O or may wait keep the default, `false`.
    fn inline(&self) -> bool {
        false
    }

    /// Open the writer of one parallel instance.
    fn create_writer(
        &self,
        instance: &InstanceInfo,
        schema: SchemaRef,
    ) -> Result<Box<dyn SinkWriter>>;
}

/// Writes one instance's share. Runs on an I/O thread, never on the CPU pool.
pub trait SinkWriter: Send {
    /// Write a batch.
    fn write(&mut self, batch: RecordBatch) -> Result<()>;

    /// All input has arrived: flush and close.
    fn finish(&mut self) -> Result<()>;

    /// The job was cancelled or failed: drop what is half written (temporary files).
    fn abort(&mut self) {}
}
