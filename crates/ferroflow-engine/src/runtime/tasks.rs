//! The bodies of the tasks: a source instance reading and stamping time, a sink instance
//! writing and committing, and an operator chain driven by its input gate.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::job::JobShared;
use crate::checkpoint::{SourcePosition, encode_sink_state};
use crate::connector::{Progress, SinkWriter, SourceEvent, SourceReader};
use crate::error::{EngineError, Result};
use crate::exchange::Router;
use crate::gate::{GateEvent, InputGate};
use crate::graph::NodeId;
use crate::message::Message;
use crate::metrics::OperatorMetrics;
use crate::operator::{InstanceInfo, Operator, OperatorContext, OperatorState, Output};
use crate::time::{WatermarkStrategy, event_time_millis, millis};

pub(super) fn panic_error(node: &str, payload: Box<dyn std::any::Any + Send>) -> EngineError {
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

pub(super) async fn send_all(routers: &mut [Router], outbox: Vec<(usize, Message)>) -> Result<()> {
    for (r, msg) in outbox {
        for (chan, m) in routers[r].partition(msg)? {
            routers[r].send_to(chan, m).await?;
        }
    }
    Ok(())
}

pub(super) fn broadcast(outbox: &mut Vec<(usize, Message)>, routers: usize, msg: Message) {
    for r in 0..routers {
        outbox.push((r, msg.clone()));
    }
}

pub(super) enum TaskTime {
    None,
    /// Strategy and the index of its time column.
    Event(WatermarkStrategy, usize),
    /// The output schema, whose last column is stamped with the wall clock.
    Ingestion(arrow_schema::SchemaRef),
}

pub(super) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub(super) struct SourceTask {
    pub(super) name: String,
    pub(super) node: NodeId,
    pub(super) index: usize,
    pub(super) reader: Box<dyn SourceReader>,
    pub(super) routers: Vec<Router>,
    pub(super) time: TaskTime,
    pub(super) metrics: Arc<OperatorMetrics>,
    pub(super) progress_slot: Option<Arc<Mutex<Option<Progress>>>>,
    /// Event-time clock (restored from a checkpoint).
    pub(super) max_ts: i64,
    pub(super) last_wm: i64,
    pub(super) last_barrier: u64,
}

impl SourceTask {
    pub(super) fn run(&mut self, shared: &Arc<JobShared>) -> Result<()> {
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

pub(super) struct SinkTask {
    pub(super) name: String,
    pub(super) node: NodeId,
    pub(super) index: usize,
    pub(super) writer: Box<dyn SinkWriter>,
    pub(super) gate: InputGate,
    pub(super) metrics: Arc<OperatorMetrics>,
    /// The instance had ended before the restored checkpoint: its output is committed.
    pub(super) restored_finished: bool,
    pub(super) last_barrier: u64,
}

impl SinkTask {
    pub(super) fn run(mut self, shared: &Arc<JobShared>) -> Result<()> {
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
pub(super) struct InlineSink {
    pub(super) writer: Box<dyn SinkWriter>,
    pub(super) finished: bool,
    /// With checkpoints, output is pre-committed at barriers and at the end.
    pub(super) durable: bool,
    /// Last pre-commit epoch (unique per instance and run).
    pub(super) epoch: u64,
    /// What the pre-commit at the end of input left to commit.
    pub(super) final_commit: Option<Vec<Vec<u8>>>,
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

pub(super) struct ChainOp {
    pub(super) node: NodeId,
    pub(super) info: InstanceInfo,
    pub(super) op: Box<dyn Operator>,
    pub(super) is_sink: bool,
    pub(super) metrics: Arc<OperatorMetrics>,
    pub(super) main_routers: Vec<usize>,
    pub(super) side_routers: Vec<(String, usize)>,
}

pub(super) struct ChainTask {
    pub(super) chain: Vec<ChainOp>,
    pub(super) routers: Vec<Router>,
    pub(super) gate: InputGate,
    /// Wakes the task at its operators' timers.
    pub(super) io: tokio::runtime::Handle,
    /// The earliest wake-up already scheduled.
    pub(super) wake_at: Option<Instant>,
    /// Every operator had ended before the restored checkpoint: `finish` already ran.
    pub(super) skip_finish: bool,
}

impl ChainTask {
    pub(super) async fn run(mut self, shared: Arc<JobShared>) -> Result<()> {
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
