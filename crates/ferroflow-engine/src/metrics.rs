//! Per-operator metrics, readable while a job runs.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

/// Live counters of one parallel instance of one node.
#[derive(Debug, Default)]
pub struct OperatorMetrics {
    pub(crate) rows_in: AtomicU64,
    pub(crate) batches_in: AtomicU64,
    pub(crate) rows_out: AtomicU64,
    pub(crate) batches_out: AtomicU64,
    pub(crate) busy_ns: AtomicU64,
    pub(crate) backpressure_ns: AtomicU64,
    custom: Mutex<BTreeMap<String, Arc<AtomicU64>>>,
}

impl OperatorMetrics {
    /// A named counter of this operator (created at 0 on first use), e.g. late records dropped.
    pub fn counter(&self, name: &str) -> Arc<AtomicU64> {
        self.custom
            .lock()
            .entry(name.to_string())
            .or_insert_with(|| Arc::new(AtomicU64::new(0)))
            .clone()
    }

    pub(crate) fn add_in(&self, rows: usize) {
        self.rows_in.fetch_add(rows as u64, Ordering::Relaxed);
        self.batches_in.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn add_out(&self, rows: usize) {
        self.rows_out.fetch_add(rows as u64, Ordering::Relaxed);
        self.batches_out.fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self) -> MetricsSnapshot {
        MetricsSnapshot {
            rows_in: self.rows_in.load(Ordering::Relaxed),
            batches_in: self.batches_in.load(Ordering::Relaxed),
            rows_out: self.rows_out.load(Ordering::Relaxed),
            batches_out: self.batches_out.load(Ordering::Relaxed),
            busy_ns: self.busy_ns.load(Ordering::Relaxed),
            backpressure_ns: self.backpressure_ns.load(Ordering::Relaxed),
            counters: self
                .custom
                .lock()
                .iter()
                .map(|(k, v)| (k.clone(), v.load(Ordering::Relaxed)))
                .collect(),
        }
    }
}

/// A point-in-time copy of a node's metrics, summed over its parallel instances.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetricsSnapshot {
    /// Rows received.
    pub rows_in: u64,
    /// Batches received.
    pub batches_in: u64,
    /// Rows emitted.
    pub rows_out: u64,
    /// Batches emitted.
    pub batches_out: u64,
    /// Time spent in the node's own code.
    pub busy_ns: u64,
    /// Time spent waiting for room in a full output channel.
    pub backpressure_ns: u64,
    /// Named counters (late records dropped, malformed rows, ...).
    pub counters: BTreeMap<String, u64>,
}

impl MetricsSnapshot {
    fn add(&mut self, o: &MetricsSnapshot) {
        self.rows_in += o.rows_in;
        self.batches_in += o.batches_in;
        self.rows_out += o.rows_out;
        self.batches_out += o.batches_out;
        self.busy_ns += o.busy_ns;
        self.backpressure_ns += o.backpressure_ns;
        for (k, v) in &o.counters {
            *self.counters.entry(k.clone()).or_default() += v;
        }
    }
}

/// Metrics of every node of a job.
#[derive(Debug, Clone, Default)]
pub(crate) struct JobMetrics {
    /// (node name, its instances' metrics), in graph order.
    pub(crate) nodes: Vec<(String, Vec<Arc<OperatorMetrics>>)>,
}

impl JobMetrics {
    pub(crate) fn snapshot(&self) -> Vec<(String, MetricsSnapshot)> {
        self.nodes
            .iter()
            .map(|(name, inst)| {
                let mut total = MetricsSnapshot::default();
                for m in inst {
                    total.add(&m.snapshot());
                }
                (name.clone(), total)
            })
            .collect()
    }
}
