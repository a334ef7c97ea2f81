//! Running jobs: the [`Runtime`] (a fixed CPU pool plus a tokio runtime for I/O) and the
//! [`JobHandle`] of a running job.
//!
//! Threading model: operator chains are futures polled by a fixed pool of CPU threads (one per
//! core by default); a chain that cannot make progress (empty input, full output) returns
//! `Pending` and frees its thread. Sources and sinks do I/O, so they run on tokio's blocking
//! threads and never on the CPU pool or on a tokio worker.

mod job;
mod plan;
mod restore;
mod tasks;

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use futures::FutureExt;
use futures::executor::ThreadPool;
use parking_lot::{Condvar, Mutex};

use crate::checkpoint::{
    LoadedCheckpoint, RestoreFrom, Restored, Storage, decode_committables, new_run_id,
};
use crate::connector::SourceReader;
use crate::coordinator::{Coordinator, NodeMeta};
use crate::error::{EngineError, Result};
use crate::graph::{JobGraph, NodeId, NodeKind, SourceTime};
use crate::metrics::JobMetrics;
use crate::operator::{InstanceInfo, Operator};
use job::{JobShared, JobState};
use plan::Plan;
use restore::{
    EndedReader, RescaledSource, SourceResume, check_checkpointable, check_restorable, open_writer,
    restore_operator, restored_finished, role_of, source_resume,
};
use tasks::{ChainOp, ChainTask, InlineSink, SinkTask, SourceTask, TaskTime, panic_error};

pub use job::{JobHandle, JobReport, JobStatus};

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
                return Err(EngineError::plan(format!(
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

enum Launch {
    Source(SourceTask),
    Sink(SinkTask),
    Chain(ChainTask),
}
