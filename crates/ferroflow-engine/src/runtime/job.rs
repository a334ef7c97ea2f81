//! A running job: its shared state (tasks left, first error, cancellation), the
//! [`JobHandle`] users hold and the [`JobReport`] it ends with.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::channel::{Channel, HighWater};
use crate::checkpoint::{CheckpointStats, Restored};
use crate::connector::Progress;
use crate::coordinator::{Coordinator, JobEnd};
use crate::error::{EngineError, Result};
use crate::metrics::{JobMetrics, MetricsSnapshot};

/// How a job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobStatus {
    /// Still running.
    Running,
    /// Every input ended and every sink finished.
    Finished,
    /// Stopped by [`JobHandle::cancel`]: nothing pending was committed.
    Cancelled,
    /// Stopped by [`JobHandle::stop`]: a last checkpoint (savepoint) was taken and the
    /// sinks' output committed.
    Stopped,
    /// A node failed; [`JobHandle::wait`] returns its error.
    Failed,
}

/// Summary of a finished job.
#[derive(Debug, Clone)]
pub struct JobReport {
    /// How it ended.
    pub status: JobStatus,
    /// Wall time from start to end.
    pub elapsed: Duration,
    /// Metrics per node, in graph order.
    pub metrics: Vec<(String, MetricsSnapshot)>,
    /// Checkpoints completed, in order.
    pub checkpoints: Vec<CheckpointStats>,
    /// The checkpoint the job resumed from.
    pub restored: Option<Restored>,
}

impl JobReport {
    /// Metrics of the node named `node`.
    pub fn node(&self, node: &str) -> Option<&MetricsSnapshot> {
        self.metrics.iter().find(|(n, _)| n == node).map(|(_, m)| m)
    }
}

pub(super) struct JobState {
    pub(super) remaining: usize,
    pub(super) error: Option<EngineError>,
    pub(super) finished: bool,
}

pub(crate) struct JobShared {
    pub(super) name: String,
    pub(super) cancelled: AtomicBool,
    pub(super) state: Mutex<JobState>,
    pub(super) cond: Condvar,
    pub(super) channels: Vec<Arc<Channel>>,
    pub(super) metrics: JobMetrics,
    pub(super) progress: Mutex<Vec<Arc<Mutex<Option<Progress>>>>>,
    pub(super) started: Instant,
    pub(super) finished_at: Mutex<Option<Instant>>,
    pub(crate) coord: Arc<Coordinator>,
    pub(super) restored: Option<Restored>,
}

impl JobShared {
    pub(super) fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Acquire)
    }

    fn close_all(&self) {
        for c in &self.channels {
            c.close();
        }
    }

    pub(super) fn task_done(self: &Arc<Self>, result: Result<()>) {
        if let Err(e) = result
            && !matches!(e, EngineError::Cancelled)
        {
            self.fail(e);
        }
        let mut st = self.state.lock();
        st.remaining -= 1;
        if st.remaining == 0 {
            let ok = st.error.is_none() && !self.is_cancelled();
            drop(st);
            // With checkpoints the job ends once its last checkpoint is committed.
            self.coord.tasks_ended(self, ok);
        }
    }
}

impl JobEnd for JobShared {
    /// Fail the job with `e` (the first error wins) and stop every task.
    fn fail(self: &Arc<Self>, e: EngineError) {
        let mut st = self.state.lock();
        if st.error.is_none() {
            st.error = Some(e);
        }
        let done = st.remaining == 0;
        drop(st);
        self.coord.abort();
        // Stop everything else; the tasks that were blocked see their channels close.
        self.close_all();
        if done {
            self.coord.finish_after_io(self);
        }
    }

    /// The job is over: wake its waiters.
    fn mark_finished(&self) {
        let mut st = self.state.lock();
        if st.finished {
            return;
        }
        st.finished = true;
        *self.finished_at.lock() = Some(Instant::now());
        self.coord.release();
        self.cond.notify_all();
    }
}

/// A running job.
#[derive(Clone)]
pub struct JobHandle {
    pub(super) shared: Arc<JobShared>,
}

impl JobHandle {
    /// The job's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Abort the job: sources stop reading, every task ends, nothing pending is committed
    /// (output already committed stays); [`JobHandle::wait`] returns
    /// [`JobStatus::Cancelled`]. A later run restores the last complete checkpoint.
    pub fn cancel(&self) {
        self.shared.cancelled.store(true, Ordering::Release);
        self.shared.coord.abort();
        self.shared.close_all();
    }

    /// Stop the job keeping its work: a last checkpoint (a savepoint, when the job has a
    /// checkpoint directory) is taken, the sinks commit what they wrote, every task ends
    /// without end-of-input (no window fires early); [`JobHandle::wait`] then returns
    /// [`JobStatus::Stopped`], or [`JobStatus::Finished`] when every task reached end of
    /// input before the stop reached it. Returns at once.
    pub fn stop(&self) {
        self.shared.coord.request_stop();
    }

    /// The checkpoint this job resumed from.
    pub fn restored(&self) -> Option<&Restored> {
        self.shared.restored.as_ref()
    }

    /// Checkpoints completed so far.
    pub fn checkpoints(&self) -> Vec<CheckpointStats> {
        self.shared.coord.stats()
    }

    /// The job's status now.
    pub fn status(&self) -> JobStatus {
        let st = self.shared.state.lock();
        if !st.finished {
            JobStatus::Running
        } else if st.error.is_some() {
            JobStatus::Failed
        } else if self.shared.is_cancelled() {
            JobStatus::Cancelled
        } else if self.shared.coord.stopped() {
            JobStatus::Stopped
        } else {
            JobStatus::Finished
        }
    }

    /// Block until the job ends.
    pub fn wait(&self) -> Result<JobReport> {
        self.wait_inner(None)?
            .ok_or_else(|| EngineError::Other("wait without timeout returned early".into()))
    }

    /// Block until the job ends or `timeout` passes (`Ok(None)`: still running).
    pub fn wait_timeout(&self, timeout: Duration) -> Result<Option<JobReport>> {
        self.wait_inner(Some(timeout))
    }

    fn wait_inner(&self, timeout: Option<Duration>) -> Result<Option<JobReport>> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut st = self.shared.state.lock();
        while !st.finished {
            match deadline {
                Some(d) => {
                    if self.shared.cond.wait_until(&mut st, d).timed_out() && !st.finished {
                        return Ok(None);
                    }
                }
                None => self.shared.cond.wait(&mut st),
            }
        }
        if let Some(e) = st.error.take() {
            // Keep the error for later callers of status(); report it to this one.
            let msg = e.to_string();
            st.error = Some(EngineError::Other(msg));
            return Err(e);
        }
        drop(st);
        Ok(Some(self.report()))
    }

    /// Wait asynchronously until the job ends (polls the job state every few milliseconds;
    /// never blocks the calling executor).
    pub async fn join(&self) -> Result<JobReport> {
        loop {
            if let Some(r) = self.wait_timeout(Duration::ZERO)? {
                return Ok(r);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    fn report(&self) -> JobReport {
        let end = self.shared.finished_at.lock().unwrap_or_else(Instant::now);
        JobReport {
            status: self.status(),
            elapsed: end - self.shared.started,
            metrics: self.metrics(),
            checkpoints: self.shared.coord.stats(),
            restored: self.shared.restored.clone(),
        }
    }

    /// Metrics of every node now, summed over instances, in graph order.
    pub fn metrics(&self) -> Vec<(String, MetricsSnapshot)> {
        self.shared.metrics.snapshot()
    }

    /// Combined progress of the bounded sources, when they report it.
    pub fn progress(&self) -> Option<Progress> {
        let slots = self.shared.progress.lock();
        let mut total = Progress::default();
        let mut any = false;
        let mut known_total = Some(0u64);
        for s in slots.iter() {
            if let Some(p) = *s.lock() {
                any = true;
                total.done += p.done;
                known_total = match (known_total, p.total) {
                    (Some(a), Some(b)) => Some(a + b),
                    _ => None,
                };
            }
        }
        total.total = known_total;
        any.then_some(total)
    }

    /// The most any exchange channel of this job has buffered, and the configured bound.
    pub fn channel_high_water(&self) -> HighWater {
        self.shared
            .channels
            .iter()
            .map(|c| c.high_water())
            .fold(HighWater::default(), |a, b| HighWater {
                rows: a.rows.max(b.rows),
                bytes: a.bytes.max(b.bytes),
            })
    }

    /// Number of exchange channels in the job.
    pub fn channel_count(&self) -> usize {
        self.shared.channels.len()
    }

    /// The bound of the job's channels.
    pub fn channel_bound(&self) -> Option<crate::ChannelBound> {
        self.shared.channels.first().map(|c| c.bound())
    }
}
