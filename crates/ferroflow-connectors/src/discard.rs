//! A sink that drops everything and counts it, optionally slowly: for benchmarks and for
//! testing backpressure.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use ferroflow_engine::{InstanceInfo, Sink, SinkWriter};

/// Counts rows and batches and drops them; clones share the counters.
#[derive(Debug, Clone, Default)]
pub struct DiscardSink {
    rows: Arc<AtomicU64>,
    batches: Arc<AtomicU64>,
    delay: Option<Duration>,
}

impl DiscardSink {
    /// A sink that drops batches as fast as they come.
    pub fn new() -> Self {
        Self::default()
    }

    /// A deliberately slow sink: it sleeps `per_batch` on every batch.
    pub fn with_delay(per_batch: Duration) -> Self {
        DiscardSink {
            delay: Some(per_batch),
            ..Self::default()
        }
    }

    /// Rows received so far, over all instances.
    pub fn rows(&self) -> u64 {
        self.rows.load(Ordering::Relaxed)
    }

    /// Batches received so far, over all instances.
    pub fn batches(&self) -> u64 {
        self.batches.load(Ordering::Relaxed)
    }
}

impl Sink for DiscardSink {
    fn inline(&self) -> bool {
        // A delayed sink sleeps, which must not happen on the CPU pool.
        self.delay.is_none()
    }

    fn create_writer(
        &self,
        _: &InstanceInfo,
        _: SchemaRef,
    ) -> ferroflow_engine::Result<Box<dyn SinkWriter>> {
        Ok(Box::new(self.clone()))
    }
}

impl SinkWriter for DiscardSink {
    fn write(&mut self, batch: RecordBatch) -> ferroflow_engine::Result<()> {
        if let Some(d) = self.delay {
            std::thread::sleep(d);
        }
        self.rows
            .fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
        self.batches.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn finish(&mut self) -> ferroflow_engine::Result<()> {
        Ok(())
    }
}
