//! Running jobs: the [`Runtime`] (a fixed CPU pool plus a tokio runtime for I/O) and the
//! [`JobHandle`] of a running job.
//!
//! Threading model: operator chains are futures polled by a fixed pool of CPU threads (one per
//! core by default); a chain that cannot make progress (empty input, full output) returns
//! `Pending` and frees its thread. Sources and sinks do I/O, so they run on tokio's blocking
//! threads and never on the CPU pool or on a tokio worker.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::executor::ThreadPool;
use parking_lot::{Condvar, Mutex};

use crate::channel::{Channel, HighWater};
use crate::connector::{Progress, SinkWriter, SourceEvent, SourceReader};
use crate::error::{EngineError, Result};
use crate::exchange::{Route, Router};
use crate::gate::{GateEvent, InputGate};
use crate::graph::{JobGraph, NodeId, NodeKind, Partitioning, SourceTime};
use crate::message::Message;
use crate::metrics::{JobMetrics, MetricsSnapshot, OperatorMetrics};
use crate::operator::{InstanceInfo, Operator, OperatorContext, Output};
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
}

impl Drop for Runtime {
    fn drop(&mut self) {
        if let Some(rt) = self.owned_io.take() {
            rt.shutdown_background();
        }
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
        let plan = Plan::new(&job)?;
        let g = &job.inner;
        let shared = Arc::new(JobShared {
            name: g.name.clone(),
            cancelled: AtomicBool::new(false),
            state: Mutex::new(JobState {
                remaining: plan.task_count,
                error: None,
                finished: false,
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
            finished_at: Mutex::new(None),
        });
        let Plan {
            mut gates,
            mut routers,
            metrics,
            tasks,
            ..
        } = plan;

        // Create every reader, operator and writer first: a failure here starts nothing.
        let mut launches: Vec<Launch> = Vec::new();
        for task in &tasks {
            let par = job.parallelism(task.nodes[0]);
            for i in 0..par {
                let head = task.nodes[0];
                let info = |id: NodeId| InstanceInfo {
                    node: g.nodes[id].name.clone(),
                    index: i,
                    parallelism: par,
                };
                let task_routers = std::mem::take(&mut routers[task.id][i]);
                match &g.nodes[head].kind {
                    NodeKind::Source { source, time } => {
                        let reader = source
                            .create_reader(&info(head))
                            .map_err(|e| e.in_node(&g.nodes[head].name))?;
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
                            name: g.nodes[head].name.clone(),
                            reader,
                            routers: task_routers.into_iter().map(|(_, r)| r).collect(),
                            time,
                            metrics: metrics[head][i].clone(),
                            progress_slot: None,
                        }));
                    }
                    NodeKind::Sink { sink } => {
                        let writer = sink
                            .create_writer(&info(head), g.nodes[head].schema.clone())
                            .map_err(|e| e.in_node(&g.nodes[head].name))?;
                        launches.push(Launch::Sink(SinkTask {
                            name: g.nodes[head].name.clone(),
                            writer,
                            gate: gates[task.id][i].take().expect("sink gate"),
                            metrics: metrics[head][i].clone(),
                        }));
                    }
                    NodeKind::Operator { .. } => {
                        let mut chain = Vec::new();
                        for &id in &task.nodes {
                            let op: Box<dyn Operator> = match &g.nodes[id].kind {
                                NodeKind::Operator { factory } => factory
                                    .create(&info(id))
                                    .map_err(|e| e.in_node(&g.nodes[id].name))?,
                                NodeKind::Sink { sink } => Box::new(InlineSink {
                                    writer: sink
                                        .create_writer(&info(id), g.nodes[id].schema.clone())
                                        .map_err(|e| e.in_node(&g.nodes[id].name))?,
                                    finished: false,
                                }),
                                NodeKind::Source { .. } => {
                                    unreachable!("chains hold operators and inline sinks")
                                }
                            };
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
                                info: info(id),
                                op,
                                metrics: metrics[id][i].clone(),
                                main_routers: main,
                                side_routers: side,
                            });
                        }
                        launches.push(Launch::Chain(ChainTask {
                            chain,
                            routers: task_routers.into_iter().map(|(_, r)| r).collect(),
                            gate: gates[task.id][i].take().expect("operator gate"),
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
                        let r = std::panic::catch_unwind(AssertUnwindSafe(move || t.run()))
                            .unwrap_or_else(|p| Err(panic_error(&name, p)));
                        shared.task_done(r);
                    });
                }
                Launch::Chain(t) => {
                    let shared = shared.clone();
                    let name = t.chain[0].info.node.clone();
                    self.cpu.spawn_ok(async move {
                        let r = AssertUnwindSafe(t.run())
                            .catch_unwind()
                            .await
                            .unwrap_or_else(|p| Err(panic_error(&name, p)));
                        shared.task_done(r);
                    });
                }
            }
        }
        Ok(JobHandle { shared })
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
    /// Stopped by [`JobHandle::cancel`].
    Cancelled,
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

struct JobShared {
    name: String,
    cancelled: AtomicBool,
    state: Mutex<JobState>,
    cond: Condvar,
    channels: Vec<Arc<Channel>>,
    metrics: JobMetrics,
    progress: Mutex<Vec<Arc<Mutex<Option<Progress>>>>>,
    started: Instant,
    finished_at: Mutex<Option<Instant>>,
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

    fn task_done(&self, result: Result<()>) {
        let mut st = self.state.lock();
        if let Err(e) = result {
            let shutdown_echo = matches!(e, EngineError::Cancelled);
            if st.error.is_none() && !shutdown_echo {
                st.error = Some(e);
                drop(st);
                // Stop everything else; the tasks that were blocked see their channels close.
                self.close_all();
                st = self.state.lock();
            }
        }
        st.remaining -= 1;
        if st.remaining == 0 {
            st.finished = true;
            *self.finished_at.lock() = Some(Instant::now());
            self.cond.notify_all();
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

    /// Stop the job: sources stop reading, every task ends, [`JobHandle::wait`] returns
    /// [`JobStatus::Cancelled`].
    pub fn cancel(&self) {
        self.shared.cancelled.store(true, Ordering::Release);
        self.shared.close_all();
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
                    Partitioning::Hash(keys) => Route::Hash(keys.clone()),
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
    reader: Box<dyn SourceReader>,
    routers: Vec<Router>,
    time: TaskTime,
    metrics: Arc<OperatorMetrics>,
    progress_slot: Option<Arc<Mutex<Option<Progress>>>>,
}

impl SourceTask {
    fn run(&mut self, shared: &JobShared) -> Result<()> {
        let mut max_ts = i64::MIN;
        let mut last_wm = i64::MIN;
        let mut last_data = Instant::now();
        let mut idle = false;
        loop {
            if shared.is_cancelled() {
                return Err(EngineError::Cancelled);
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
                                max_ts = max_ts.max(*m);
                            }
                            let wm = max_ts
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
                        && wm > last_wm
                    {
                        last_wm = wm;
                        broadcast(&mut outbox, self.routers.len(), Message::Watermark(wm));
                    }
                }
                SourceEvent::Idle(wait) => {
                    if let TaskTime::Ingestion(_) = self.time {
                        // Processing time passes while idle: windows must still close.
                        let wm = now_ms() - 1;
                        if wm > last_wm {
                            last_wm = wm;
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
                    std::thread::sleep(wait.min(Duration::from_millis(50)));
                    continue;
                }
                SourceEvent::End => break,
            }
            self.flush(outbox)?;
        }
        let mut outbox = Vec::new();
        broadcast(&mut outbox, self.routers.len(), Message::EndOfInput);
        self.flush(outbox)
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
    writer: Box<dyn SinkWriter>,
    gate: InputGate,
    metrics: Arc<OperatorMetrics>,
}

impl SinkTask {
    fn run(mut self) -> Result<()> {
        let r = self.consume();
        if r.is_err() {
            self.writer.abort();
        }
        r
    }

    fn consume(&mut self) -> Result<()> {
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
                GateEvent::End => {
                    return self.writer.finish().map_err(|e| e.in_node(&self.name));
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
        self.writer.finish()
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
    info: InstanceInfo,
    op: Box<dyn Operator>,
    metrics: Arc<OperatorMetrics>,
    main_routers: Vec<usize>,
    side_routers: Vec<(String, usize)>,
}

struct ChainTask {
    chain: Vec<ChainOp>,
    routers: Vec<Router>,
    gate: InputGate,
}

impl ChainTask {
    async fn run(mut self) -> Result<()> {
        self.gate.report_drained(true);
        for c in &mut self.chain {
            let ctx = OperatorContext {
                instance: c.info.clone(),
                metrics: c.metrics.clone(),
            };
            c.op.open(&ctx).map_err(|e| e.in_node(&c.info.node))?;
        }
        loop {
            let selected = self.chain[0].op.selected_input();
            let event = self.gate.next_from(selected).await?;
            let mut outbox = Vec::new();
            let mut end = false;
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
                GateEvent::Drained => {
                    for i in 0..self.chain.len() {
                        let mut out = Output::default();
                        let c = &mut self.chain[i];
                        c.op.input_drained(&mut out)
                            .map_err(|e| e.in_node(&c.info.node))?;
                        self.route(i, out, &mut outbox)?;
                    }
                }
                GateEvent::Barrier(b) => {
                    for c in &mut self.chain {
                        // State storage arrives with checkpointing; the snapshot call is made
                        // now so operators are exercised at the barrier like they will be.
                        c.op.snapshot_state().map_err(|e| e.in_node(&c.info.node))?;
                    }
                    broadcast(&mut outbox, self.routers.len(), Message::Barrier(b));
                }
                GateEvent::InputEnded(input) => {
                    let mut out = Output::default();
                    let c = &mut self.chain[0];
                    c.op.end_input(input, &mut out)
                        .map_err(|e| e.in_node(&c.info.node))?;
                    self.route(0, out, &mut outbox)?;
                }
                GateEvent::End => {
                    for i in 0..self.chain.len() {
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
                return Ok(());
            }
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
