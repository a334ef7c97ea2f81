//! The checkpoint coordinator of one running job (see [`crate::checkpoint`] for the
//! protocol). Tasks call it from their own threads; everything that touches files runs on
//! the I/O runtime's blocking threads, never on the CPU pool.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::checkpoint::{
    CheckpointStats, InFlight, InstanceEntry, Manifest, NodeEntry, NodeRole, Storage, Written,
    decode_committables,
};
use crate::connector::Sink;
use crate::error::{EngineError, Result};
use crate::message::CheckpointBarrier;
use crate::operator::OperatorState;

/// The job a coordinator serves, as the coordinator sees it: a checkpoint that cannot be
/// written or committed fails the job, and a job with checkpoints ends once its last one is
/// committed. The runtime's job state implements it; the trait keeps this module free of the
/// runtime.
pub(crate) trait JobEnd: Send + Sync + 'static {
    /// Fail the job with `e` (the first error wins) and stop every task.
    fn fail(self: &Arc<Self>, e: EngineError);
    /// The job is over: wake its waiters.
    fn mark_finished(&self);
}

/// What the coordinator knows of a node.
pub(crate) struct NodeMeta {
    pub(crate) name: String,
    pub(crate) role: NodeRole,
    pub(crate) parallelism: usize,
}

pub(crate) struct Coordinator {
    pub(crate) storage: Option<Storage>,
    pub(crate) interval: Option<Duration>,
    pub(crate) run: String,
    pub(crate) max_parallelism: u32,
    job: String,
    nodes: Vec<NodeMeta>,
    sinks: Vec<(usize, Arc<dyn Sink>)>,
    io: tokio::runtime::Handle,
    /// The barrier sources are asked to inject next.
    requested: Mutex<Option<CheckpointBarrier>>,
    st: Mutex<CoordState>,
    /// I/O tasks still running: the job reports its end only after them, so a later run
    /// never meets a write of this one.
    outstanding: Arc<AtomicUsize>,
}

struct CoordState {
    next_id: u64,
    in_flight: Option<InFlight>,
    /// Instances that ended, with their final state (sinks: what is left to commit).
    finished: HashMap<(usize, usize), Option<OperatorState>>,
    stop_wanted: bool,
    stopped: bool,
    /// Failed or cancelled: nothing more completes.
    dead: bool,
    tasks_ended: bool,
    /// A checkpoint's manifest and commit are being written.
    completing: bool,
    finalizing: bool,
    stats: Vec<CheckpointStats>,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Coordinator {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        storage: Option<Storage>,
        interval: Option<Duration>,
        run: String,
        max_parallelism: u32,
        job: String,
        nodes: Vec<NodeMeta>,
        sinks: Vec<(usize, Arc<dyn Sink>)>,
        io: tokio::runtime::Handle,
        next_id: u64,
    ) -> Self {
        Coordinator {
            storage,
            interval,
            run,
            max_parallelism,
            job,
            nodes,
            sinks,
            io,
            requested: Mutex::new(None),
            outstanding: Arc::new(AtomicUsize::new(0)),
            st: Mutex::new(CoordState {
                next_id,
                in_flight: None,
                finished: HashMap::new(),
                stop_wanted: false,
                stopped: false,
                dead: false,
                tasks_ended: false,
                completing: false,
                finalizing: false,
                stats: Vec::new(),
            }),
        }
    }

    /// Whether state is kept (a checkpoint directory was given).
    pub(crate) fn durable(&self) -> bool {
        self.storage.is_some()
    }

    /// The barrier a source that last injected `last` should inject now.
    pub(crate) fn source_barrier(&self, last: u64) -> Option<CheckpointBarrier> {
        self.requested.lock().filter(|b| b.id > last)
    }

    pub(crate) fn stats(&self) -> Vec<CheckpointStats> {
        self.st.lock().stats.clone()
    }

    pub(crate) fn stopped(&self) -> bool {
        self.st.lock().stopped
    }

    /// Start a checkpoint unless one is in flight (or the job is ending). Once a stop is
    /// wanted every checkpoint is the stopping savepoint, so that a periodic trigger that
    /// comes first does not put the stop off by one more checkpoint.
    pub(crate) fn trigger(&self, stop: bool) -> bool {
        let mut st = self.st.lock();
        if st.in_flight.is_some() || st.completing || st.dead || st.tasks_ended || st.stopped {
            return false;
        }
        let stop = stop || st.stop_wanted;
        let id = st.next_id;
        st.next_id += 1;
        st.in_flight = Some(InFlight {
            id,
            stop,
            started: Instant::now(),
            acks: HashMap::new(),
            bytes: 0,
            alignment: Duration::ZERO,
        });
        *self.requested.lock() = Some(CheckpointBarrier {
            id,
            timestamp_ms: now_ms(),
            stop,
        });
        true
    }

    /// Stop the job with a savepoint: now, or as soon as the checkpoint in flight completes.
    pub(crate) fn request_stop(&self) {
        self.st.lock().stop_wanted = true;
        self.trigger(true);
    }

    /// A task instance acknowledged barrier `id` with its state.
    pub(crate) fn ack<J: JobEnd>(
        self: &Arc<Self>,
        shared: &Arc<J>,
        id: u64,
        node: usize,
        instance: usize,
        state: Option<OperatorState>,
        alignment: Duration,
    ) {
        {
            let mut st = self.st.lock();
            let Some(f) = st.in_flight.as_mut().filter(|f| f.id == id) else {
                return;
            };
            f.alignment = f.alignment.max(alignment);
            f.acks.insert((node, instance), None);
        }
        let keep = self.nodes[node].role == NodeRole::Sink;
        if self.storage.is_none() {
            let entry = InstanceEntry::stateless(instance, false);
            self.written(
                shared,
                id,
                node,
                instance,
                Ok((entry, state.filter(|_| keep))),
            );
            return;
        }
        let me = self.clone();
        let shared = shared.clone();
        self.spawn_io(move || {
            let storage = me.storage.as_ref().expect("durable");
            let r = storage
                .write_state(id, node, instance, false, state.as_ref())
                .map(|e| (e, if keep { state } else { None }));
            me.written(&shared, id, node, instance, r);
        });
    }

    fn written<J: JobEnd>(
        self: &Arc<Self>,
        shared: &Arc<J>,
        id: u64,
        node: usize,
        instance: usize,
        r: Result<Written>,
    ) {
        match r {
            Err(e) => shared.fail(EngineError::Node {
                node: self.nodes[node].name.clone(),
                source: Box::new(e),
            }),
            Ok(entry) => {
                {
                    let mut st = self.st.lock();
                    let Some(f) = st.in_flight.as_mut().filter(|f| f.id == id) else {
                        return;
                    };
                    f.bytes += entry.0.bytes;
                    f.acks.insert((node, instance), Some(entry));
                }
                self.try_complete(shared);
            }
        }
    }

    /// A task instance ended (end of input): its final state counts for every checkpoint
    /// from now on.
    pub(crate) fn instance_finished<J: JobEnd>(
        self: &Arc<Self>,
        shared: &Arc<J>,
        node: usize,
        instance: usize,
        state: Option<OperatorState>,
    ) {
        self.st.lock().finished.insert((node, instance), state);
        self.try_complete(shared);
    }

    /// Every task has ended (`ok`: without error or cancellation).
    pub(crate) fn tasks_ended<J: JobEnd>(self: &Arc<Self>, shared: &Arc<J>, ok: bool) {
        let busy = {
            let mut st = self.st.lock();
            st.tasks_ended = true;
            if !ok {
                st.dead = true;
                st.in_flight = None;
            }
            st.in_flight.is_some() || st.completing
        };
        if !ok {
            self.finish_after_io(shared);
        } else if busy {
            // The checkpoint's completion finalizes the job.
            self.try_complete(shared);
        } else {
            self.finalize(shared);
        }
    }

    /// Run `f` on an I/O thread, counted in `outstanding`.
    fn spawn_io(&self, f: impl FnOnce() + Send + 'static) {
        let n = self.outstanding.clone();
        n.fetch_add(1, Ordering::AcqRel);
        self.io.spawn_blocking(move || {
            f();
            n.fetch_sub(1, Ordering::AcqRel);
        });
    }

    /// Report the end of a failed or cancelled job once its I/O tasks are done.
    pub(crate) fn finish_after_io<J: JobEnd>(self: &Arc<Self>, shared: &Arc<J>) {
        if self.outstanding.load(Ordering::Acquire) == 0 {
            shared.mark_finished();
            return;
        }
        let me = self.clone();
        let shared = shared.clone();
        self.io.spawn_blocking(move || {
            while me.outstanding.load(Ordering::Acquire) > 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
            shared.mark_finished();
        });
    }

    /// The job is over: release the checkpoint directory.
    pub(crate) fn release(&self) {
        if let Some(s) = &self.storage {
            s.release();
        }
    }

    /// The job failed or was cancelled: nothing more completes.
    pub(crate) fn abort(&self) {
        let mut st = self.st.lock();
        st.dead = true;
        st.in_flight = None;
    }

    fn all_instances(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        self.nodes
            .iter()
            .enumerate()
            .flat_map(|(n, m)| (0..m.parallelism).map(move |i| (n, i)))
    }

    fn try_complete<J: JobEnd>(self: &Arc<Self>, shared: &Arc<J>) {
        let done = {
            let mut st = self.st.lock();
            let Some(f) = st.in_flight.as_ref() else {
                return;
            };
            let ready = self.all_instances().all(|k| {
                matches!(f.acks.get(&k), Some(Some(_)))
                    || (!f.acks.contains_key(&k) && st.finished.contains_key(&k))
            });
            if !ready {
                return;
            }
            let f = st.in_flight.take().expect("checked");
            st.completing = true;
            let finished: Vec<((usize, usize), Option<OperatorState>)> = self
                .all_instances()
                .filter(|k| !f.acks.contains_key(k))
                .map(|k| (k, st.finished.get(&k).cloned().flatten()))
                .collect();
            (f, finished)
        };
        let me = self.clone();
        let shared = shared.clone();
        self.spawn_io(move || {
            let (f, finished) = done;
            // A stop barrier that every instance met as finished (end of input came first)
            // stopped nothing: the job ran to its end and reports finished.
            let all_finished = f.acks.is_empty();
            let stop = f.stop && !all_finished;
            match me.complete(f, finished) {
                Err(e) => {
                    me.st.lock().completing = false;
                    shared.fail(e)
                }
                Ok(stats) => {
                    let (again, ended) = {
                        let mut st = me.st.lock();
                        st.completing = false;
                        st.stats.push(stats);
                        if stop {
                            st.stopped = true;
                        }
                        (
                            st.stop_wanted && !st.stopped && !all_finished,
                            st.tasks_ended,
                        )
                    };
                    if ended {
                        me.finalize(&shared);
                    } else if again {
                        me.trigger(true);
                    }
                }
            }
        });
    }

    /// Write the manifest of a checkpoint whose every instance is in, then commit its sinks.
    fn complete(
        &self,
        f: InFlight,
        finished: Vec<((usize, usize), Option<OperatorState>)>,
    ) -> Result<CheckpointStats> {
        let mut entries: HashMap<(usize, usize), Written> = f
            .acks
            .into_iter()
            .map(|(k, v)| (k, v.expect("complete only when written")))
            .collect();
        let mut bytes = f.bytes;
        for ((node, inst), state) in finished {
            let entry = match &self.storage {
                Some(s) => s.write_state(f.id, node, inst, true, state.as_ref())?,
                None => InstanceEntry::stateless(inst, true),
            };
            bytes += entry.bytes;
            entries.insert((node, inst), (entry, state));
        }
        if let Some(s) = &self.storage {
            s.complete(&self.manifest(f.id, f.stop, false, &entries))?;
        }
        self.commit(&entries)?;
        Ok(CheckpointStats {
            id: f.id,
            savepoint: f.stop,
            duration: f.started.elapsed(),
            bytes,
            alignment: f.alignment,
        })
    }

    fn manifest(
        &self,
        id: u64,
        savepoint: bool,
        finished: bool,
        entries: &HashMap<(usize, usize), Written>,
    ) -> Manifest {
        Manifest {
            format: 1,
            job: self.job.clone(),
            id,
            run: self.run.clone(),
            savepoint,
            finished,
            timestamp_ms: now_ms(),
            max_parallelism: self.max_parallelism,
            nodes: self
                .nodes
                .iter()
                .enumerate()
                .map(|(n, m)| NodeEntry {
                    name: m.name.clone(),
                    role: m.role.clone(),
                    parallelism: m.parallelism,
                    instances: (0..m.parallelism)
                        .filter_map(|i| entries.get(&(n, i)).map(|e| e.0.clone()))
                        .collect(),
                })
                .collect(),
        }
    }

    /// Commit what every sink pre-committed for this checkpoint.
    fn commit(&self, entries: &HashMap<(usize, usize), Written>) -> Result<()> {
        for (node, sink) in &self.sinks {
            let name = &self.nodes[*node].name;
            let mut all = Vec::new();
            for i in 0..self.nodes[*node].parallelism {
                if let Some((_, Some(state))) = entries.get(&(*node, i)) {
                    all.extend(decode_committables(state, name)?);
                }
            }
            if !all.is_empty() {
                sink.commit(&all).map_err(|e| e.in_node(name))?;
            }
        }
        Ok(())
    }

    /// All tasks ended and no checkpoint is in flight: a bounded job with checkpoints writes
    /// its final manifest and commits what its sinks left pending.
    fn finalize<J: JobEnd>(self: &Arc<Self>, shared: &Arc<J>) {
        {
            let mut st = self.st.lock();
            if st.finalizing || st.in_flight.is_some() || st.completing {
                return;
            }
            st.finalizing = true;
            if st.dead {
                // Cancelled or failed meanwhile: it ends without a final checkpoint that
                // would call it finished.
                drop(st);
                self.finish_after_io(shared);
                return;
            }
        }
        let me = self.clone();
        let shared = shared.clone();
        self.spawn_io(move || {
            let r = me.final_checkpoint();
            match r {
                Ok(()) => shared.mark_finished(),
                Err(e) => shared.fail(e),
            }
        });
    }

    fn final_checkpoint(&self) -> Result<()> {
        let (stopped, finished, id) = {
            let mut st = self.st.lock();
            let id = st.next_id;
            st.next_id += 1;
            (st.stopped, st.finished.clone(), id)
        };
        if stopped || self.storage.is_none() {
            return Ok(());
        }
        let storage = self.storage.as_ref().expect("checked");
        let mut entries = HashMap::new();
        for k in self.all_instances().collect::<Vec<_>>() {
            let state = finished.get(&k).cloned().flatten();
            let e = storage.write_state(id, k.0, k.1, true, state.as_ref())?;
            entries.insert(k, (e, state));
        }
        storage.complete(&self.manifest(id, false, true, &entries))?;
        self.commit(&entries)
    }
}
