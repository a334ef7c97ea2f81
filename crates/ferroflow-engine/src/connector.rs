//! The interfaces sources and sinks implement (the implementations live in
//! `ferroflow-connectors`).

use std::time::Duration;

use arrow_array::RecordBatch;
use arrow_schema::{Schema, SchemaRef};

use crate::error::Result;
use crate::operator::{InstanceInfo, OperatorState, StateKind};

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

    /// `true` when its readers report positions ([`SourceReader::snapshot`]) and can resume
    /// from them ([`Source::restore_reader`]). A job with checkpoints refuses a source that
    /// cannot, naming it.
    fn supports_checkpoints(&self) -> bool {
        false
    }

    /// Open the reader of one instance resuming from `splits` (positions taken by
    /// [`SourceReader::snapshot`], possibly of other instances after rescaling). Called instead
    /// of [`Source::create_reader`] when a job restores a checkpoint.
    fn restore_reader(
        &self,
        _instance: &InstanceInfo,
        _splits: Vec<Vec<u8>>,
    ) -> Result<Box<dyn SourceReader>> {
        Err(crate::EngineError::plan(
            "this source cannot resume from a checkpoint",
        ))
    }

    /// Share the splits of every old instance out among `parallelism` new instances (the
    /// parallelism changed at a restore). The default deals them out in turn; sources whose
    /// splits can be cut further (generators, partitions) may split them so every instance
    /// gets work.
    fn assign_splits(&self, splits: Vec<Vec<u8>>, parallelism: usize) -> Result<Vec<Vec<Vec<u8>>>> {
        let mut out = vec![Vec::new(); parallelism.max(1)];
        for (i, s) in splits.into_iter().enumerate() {
            out[i % parallelism.max(1)].push(s);
        }
        Ok(out)
    }
}

/// Reads one instance's share of a source. Runs on an I/O thread, never on the CPU pool.
pub trait SourceReader: Send {
    /// Produce the next event.
    fn next(&mut self) -> Result<SourceEvent>;

    /// Progress of a bounded reader.
    fn progress(&self) -> Option<Progress> {
        None
    }

    /// The position reached, at a checkpoint barrier: one entry per split this reader holds
    /// (what is read next), encoded by the source. Called between two calls of `next`; the
    /// batches returned so far belong to the checkpoint. Only called when
    /// [`Source::supports_checkpoints`] says so.
    fn snapshot(&mut self) -> Result<Vec<Vec<u8>>> {
        Err(crate::EngineError::plan(
            "this source cannot report its position",
        ))
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

    /// What the sink's writers keep besides the output they pre-commit: sinks whose
    /// writers save state ([`SinkWriter::snapshot_state`], e.g. rows gathered for a fit at
    /// end of input) say how it is shared out when rescaled ([`StateKind::Instance`] or
    /// [`StateKind::Keyed`]); [`StateKind::Unsupported`] makes a job with checkpoints
    /// refuse the sink. Sinks that write at once or pre-commit their files keep the default.
    fn state_kind(&self) -> StateKind {
        StateKind::Stateless
    }

    /// Make the output `committables` describe visible (called once their checkpoint is
    /// complete, and again with the restored checkpoint's when a job restores, so it must be
    /// idempotent). Sinks that write at once (memory, print) have nothing to commit: their
    /// output is at-least-once.
    fn commit(&self, _committables: &[Vec<u8>]) -> Result<()> {
        Ok(())
    }

    /// A job restores a checkpoint of run `run`: commit the checkpoint's `committables`, and
    /// drop output of that run that was written after it (it will be written again).
    fn recover(&self, _run: &str, committables: &[Vec<u8>]) -> Result<()> {
        self.commit(committables)
    }

    /// Open the writer of one parallel instance.
    fn create_writer(
        &self,
        instance: &InstanceInfo,
        schema: SchemaRef,
    ) -> Result<Box<dyn SinkWriter>>;

    /// Open the writer of one instance of a restored job with the states its writers saved
    /// ([`SinkWriter::snapshot_state`]): its own, or after rescaling the old instances'
    /// share ([`Sink::state_kind`]). Called instead of [`Sink::create_writer`] when the
    /// checkpoint holds writer state for the instance.
    fn restore_writer(
        &self,
        _instance: &InstanceInfo,
        _schema: SchemaRef,
        _states: Vec<OperatorState>,
    ) -> Result<Box<dyn SinkWriter>> {
        Err(crate::EngineError::plan(
            "this sink cannot restore its writers' state",
        ))
    }
}

/// Writes one instance's share. Runs on an I/O thread, never on the CPU pool.
pub trait SinkWriter: Send {
    /// Write a batch.
    fn write(&mut self, batch: RecordBatch) -> Result<()>;

    /// All input has arrived: flush and close (jobs without checkpoints).
    fn finish(&mut self) -> Result<()>;

    /// A checkpoint barrier (or, with checkpoints, the end of input, just before `finish`)
    /// arrived: make what was written so far durable but not yet visible, and say what
    /// [`Sink::commit`] must do to publish it. `epoch` is unique per instance and run. The
    /// default (sinks that write at once) flushes nothing and has nothing to commit.
    fn pre_commit(&mut self, _epoch: u64) -> Result<Vec<Vec<u8>>> {
        Ok(Vec::new())
    }

    /// State besides the output (rows gathered for a fit at end of input), at a
    /// checkpoint barrier just after [`SinkWriter::pre_commit`] (`None`, the default: the
    /// pre-committed output is all there is). [`Sink::restore_writer`] takes it back.
    fn snapshot_state(&mut self) -> Result<Option<OperatorState>> {
        Ok(None)
    }

    /// The job was cancelled or failed: drop what is half written (temporary files).
    fn abort(&mut self) {}
}
