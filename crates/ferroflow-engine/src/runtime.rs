//! Running jobs: the [`Runtime`] (a fixed CPU pool plus a tokio runtime for I/O) and the
//! [`JobHandle`] of a running job.
//!
//! Threading model: operator chains are futures polled by a fixed pool of CPU threads (one per
//! core by default); a chain that cannot make progress (empty input, full output) returns
//! `Pending` and frees its thread. Sources and sinks do I/O, so they run on tokio's blocking
//! threads and never on the CPU pool or on a tokio worker.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use arrow_schema::SchemaRef;
use futures::FutureExt;
use futures::executor::ThreadPool;
use parking_lot::{Condvar, Mutex};

use crate::channel::{Channel, HighWater};
use crate::checkpoint::{
    CheckpointStats, LoadedCheckpoint, NodeRole, RestoreFrom, Restored, SourcePosition, Storage,
    decode_committables, decode_sink_state, encode_sink_state, new_run_id, overlapping_instances,
};
use crate::connector::{Progress, Sink, SinkWriter, SourceEvent, SourceReader};
use crate::coordinator::{Coordinator, NodeMeta};
use crate::error::{EngineError, Result};
use crate::exchange::{Route, Router};
use crate::gate::{GateEvent, InputGate};
use crate::graph::{JobGraph, NodeId, NodeKind, Partitioning, SourceTime};
use crate::message::Message;
use crate::metrics::{JobMetrics, MetricsSnapshot, OperatorMetrics};
use crate::operator::{
    InstanceInfo, Operator, OperatorContext, OperatorState, Output, RestoreContext, StateKind,
};
use crate::time::{WatermarkStrategy, event_time_millis, millis};

/// Settings of a [`Runtime`].
#[derive(Debug, Clone, Default)]
pub struct RuntimeConfig {
    /// Threads of the CPU pool; 0 means one per core.
    pub cpu_threads: usize,
    /// Run I/O on this existing tokio runtime instead of an owned one (for embedding in an
    /// async program).
    pub io_handle: Option<tokio::runtime::Handle>,
}

/// Executes jobs. Cheap to share; one per process is plenty.
pub struct Runtime {
    cpu: ThreadPool,
    cpu_threads: usize,
    io: tokio::runtime::Handle,
    owned_io: Option<tokio::runtime::Runtime>,
    /// Jobs started here (to keep the I/O runtime for those still running at drop).
    jobs: Mutex<Vec<std::sync::Weak<JobShared>>>,
}

impl Drop for Runtime {
    fn drop(&mut self) {
        let Some(rt) = self.owned_io.take() else {
            return;
        };
        // Jobs still running need the I/O threads (checkpoint writes, their end): keep them
        // until those jobs are over.
        let running: Vec<Arc<JobShared>> = self
            .jobs
            .lock()
            .drain(..)
            .filter_map(|w| w.upgrade())
            .filter(|j| !j.state.lock().finished)
            .collect();
        if running.is_empty() {
            rt.shutdown_background();
            return;
        }
        std::thread::spawn(move || {
            for j in running {
                let mut st = j.state.lock();
                while !st.finished {
                    j.cond.wait(&mut st);
                }
            }
            rt.shutdown_background();
        });
    }
}

impl Runtime {
    /// A runtime with one CPU thread per core and its own I/O runtime.
    pub fn new() -> Result<Self> {
        Self::with_config(RuntimeConfig::default())
    }

    /// A runtime with explicit settings.
    pub fn with_config(config: RuntimeConfig) -> Result<Self> {
        let cpu_threads = if config.cpu_threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            config.cpu_threads
        };
        let cpu = ThreadPool::builder()
            .pool_size(cpu_threads)
            .name_prefix("ferroflow-cpu-")
            .create()
            .map_err(|e| EngineError::io("starting the CPU thread pool", e))?;
        let (io, owned_io) = match config.io_handle {
            Some(h) => (h, None),
            None => {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .thread_name("ferroflow-io")
                    .enable_all()
                    .build()
                    .map_err(|e| EngineError::io("starting the I/O runtime", e))?;
                (rt.handle().clone(), Some(rt))
            }
        };
        Ok(Runtime {
            cpu,
            cpu_threads,
            io,
            owned_io,
            jobs: Mutex::new(Vec::new()),
        })
    }

    /// Threads in the CPU pool.
    pub fn cpu_threads(&self) -> usize {
        self.cpu_threads
    }

    /// Run a job to completion on this thread's behalf (blocking).
    pub fn run(&self, job: JobGraph) -> Result<JobReport> {
        self.execute(job)?.wait()
    }

    /// Start a job and return at once.
    ///
    /// Everything that can fail before data flows (opening files, creating operators) fails
    /// here, before any task starts.
    pub fn execute(&self, job: JobGraph) -> Result<JobHandle> {
        let g = &job.inner;
        let max_par = g.max_parallelism;
        for id in 0..g.nodes.len() {
            if job.parallelism(id) > max_par as usize {
                return Err(EngineError::Plan(format!(
                    "node '{}': parallelism {} is above the job's max parallelism {max_par} (its number of key groups)",
                    g.nodes[id].name,
                    job.parallelism(id)
                )));
            }
        }
        let cfg = g.checkpoint.clone().unwrap_or_default();
        let storage = match &cfg.dir {
            Some(d) => Some(Storage::new(d.clone(), cfg.retain)?),
            None => None,
        };
        if storage.is_some() {
            check_checkpointable(g)?;
        }
        let (loaded, skipped, from_own_dir) = match (&storage, &cfg.restore) {
            (_, RestoreFrom::Fresh) | (None, RestoreFrom::Latest) => (None, Vec::new(), false),
            (Some(s), RestoreFrom::Latest) => {
                let (c, skipped) = LoadedCheckpoint::latest(&s.dir, &g.name)?;
                (c, skipped, true)
            }
            (_, RestoreFrom::Path(p)) => {
                let c = LoadedCheckpoint::load(p)?;
                if c.manifest.job != g.name {
                    return Err(EngineError::Checkpoint {
                        path: p.display().to_string(),
                        message: format!(
                            "is a checkpoint of job '{}', not '{}'",
                            c.manifest.job, g.name
                        ),
                    });
                }
                (Some(c), Vec::new(), false)
            }
        };
        if let Some(c) = &loaded {
            check_restorable(g, c)?;
        }
        let newest_on_disk = match &storage {
            Some(s) => s.newest_id()?,
            None => 0,
        };
        let next_id = match &loaded {
            Some(c) if from_own_dir => {
                // Checkpoints newer than the one restored never completed: reuse their ids.
                if let Some(s) = &storage {
                    s.discard_after(c.manifest.id)?;
                }
                c.manifest.id + 1
            }
            Some(c) => c.manifest.id.max(newest_on_disk) + 1,
            None => newest_on_disk + 1,
        };
        // A run that crashed before its first checkpoint committed nothing: the next start
        // takes its id over and removes what it left.
        let mut reused_run = false;
        let run = match (&loaded, &storage) {
            (Some(c), _) => c.manifest.run.clone(),
            (None, Some(s)) if cfg.restore == RestoreFrom::Latest => match s.last_run()? {
                Some(r) => {
                    reused_run = true;
                    r
                }
                None => new_run_id(),
            },
            _ => new_run_id(),
        };
        if let Some(s) = &storage {
            s.record_run(&run)?;
        }
        if reused_run {
            for node in &g.nodes {
                if let NodeKind::Sink { sink } = &node.kind {
                    sink.recover(&run, &[]).map_err(|e| e.in_node(&node.name))?;
                }
            }
        }
        let restored = loaded.as_ref().map(|c| Restored {
            id: c.manifest.id,
            path: c.path.clone(),
            savepoint: c.manifest.savepoint,
            finished: c.manifest.finished,
            skipped: skipped.clone(),
        });
        // The restored checkpoint's output is committed before anything runs again.
        if let Some(c) = &loaded {
            for node in &g.nodes {
                if let NodeKind::Sink { sink } = &node.kind {
                    let mut all = Vec::new();
                    if let Some(entry) = c.node(&node.name) {
                        for inst in &entry.instances {
                            if let Some((_, Some(s))) =
                                c.states.get(&(node.name.clone(), inst.index))
                            {
                                all.extend(decode_committables(s, &node.name)?);
                            }
                        }
                    }
                    sink.recover(&c.manifest.run, &all)
                        .map_err(|e| e.in_node(&node.name))?;
                }
            }
        }

        let plan = Plan::new(&job)?;
        let nodes_meta = g
            .nodes
            .iter()
            .enumerate()
            .map(|(id, n)| NodeMeta {
                name: n.name.clone(),
                role: role_of(&n.kind),
                parallelism: job.parallelism(id),
            })
            .collect();
        let sinks = g
            .nodes
            .iter()
            .enumerate()
            .filter_map(|(id, n)| match &n.kind {
                NodeKind::Sink { sink } => Some((id, sink.clone())),
                _ => None,
            })
            .collect();
        let already_finished = loaded.as_ref().is_some_and(|c| c.manifest.finished);
        let coord = Arc::new(Coordinator::new(
            storage,
            cfg.interval,
            run.clone(),
            max_par,
            g.name.clone(),
            nodes_meta,
            sinks,
            self.io.clone(),
            next_id,
        ));
        let shared = Arc::new(JobShared {
            name: g.name.clone(),
            cancelled: AtomicBool::new(false),
            state: Mutex::new(JobState {
                remaining: if already_finished { 0 } else { plan.task_count },
                error: None,
                finished: already_finished,
            }),
            cond: Condvar::new(),
            channels: plan.channels.clone(),
            metrics: JobMetrics {
                nodes: g
                    .nodes
                    .iter()
                    .zip(&plan.metrics)
                    .map(|(n, m)| (n.name.clone(), m.clone()))
                    .collect(),
            },
            progress: Mutex::new(Vec::new()),
            started: Instant::now(),
            finished_at: Mutex::new(already_finished.then(Instant::now)),
            coord: coord.clone(),
            restored,
        });
        {
            let mut jobs = self.jobs.lock();
            jobs.retain(|w| w.strong_count() > 0);
            jobs.push(Arc::downgrade(&shared));
        }
        if already_finished {
            // A bounded job that completed: its output was committed above; nothing runs.
            shared.coord.release();
            return Ok(JobHandle { shared });
        }
        let Plan {
            mut gates,
            mut routers,
            metrics,
            tasks,
            ..
        } = plan;
        let last_barrier = next_id - 1;

        // Create every reader, operator and writer first: a failure here starts nothing.
        let mut launches: Vec<Launch> = Vec::new();
        let mut split_cache: HashMap<NodeId, RescaledSource> = HashMap::new();
        for task in &tasks {
            let par = job.parallelism(task.nodes[0]);
            for i in 0..par {
                let head = task.nodes[0];
                let info = |id: NodeId| InstanceInfo {
                    node: g.nodes[id].name.clone(),
                    index: i,
                    parallelism: par,
                    run: run.clone(),
                };
                let task_routers = std::mem::take(&mut routers[task.id][i]);
                match &g.nodes[head].kind {
                    NodeKind::Source { source, time } => {
                        let name = &g.nodes[head].name;
                        let resume = match &loaded {
                            Some(c) => source_resume(
                                c,
                                name,
                                par,
                                i,
                                source.as_ref(),
                                &mut split_cache,
                                head,
                            )
                            .map_err(|e| e.in_node(name))?,
                            None => None,
                        };
                        let (reader, max_ts, last_wm): (Box<dyn SourceReader>, i64, i64) =
                            match resume {
                                None => (
                                    source
                                        .create_reader(&info(head))
                                        .map_err(|e| e.in_node(name))?,
                                    i64::MIN,
                                    i64::MIN,
                                ),
                                Some(SourceResume::Finished) => {
                                    (Box::new(EndedReader), i64::MIN, i64::MIN)
                                }
                                Some(SourceResume::At(pos)) => (
                                    source
                                        .restore_reader(&info(head), pos.splits)
                                        .map_err(|e| e.in_node(name))?,
                                    pos.max_ts,
                                    pos.last_wm,
                                ),
                            };
                        let time = match time {
                            SourceTime::None => TaskTime::None,
                            SourceTime::Event(s) => TaskTime::Event(
                                s.clone(),
                                g.nodes[head].schema.index_of(&s.time_column)?,
                            ),
                            SourceTime::Ingestion => {
                                TaskTime::Ingestion(g.nodes[head].schema.clone())
                            }
                        };
                        launches.push(Launch::Source(SourceTask {
                            name: name.clone(),
                            node: head,
                            index: i,
                            reader,
                            routers: task_routers.into_iter().map(|(_, r)| r).collect(),
                            time,
                            metrics: metrics[head][i].clone(),
                            progress_slot: None,
                            max_ts,
                            last_wm,
                            last_barrier,
                        }));
                    }
                    NodeKind::Sink { sink } => {
                        let name = &g.nodes[head].name;
                        let finished = loaded
                            .as_ref()
                            .is_some_and(|c| restored_finished(c, name, par, i));
                        let writer = open_writer(
                            sink.as_ref(),
                            loaded.as_ref(),
                            info(head),
                            g.nodes[head].schema.clone(),
                            max_par,
                        )
                        .map_err(|e| e.in_node(name))?;
                        launches.push(Launch::Sink(SinkTask {
                            name: name.clone(),
                            node: head,
                            index: i,
                            writer,
                            gate: gates[task.id][i].take().expect("sink gate"),
                            metrics: metrics[head][i].clone(),
                            restored_finished: finished,
                            last_barrier,
                        }));
                    }
                    NodeKind::Operator { .. } => {
                        let mut chain = Vec::new();
                        let mut all_finished = true;
                        for &id in &task.nodes {
                            let name = &g.nodes[id].name;
                            let (op, is_sink): (Box<dyn Operator>, bool) = match &g.nodes[id].kind {
                                NodeKind::Operator { factory } => {
                                    let mut op =
                                        factory.create(&info(id)).map_err(|e| e.in_node(name))?;
                                    if let Some(c) = &loaded {
                                        restore_operator(
                                            c,
                                            op.as_mut(),
                                            &factory.state_kind(),
                                            info(id),
                                            max_par,
                                        )
                                        .map_err(|e| e.in_node(name))?;
                                    }
                                    (op, false)
                                }
                                NodeKind::Sink { sink } => (
                                    Box::new(InlineSink {
                                        writer: open_writer(
                                            sink.as_ref(),
                                            loaded.as_ref(),
                                            info(id),
                                            g.nodes[id].schema.clone(),
                                            max_par,
                                        )
                                        .map_err(|e| e.in_node(name))?,
                                        finished: false,
                                        durable: coord.durable(),
                                        epoch: last_barrier,
                                        final_commit: None,
                                    }),
                                    true,
                                ),
                                NodeKind::Source { .. } => {
                                    unreachable!("chains hold operators and inline sinks")
                                }
                            };
                            all_finished &= loaded
                                .as_ref()
                                .is_some_and(|c| restored_finished(c, name, par, i));
                            let mut main = Vec::new();
                            let mut side = Vec::new();
                            for (r, ((node, tag), _)) in task_routers.iter().enumerate() {
                                if *node == id {
                                    match tag {
                                        None => main.push(r),
                                        Some(t) => side.push((t.clone(), r)),
                                    }
                                }
                            }
                            chain.push(ChainOp {
                                node: id,
                                info: info(id),
                                op,
                                is_sink,
                                metrics: metrics[id][i].clone(),
                                main_routers: main,
                                side_routers: side,
                            });
                        }
                        launches.push(Launch::Chain(ChainTask {
                            chain,
                            routers: task_routers.into_iter().map(|(_, r)| r).collect(),
                            gate: gates[task.id][i].take().expect("operator gate"),
                            io: self.io.clone(),
                            wake_at: None,
                            skip_finish: all_finished,
                        }));
                    }
                }
            }
        }

        for launch in launches {
            match launch {
                Launch::Source(mut t) => {
                    let slot = Arc::new(Mutex::new(None));
                    shared.progress.lock().push(slot.clone());
                    t.progress_slot = Some(slot);
                    let shared = shared.clone();
                    self.io.spawn_blocking(move || {
                        let name = t.name.clone();
                        let r = std::panic::catch_unwind(AssertUnwindSafe(|| t.run(&shared)))
                            .unwrap_or_else(|p| Err(panic_error(&name, p)));
                        shared.task_done(r);
                    });
                }
                Launch::Sink(t) => {
                    let shared = shared.clone();
                    self.io.spawn_blocking(move || {
                        let name = t.name.clone();
                        let s2 = shared.clone();
                        let r = std::panic::catch_unwind(AssertUnwindSafe(move || t.run(&s2)))
                            .unwrap_or_else(|p| Err(panic_error(&name, p)));
                        shared.task_done(r);
                    });
                }
                Launch::Chain(t) => {
                    let shared = shared.clone();
                    let name = t.chain[0].info.node.clone();
                    self.cpu.spawn_ok(async move {
                        let r = AssertUnwindSafe(t.run(shared.clone()))
                            .catch_unwind()
                            .await
                            .unwrap_or_else(|p| Err(panic_error(&name, p)));
                        shared.task_done(r);
                    });
                }
            }
        }
        if let Some(interval) = coord.interval.filter(|_| coord.durable()) {
            let weak = Arc::downgrade(&shared);
            self.io.spawn(async move {
                loop {
                    tokio::time::sleep(interval).await;
                    let Some(shared) = weak.upgrade() else { return };
                    if shared.state.lock().finished {
                        return;
                    }
                    shared.coord.trigger(false);
                }
            });
        }
        Ok(JobHandle { shared })
    }
}

/// Refuse checkpoints for a job with a node whose state cannot be saved.
fn check_checkpointable(g: &crate::graph::GraphInner) -> Result<()> {
    for n in &g.nodes {
        match &n.kind {
            NodeKind::Source { source, .. } if !source.supports_checkpoints() => {
                return Err(EngineError::Plan(format!(
                    "node '{}': this source cannot record its position, so the job cannot take checkpoints",
                    n.name
                )));
            }
            NodeKind::Sink { sink } => {
                if let StateKind::Unsupported(why) = sink.state_kind() {
                    return Err(EngineError::Plan(format!(
                        "node '{}': this sink cannot be checkpointed ({why}), so the job cannot take checkpoints",
                        n.name
                    )));
                }
            }
            NodeKind::Operator { factory } => {
                if let StateKind::Unsupported(why) = factory.state_kind() {
                    return Err(EngineError::Plan(format!(
                        "node '{}': its state cannot be checkpointed yet ({why}), so the job cannot take checkpoints",
                        n.name
                    )));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// The checkpoint must fit the job: same key groups, and every node it holds state for is
/// still there in the same role.
fn check_restorable(g: &crate::graph::GraphInner, c: &LoadedCheckpoint) -> Result<()> {
    let err = |message: String| EngineError::Checkpoint {
        path: c.path.display().to_string(),
        message,
    };
    if c.manifest.max_parallelism != g.max_parallelism {
        return Err(err(format!(
            "was taken with max parallelism {}, the job has {}; it cannot change across restores",
            c.manifest.max_parallelism, g.max_parallelism
        )));
    }
    for entry in &c.manifest.nodes {
        let has_state = entry.instances.iter().any(|i| i.file.is_some());
        match g.nodes.iter().find(|n| n.name == entry.name) {
            None if has_state => {
                return Err(err(format!(
                    "holds state of node '{}', which the job no longer has (restore with --fresh to drop it)",
                    entry.name
                )));
            }
            None => {}
            Some(n) => {
                let role = role_of(&n.kind);
                if role != entry.role {
                    return Err(err(format!(
                        "node '{}' was a {:?} and is now a {:?}; its state cannot be used",
                        entry.name, entry.role, role
                    )));
                }
            }
        }
    }
    Ok(())
}

fn role_of(kind: &NodeKind) -> NodeRole {
    match kind {
        NodeKind::Source { .. } => NodeRole::Source,
        NodeKind::Operator { .. } => NodeRole::Operator,
        NodeKind::Sink { .. } => NodeRole::Sink,
    }
}

/// Did this node's instance (or, after rescaling, every old instance) end before the
/// checkpoint?
fn restored_finished(c: &LoadedCheckpoint, name: &str, par: usize, index: usize) -> bool {
    let Some(entry) = c.node(name) else {
        return false;
    };
    if entry.parallelism == par {
        entry
            .instances
            .iter()
            .any(|x| x.index == index && x.finished)
    } else {
        !entry.instances.is_empty() && entry.instances.iter().all(|x| x.finished)
    }
}

enum SourceResume {
    Finished,
    At(SourcePosition),
}

/// The old instances' splits of a rescaled source, shared out once per node.
struct RescaledSource {
    assigned: Vec<Vec<Vec<u8>>>,
    max_ts: i64,
    last_wm: i64,
    all_finished: bool,
}

fn source_resume(
    c: &LoadedCheckpoint,
    name: &str,
    par: usize,
    index: usize,
    source: &dyn crate::connector::Source,
    cache: &mut HashMap<NodeId, RescaledSource>,
    node: NodeId,
) -> Result<Option<SourceResume>> {
    let Some(entry) = c.node(name) else {
        return Ok(None);
    };
    let position = |i: usize| -> Result<Option<SourcePosition>> {
        match c.states.get(&(name.to_string(), i)) {
            Some((false, Some(s))) => Ok(Some(SourcePosition::decode(s, name)?)),
            _ => Ok(None),
        }
    };
    if entry.parallelism == par {
        if restored_finished(c, name, par, index) {
            return Ok(Some(SourceResume::Finished));
        }
        return Ok(position(index)?.map(SourceResume::At));
    }
    if let std::collections::hash_map::Entry::Vacant(slot) = cache.entry(node) {
        let mut splits = Vec::new();
        let mut max_ts = i64::MAX;
        let mut last_wm = i64::MAX;
        let mut any = false;
        for inst in &entry.instances {
            if let Some(p) = position(inst.index)? {
                any = true;
                splits.extend(p.splits);
                max_ts = max_ts.min(p.max_ts);
                last_wm = last_wm.min(p.last_wm);
            }
        }
        let assigned = source.assign_splits(splits, par)?;
        if assigned.len() != par {
            return Err(EngineError::Plan(format!(
                "the source shared its splits among {} instances, not {par}",
                assigned.len()
            )));
        }
        slot.insert(RescaledSource {
            assigned,
            max_ts: if any { max_ts } else { i64::MIN },
            last_wm: if any { last_wm } else { i64::MIN },
            all_finished: !any,
        });
    }
    let r = cache.get_mut(&node).expect("inserted");
    if r.all_finished {
        return Ok(Some(SourceResume::Finished));
    }
    Ok(Some(SourceResume::At(SourcePosition {
        splits: std::mem::take(&mut r.assigned[index]),
        max_ts: r.max_ts,
        last_wm: r.last_wm,
    })))
}

/// The checkpointed states an instance restores from: its own when the parallelism is
/// unchanged, else the old instances' that `kind` gives it (with the old parallelism).
fn states_for(
    c: &LoadedCheckpoint,
    kind: &StateKind,
    info: &InstanceInfo,
    max_par: u32,
) -> Option<(usize, Vec<OperatorState>)> {
    let entry = c.node(&info.node)?;
    let old = entry.parallelism;
    let from: Vec<usize> = if old == info.parallelism {
        vec![info.index]
    } else if *kind == StateKind::Keyed {
        overlapping_instances(max_par, old, info.parallelism, info.index)
    } else if *kind == StateKind::Broadcast {
        (0..old).collect()
    } else {
        (0..old)
            .filter(|j| j % info.parallelism == info.index)
            .collect()
    };
    let states = from
        .iter()
        .filter_map(|j| match c.states.get(&(info.node.clone(), *j)) {
            Some((_, Some(s))) => Some(s.clone()),
            _ => None,
        })
        .collect();
    Some((old, states))
}

/// Give an operator its part of the checkpointed state.
fn restore_operator(
    c: &LoadedCheckpoint,
    op: &mut dyn Operator,
    kind: &StateKind,
    info: InstanceInfo,
    max_par: u32,
) -> Result<()> {
    let Some((old, states)) = states_for(c, kind, &info, max_par) else {
        return Ok(());
    };
    if states.is_empty() {
        return Ok(());
    }
    let ctx = RestoreContext {
        instance: info,
        old_parallelism: old,
        max_parallelism: max_par,
    };
    op.restore_state(states, &ctx)
}

/// Open a sink instance's writer: with its writers' checkpointed state when the restored
/// checkpoint holds some for it, else a fresh one.
fn open_writer(
    sink: &dyn Sink,
    loaded: Option<&LoadedCheckpoint>,
    info: InstanceInfo,
    schema: SchemaRef,
    max_par: u32,
) -> Result<Box<dyn SinkWriter>> {
    let mut writer_states = Vec::new();
    if let Some(c) = loaded
        && let Some((_, states)) = states_for(c, &sink.state_kind(), &info, max_par)
    {
        for s in &states {
            if let (_, Some(w)) = decode_sink_state(s, &info.node)? {
                writer_states.push(w);
            }
        }
    }
    if writer_states.is_empty() {
        sink.create_writer(&info, schema)
    } else {
        sink.restore_writer(&info, schema, writer_states)
    }
}

/// The reader of a source instance that had ended before the restored checkpoint.
struct EndedReader;

impl SourceReader for EndedReader {
    fn next(&mut self) -> Result<SourceEvent> {
        Ok(SourceEvent::End)
    }
}

fn panic_error(node: &str, payload: Box<dyn std::any::Any + Send>) -> EngineError {
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".into());
    EngineError::Panic {
        node: node.to_string(),
        message,
    }
}

enum Launch {
    Source(SourceTask),
    Sink(SinkTask),
    Chain(ChainTask),
}

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

struct JobState {
    remaining: usize,
    error: Option<EngineError>,
    finished: bool,
}

pub(crate) struct JobShared {
    name: String,
    cancelled: AtomicBool,
    state: Mutex<JobState>,
    cond: Condvar,
    channels: Vec<Arc<Channel>>,
    metrics: JobMetrics,
    progress: Mutex<Vec<Arc<Mutex<Option<Progress>>>>>,
    started: Instant,
    finished_at: Mutex<Option<Instant>>,
    pub(crate) coord: Arc<Coordinator>,
    restored: Option<Restored>,
}

impl JobShared {
    fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Acquire)
    }

    fn close_all(&self) {
        for c in &self.channels {
            c.close();
        }
    }

    /// Fail the job with `e` (the first error wins) and stop every task.
    pub(crate) fn fail(self: &Arc<Self>, e: EngineError) {
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
    pub(crate) fn mark_finished(&self) {
        let mut st = self.state.lock();
        if st.finished {
            return;
        }
        st.finished = true;
        *self.finished_at.lock() = Some(Instant::now());
        self.coord.release();
        self.cond.notify_all();
    }

    fn task_done(self: &Arc<Self>, result: Result<()>) {
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

/// A running job.
#[derive(Clone)]
pub struct JobHandle {
    shared: Arc<JobShared>,
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

// ---------------------------------------------------------------------------------------
// Planning: chains, channels and routers.

struct TaskPlan {
    id: usize,
    nodes: Vec<NodeId>,
}

type RouterKey = (NodeId, Option<String>);

struct Plan {
    tasks: Vec<TaskPlan>,
    task_count: usize,
    /// [task][instance] -> gate.
    gates: Vec<Vec<Option<InputGate>>>,
    /// [task][instance] -> routers keyed by the (node, tag) they carry.
    routers: Vec<Vec<Vec<(RouterKey, Router)>>>,
    channels: Vec<Arc<Channel>>,
    /// [node][instance].
    metrics: Vec<Vec<Arc<OperatorMetrics>>>,
}

impl Plan {
    fn new(job: &JobGraph) -> Result<Plan> {
        let g = &job.inner;
        let n = g.nodes.len();
        let par: Vec<usize> = (0..n).map(|i| job.parallelism(i)).collect();
        let consumers = |id: NodeId, tag: &Option<String>| {
            g.nodes
                .iter()
                .filter(|d| d.inputs.iter().any(|e| e.from == id && &e.tag == tag))
                .count()
        };
        let is_forward = |p: &Partitioning, up: usize, down: usize| {
            matches!(p, Partitioning::Auto) && par[up] == par[down]
        };

        // Chain operators joined by a forward edge with a single consumer; a sink that never
        // blocks joins its producer's chain the same way.
        let mut task_of = vec![usize::MAX; n];
        let mut tasks: Vec<TaskPlan> = Vec::new();
        for (id, node) in g.nodes.iter().enumerate() {
            let chainable = match &node.kind {
                NodeKind::Operator { .. } => true,
                NodeKind::Sink { sink } => sink.inline(),
                NodeKind::Source { .. } => false,
            };
            let chained_to = match node.inputs.as_slice() {
                [e] if chainable
                    && e.tag.is_none()
                    && matches!(g.nodes[e.from].kind, NodeKind::Operator { .. })
                    && is_forward(&e.partitioning, e.from, id)
                    && consumers(e.from, &None) == 1 =>
                {
                    Some(task_of[e.from])
                }
                _ => None,
            };
            match chained_to {
                Some(t) => {
                    tasks[t].nodes.push(id);
                    task_of[id] = t;
                }
                None => {
                    task_of[id] = tasks.len();
                    tasks.push(TaskPlan {
                        id: tasks.len(),
                        nodes: vec![id],
                    });
                }
            }
        }

        let metrics: Vec<Vec<Arc<OperatorMetrics>>> = (0..n)
            .map(|id| (0..par[id]).map(|_| Arc::default()).collect())
            .collect();
        let mut gates: Vec<Vec<Option<InputGate>>> = tasks
            .iter()
            .map(|t| {
                let head = &g.nodes[t.nodes[0]];
                (0..par[t.nodes[0]])
                    .map(|_| match head.kind {
                        NodeKind::Source { .. } => None,
                        _ => Some(InputGate::new(head.inputs.len())),
                    })
                    .collect()
            })
            .collect();
        let mut routers: Vec<Vec<Vec<(RouterKey, Router)>>> = tasks
            .iter()
            .map(|t| (0..par[t.nodes[0]]).map(|_| Vec::new()).collect())
            .collect();
        let mut channels = Vec::new();
        let bound = g.config.channel_bound;

        for task in &tasks {
            let head = task.nodes[0];
            for (k, e) in g.nodes[head].inputs.iter().enumerate() {
                let up_task = task_of[e.from];
                let forward = is_forward(&e.partitioning, e.from, head);
                let route = match &e.partitioning {
                    _ if forward => Route::Forward,
                    Partitioning::Auto | Partitioning::Rebalance => Route::RoundRobin,
                    Partitioning::Hash(keys) => Route::Hash(keys.clone(), g.max_parallelism),
                    Partitioning::Broadcast => Route::Broadcast,
                    Partitioning::Single => Route::Forward,
                };
                for (i, up_routers) in routers[up_task].iter_mut().enumerate() {
                    let mut router = Router::new(route.clone());
                    let targets: Vec<usize> = if forward {
                        vec![i]
                    } else {
                        (0..par[head]).collect()
                    };
                    for j in targets {
                        let gate = gates[task.id][j].as_mut().expect("consumer gate");
                        let chan = Channel::new(bound, gate.waker());
                        gate.add(chan.clone(), k);
                        router.chans.push(chan.clone());
                        channels.push(chan);
                    }
                    up_routers.push(((e.from, e.tag.clone()), router));
                }
            }
        }
        let task_count = tasks.iter().map(|t| par[t.nodes[0]]).sum();
        Ok(Plan {
            tasks,
            task_count,
            gates,
            routers,
            channels,
            metrics,
        })
    }
}

// ---------------------------------------------------------------------------------------
// Tasks.

async fn send_all(routers: &mut [Router], outbox: Vec<(usize, Message)>) -> Result<()> {
    for (r, msg) in outbox {
        for (chan, m) in routers[r].partition(msg)? {
            routers[r].send_to(chan, m).await?;
        }
    }
    Ok(())
}

fn broadcast(outbox: &mut Vec<(usize, Message)>, routers: usize, msg: Message) {
    for r in 0..routers {
        outbox.push((r, msg.clone()));
    }
}

enum TaskTime {
    None,
    /// Strategy and the index of its time column.
    Event(WatermarkStrategy, usize),
    /// The output schema, whose last column is stamped with the wall clock.
    Ingestion(arrow_schema::SchemaRef),
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

struct SourceTask {
    name: String,
    node: NodeId,
    index: usize,
    reader: Box<dyn SourceReader>,
    routers: Vec<Router>,
    time: TaskTime,
    metrics: Arc<OperatorMetrics>,
    progress_slot: Option<Arc<Mutex<Option<Progress>>>>,
    /// Event-time clock (restored from a checkpoint).
    max_ts: i64,
    last_wm: i64,
    last_barrier: u64,
}

impl SourceTask {
    fn run(&mut self, shared: &Arc<JobShared>) -> Result<()> {
        let mut last_data = Instant::now();
        let mut idle = false;
        if self.last_wm > i64::MIN {
            // Restored: downstream gates start from nothing; a source with nothing new to
            // read must not hold their watermark back.
            let mut outbox = Vec::new();
            broadcast(
                &mut outbox,
                self.routers.len(),
                Message::Watermark(self.last_wm),
            );
            self.flush(outbox)?;
        }
        loop {
            if shared.is_cancelled() {
                return Err(EngineError::Cancelled);
            }
            if let Some(b) = shared.coord.source_barrier(self.last_barrier) {
                // Between two reads: everything sent so far belongs to checkpoint b.
                self.last_barrier = b.id;
                let state = if shared.coord.durable() {
                    let splits = self.reader.snapshot().map_err(|e| e.in_node(&self.name))?;
                    Some(
                        SourcePosition {
                            splits,
                            max_ts: self.max_ts,
                            last_wm: self.last_wm,
                        }
                        .encode(),
                    )
                } else {
                    None
                };
                shared
                    .coord
                    .ack(shared, b.id, self.node, self.index, state, Duration::ZERO);
                let mut outbox = Vec::new();
                broadcast(&mut outbox, self.routers.len(), Message::Barrier(b));
                self.flush(outbox)?;
                if b.stop {
                    return Ok(());
                }
            }
            let started = Instant::now();
            let event = self.reader.next().map_err(|e| e.in_node(&self.name))?;
            self.metrics
                .busy_ns
                .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
            if let Some(slot) = &self.progress_slot {
                *slot.lock() = self.reader.progress();
            }
            let mut outbox = Vec::new();
            match event {
                SourceEvent::Batch(b) if b.num_rows() == 0 => continue,
                SourceEvent::Batch(b) => {
                    last_data = Instant::now();
                    if idle {
                        idle = false;
                        broadcast(&mut outbox, self.routers.len(), Message::Idle(false));
                    }
                    self.metrics.add_out(b.num_rows());
                    let (b, wm) = match &self.time {
                        TaskTime::Event(s, col) => {
                            let ts = event_time_millis(b.column(*col), &s.time_column)
                                .map_err(|e| e.in_node(&self.name))?;
                            if let Some(m) = ts.iter().max() {
                                self.max_ts = self.max_ts.max(*m);
                            }
                            let wm = self
                                .max_ts
                                .saturating_sub(millis(s.max_out_of_orderness))
                                .saturating_sub(1);
                            (b, Some(wm))
                        }
                        TaskTime::Ingestion(schema) => {
                            let now = now_ms();
                            let mut cols = b.columns().to_vec();
                            cols.push(Arc::new(arrow_array::TimestampMillisecondArray::from(
                                vec![now; b.num_rows()],
                            )));
                            let b = arrow_array::RecordBatch::try_new(schema.clone(), cols)
                                .map_err(|e| EngineError::from(e).in_node(&self.name))?;
                            (b, Some(now - 1))
                        }
                        TaskTime::None => (b, None),
                    };
                    broadcast(&mut outbox, self.routers.len(), Message::Data(b));
                    if let Some(wm) = wm
                        && wm > self.last_wm
                    {
                        self.last_wm = wm;
                        broadcast(&mut outbox, self.routers.len(), Message::Watermark(wm));
                    }
                }
                SourceEvent::Idle(wait) => {
                    if let TaskTime::Ingestion(_) = self.time {
                        // Processing time passes while idle: windows must still close.
                        let wm = now_ms() - 1;
                        if wm > self.last_wm {
                            self.last_wm = wm;
                            broadcast(&mut outbox, self.routers.len(), Message::Watermark(wm));
                        }
                    }
                    if let TaskTime::Event(s, _) = &self.time
                        && let Some(t) = s.idle_timeout
                        && !idle
                        && last_data.elapsed() >= t
                    {
                        idle = true;
                        broadcast(&mut outbox, self.routers.len(), Message::Idle(true));
                    }
                    if !outbox.is_empty() {
                        self.flush(outbox)?;
                    }
                    // Short naps keep a requested barrier waiting little.
                    std::thread::sleep(wait.min(Duration::from_millis(20)));
                    continue;
                }
                SourceEvent::End => break,
            }
            self.flush(outbox)?;
        }
        let mut outbox = Vec::new();
        broadcast(&mut outbox, self.routers.len(), Message::EndOfInput);
        self.flush(outbox)?;
        shared
            .coord
            .instance_finished(shared, self.node, self.index, None);
        Ok(())
    }

    fn flush(&mut self, outbox: Vec<(usize, Message)>) -> Result<()> {
        let t = Instant::now();
        futures::executor::block_on(send_all(&mut self.routers, outbox))?;
        self.metrics
            .backpressure_ns
            .fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
        Ok(())
    }
}

struct SinkTask {
    name: String,
    node: NodeId,
    index: usize,
    writer: Box<dyn SinkWriter>,
    gate: InputGate,
    metrics: Arc<OperatorMetrics>,
    /// The instance had ended before the restored checkpoint: its output is committed.
    restored_finished: bool,
    last_barrier: u64,
}

impl SinkTask {
    fn run(mut self, shared: &Arc<JobShared>) -> Result<()> {
        let r = self.consume(shared);
        if r.is_err() {
            self.writer.abort();
        }
        r
    }

    fn consume(&mut self, shared: &Arc<JobShared>) -> Result<()> {
        loop {
            match futures::executor::block_on(self.gate.next())? {
                GateEvent::Batch(_, b) => {
                    let t = Instant::now();
                    self.metrics.add_in(b.num_rows());
                    self.writer.write(b).map_err(|e| e.in_node(&self.name))?;
                    self.metrics
                        .busy_ns
                        .fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
                }
                GateEvent::Barrier(b, aligned) => {
                    self.last_barrier = b.id;
                    let c = self
                        .writer
                        .pre_commit(b.id)
                        .map_err(|e| e.in_node(&self.name))?;
                    let w = self
                        .writer
                        .snapshot_state()
                        .map_err(|e| e.in_node(&self.name))?;
                    shared.coord.ack(
                        shared,
                        b.id,
                        self.node,
                        self.index,
                        Some(encode_sink_state(&c, w)),
                        aligned,
                    );
                    if b.stop {
                        self.writer.abort();
                        return Ok(());
                    }
                }
                GateEvent::End => {
                    let state = if self.restored_finished {
                        self.writer.abort();
                        None
                    } else if shared.coord.durable() {
                        // Committed with the job's final checkpoint, not before: a crash
                        // now must not leave this output visible and then written again.
                        let c = self
                            .writer
                            .pre_commit(self.last_barrier + 1)
                            .map_err(|e| e.in_node(&self.name))?;
                        self.writer.finish().map_err(|e| e.in_node(&self.name))?;
                        Some(encode_sink_state(&c, None))
                    } else {
                        self.writer.finish().map_err(|e| e.in_node(&self.name))?;
                        None
                    };
                    shared
                        .coord
                        .instance_finished(shared, self.node, self.index, state);
                    return Ok(());
                }
                _ => {}
            }
        }
    }
}

/// A sink that never blocks, run as the last operator of its producer's chain.
struct InlineSink {
    writer: Box<dyn SinkWriter>,
    finished: bool,
    /// With checkpoints, output is pre-committed at barriers and at the end.
    durable: bool,
    /// Last pre-commit epoch (unique per instance and run).
    epoch: u64,
    /// What the pre-commit at the end of input left to commit.
    final_commit: Option<Vec<Vec<u8>>>,
}

impl Operator for InlineSink {
    fn process_batch(
        &mut self,
        _input: usize,
        batch: arrow_array::RecordBatch,
        _out: &mut Output,
    ) -> Result<()> {
        self.writer.write(batch)
    }

    fn finish(&mut self, _out: &mut Output) -> Result<()> {
        self.finished = true;
        if self.durable {
            self.epoch += 1;
            self.final_commit = Some(self.writer.pre_commit(self.epoch)?);
        }
        self.writer.finish()
    }

    fn snapshot_state(&mut self) -> Result<Option<OperatorState>> {
        if let Some(c) = self.final_commit.take() {
            return Ok(Some(encode_sink_state(&c, None)));
        }
        self.epoch += 1;
        let c = self.writer.pre_commit(self.epoch)?;
        let w = self.writer.snapshot_state()?;
        Ok(Some(encode_sink_state(&c, w)))
    }
}

impl Drop for InlineSink {
    fn drop(&mut self) {
        // A chain dropped before `finish` (failure, cancel) leaves nothing half written.
        if !self.finished {
            self.writer.abort();
        }
    }
}

struct ChainOp {
    node: NodeId,
    info: InstanceInfo,
    op: Box<dyn Operator>,
    is_sink: bool,
    metrics: Arc<OperatorMetrics>,
    main_routers: Vec<usize>,
    side_routers: Vec<(String, usize)>,
}

struct ChainTask {
    chain: Vec<ChainOp>,
    routers: Vec<Router>,
    gate: InputGate,
    /// Wakes the task at its operators' timers.
    io: tokio::runtime::Handle,
    /// The earliest wake-up already scheduled.
    wake_at: Option<Instant>,
    /// Every operator had ended before the restored checkpoint: `finish` already ran.
    skip_finish: bool,
}

impl ChainTask {
    async fn run(mut self, shared: Arc<JobShared>) -> Result<()> {
        self.gate.report_drained(true);
        for c in &mut self.chain {
            let ctx = OperatorContext {
                instance: c.info.clone(),
                metrics: c.metrics.clone(),
            };
            c.op.open(&ctx).map_err(|e| e.in_node(&c.info.node))?;
        }
        loop {
            self.arm_timer();
            let selected = self.chain[0].op.selected_input();
            let event = self.gate.next_from(selected).await?;
            let mut outbox = Vec::new();
            let mut end = false;
            let mut stopped = false;
            match event {
                GateEvent::Batch(input, b) => self.push(0, input, b, &mut outbox)?,
                GateEvent::Watermark(wm) => {
                    for i in 0..self.chain.len() {
                        let mut out = Output::default();
                        let c = &mut self.chain[i];
                        c.op.process_watermark(wm, &mut out)
                            .map_err(|e| e.in_node(&c.info.node))?;
                        self.route(i, out, &mut outbox)?;
                    }
                    broadcast(&mut outbox, self.routers.len(), Message::Watermark(wm));
                }
                GateEvent::Idle(flag) => {
                    broadcast(&mut outbox, self.routers.len(), Message::Idle(flag))
                }
                GateEvent::Timer => {
                    self.wake_at = None;
                    let now = now_ms();
                    for i in 0..self.chain.len() {
                        let c = &mut self.chain[i];
                        if c.op.next_timer().is_some_and(|t| t <= now) {
                            let mut out = Output::default();
                            c.op.on_timer(now, &mut out)
                                .map_err(|e| e.in_node(&c.info.node))?;
                            self.route(i, out, &mut outbox)?;
                        }
                    }
                }
                GateEvent::Drained => self.drain(&mut outbox)?,
                GateEvent::Barrier(b, aligned) => {
                    // Operators that gather rows (inference) emit them before the snapshot,
                    // so their buffers need no state.
                    self.drain(&mut outbox)?;
                    for c in &mut self.chain {
                        let state = if shared.coord.durable() || c.is_sink {
                            c.op.snapshot_state().map_err(|e| e.in_node(&c.info.node))?
                        } else {
                            None
                        };
                        shared
                            .coord
                            .ack(&shared, b.id, c.node, c.info.index, state, aligned);
                    }
                    broadcast(&mut outbox, self.routers.len(), Message::Barrier(b));
                    if b.stop {
                        end = true;
                        stopped = true;
                    }
                }
                GateEvent::InputEnded(input) => {
                    if !self.skip_finish {
                        let mut out = Output::default();
                        let c = &mut self.chain[0];
                        c.op.end_input(input, &mut out)
                            .map_err(|e| e.in_node(&c.info.node))?;
                        self.route(0, out, &mut outbox)?;
                    }
                }
                GateEvent::End => {
                    for i in 0..self.chain.len() {
                        if self.skip_finish {
                            break;
                        }
                        let mut out = Output::default();
                        let c = &mut self.chain[i];
                        if i > 0 {
                            // Chained operators have one input, which ends now.
                            c.op.end_input(0, &mut out)
                                .map_err(|e| e.in_node(&c.info.node))?;
                        }
                        c.op.finish(&mut out).map_err(|e| e.in_node(&c.info.node))?;
                        self.route(i, out, &mut outbox)?;
                    }
                    broadcast(&mut outbox, self.routers.len(), Message::EndOfInput);
                    end = true;
                }
            }
            let t = Instant::now();
            send_all(&mut self.routers, outbox).await?;
            if let Some(last) = self.chain.last() {
                last.metrics
                    .backpressure_ns
                    .fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
            }
            if end {
                if !stopped {
                    for c in &mut self.chain {
                        let state = if c.is_sink && shared.coord.durable() && !self.skip_finish {
                            c.op.snapshot_state().map_err(|e| e.in_node(&c.info.node))?
                        } else {
                            None
                        };
                        shared
                            .coord
                            .instance_finished(&shared, c.node, c.info.index, state);
                    }
                }
                return Ok(());
            }
        }
    }

    /// Tell every operator of the chain that no input is waiting (they flush gathered rows).
    fn drain(&mut self, outbox: &mut Vec<(usize, Message)>) -> Result<()> {
        for i in 0..self.chain.len() {
            let mut out = Output::default();
            let c = &mut self.chain[i];
            c.op.input_drained(&mut out)
                .map_err(|e| e.in_node(&c.info.node))?;
            self.route(i, out, outbox)?;
        }
        Ok(())
    }

    /// Ask the gate for a timer event at the earliest time an operator asked for, and make
    /// sure something wakes the task then.
    fn arm_timer(&mut self) {
        let Some(t) = self.chain.iter().filter_map(|c| c.op.next_timer()).min() else {
            self.gate.set_timer(None);
            return;
        };
        let wait = Duration::from_millis(t.saturating_sub(now_ms()).max(0) as u64);
        let at = Instant::now() + wait;
        self.gate.set_timer(Some(at));
        if self.wake_at.is_none_or(|w| at < w || w <= Instant::now()) {
            self.wake_at = Some(at);
            let waker = self.gate.waker();
            self.io.spawn(async move {
                tokio::time::sleep_until(at.into()).await;
                waker.wake();
            });
        }
    }

    fn push(
        &mut self,
        i: usize,
        input: usize,
        batch: arrow_array::RecordBatch,
        outbox: &mut Vec<(usize, Message)>,
    ) -> Result<()> {
        let c = &mut self.chain[i];
        c.metrics.add_in(batch.num_rows());
        let t = Instant::now();
        let mut out = Output::default();
        c.op.process_batch(input, batch, &mut out)
            .map_err(|e| e.in_node(&c.info.node))?;
        c.metrics
            .busy_ns
            .fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
        self.route(i, out, outbox)
    }

    fn route(&mut self, i: usize, out: Output, outbox: &mut Vec<(usize, Message)>) -> Result<()> {
        let Output { main, side } = out;
        {
            let c = &self.chain[i];
            for (tag, b) in side {
                c.metrics.add_out(b.num_rows());
                for (t, r) in &c.side_routers {
                    if *t == tag {
                        outbox.push((*r, Message::Data(b.clone())));
                    }
                }
            }
        }
        for b in main {
            self.chain[i].metrics.add_out(b.num_rows());
            if i + 1 < self.chain.len() {
                self.push(i + 1, 0, b, outbox)?;
            } else {
                let routers = self.chain[i].main_routers.clone();
                for r in routers {
                    outbox.push((r, Message::Data(b.clone())));
                }
            }
        }
        Ok(())
    }
}
