//! The input side of a task: all channels feeding one instance, merged.
//!
//! The gate turns per-channel messages into task-level events: batches pass straight
//! through; watermarks are combined as the minimum over active channels (idle and ended
//! channels do not hold it back); barriers are aligned (a channel that delivered barrier n
//! is paused until every channel has); end-of-input is reported per input and then once for
//! the whole task.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use arrow_array::RecordBatch;
use futures::task::AtomicWaker;

use crate::channel::Channel;
use crate::error::{EngineError, Result};
use crate::message::{CheckpointBarrier, MAX_WATERMARK, Message, Watermark};

/// What the gate hands to its task.
#[derive(Debug)]
pub(crate) enum GateEvent {
    Batch(usize, RecordBatch),
    Watermark(Watermark),
    /// All inputs idle (`true`) or some active again (`false`).
    Idle(bool),
    /// A barrier aligned on every channel, and how long alignment took.
    Barrier(CheckpointBarrier, std::time::Duration),
    /// Every channel of this input ended.
    InputEnded(usize),
    /// Every channel ended.
    End,
    /// The time set with [`InputGate::set_timer`] has come.
    Timer,
    /// No message is waiting right now (reported once per burst, and only when
    /// [`InputGate::report_drained`] asked for it): operators that batch rows flush here.
    Drained,
}

struct GateChannel {
    chan: Arc<Channel>,
    input: usize,
    watermark: Watermark,
    idle: bool,
    ended: bool,
    /// Delivered the barrier now being aligned.
    at_barrier: bool,
}

pub(crate) struct InputGate {
    channels: Vec<GateChannel>,
    waker: Arc<AtomicWaker>,
    watermark: Watermark,
    idle: bool,
    inputs: usize,
    inputs_ended: Vec<bool>,
    pending_barrier: Option<CheckpointBarrier>,
    /// When the first channel delivered the pending barrier.
    pending_since: Option<std::time::Instant>,
    /// Report [`GateEvent::Timer`] once this time has come.
    timer_at: Option<std::time::Instant>,
    next: usize,
    done: bool,
    report_drained: bool,
    drained_reported: bool,
}

impl InputGate {
    /// A gate over `inputs` logical inputs. Channels are added with [`InputGate::add`].
    pub(crate) fn new(inputs: usize) -> Self {
        InputGate {
            channels: Vec::new(),
            waker: Arc::new(AtomicWaker::new()),
            watermark: Watermark::MIN,
            idle: false,
            inputs,
            inputs_ended: vec![false; inputs],
            pending_barrier: None,
            pending_since: None,
            timer_at: None,
            next: 0,
            done: false,
            report_drained: false,
            drained_reported: true,
        }
    }

    /// Report [`GateEvent::Drained`] when the channels run empty after data arrived.
    pub(crate) fn report_drained(&mut self, on: bool) {
        self.report_drained = on;
    }

    /// Report [`GateEvent::Timer`] at `at` (`None`: no timer). Whoever sets it must also
    /// wake the gate's waker then, since no channel will.
    pub(crate) fn set_timer(&mut self, at: Option<std::time::Instant>) {
        self.timer_at = at;
    }

    /// The waker channels into this gate must share.
    pub(crate) fn waker(&self) -> Arc<AtomicWaker> {
        self.waker.clone()
    }

    pub(crate) fn add(&mut self, chan: Arc<Channel>, input: usize) {
        self.channels.push(GateChannel {
            chan,
            input,
            watermark: Watermark::MIN,
            idle: false,
            ended: false,
            at_barrier: false,
        });
    }

    /// Wait for the next event.
    pub(crate) fn next(&mut self) -> NextEvent<'_> {
        NextEvent {
            gate: self,
            selected: None,
        }
    }

    /// Wait for the next event, reading data only from input `selected` when given.
    pub(crate) fn next_from(&mut self, selected: Option<usize>) -> NextEvent<'_> {
        NextEvent {
            gate: self,
            selected,
        }
    }

    fn combined_watermark(&self) -> Option<Watermark> {
        self.channels
            .iter()
            .filter(|c| c.ended || !c.idle)
            .map(|c| if c.ended { MAX_WATERMARK } else { c.watermark })
            .min()
    }

    /// Re-evaluate watermark, idleness and barrier alignment after a channel changed.
    fn derived_event(&mut self) -> Option<GateEvent> {
        for input in 0..self.inputs {
            if !self.inputs_ended[input]
                && self
                    .channels
                    .iter()
                    .filter(|c| c.input == input)
                    .all(|c| c.ended)
            {
                self.inputs_ended[input] = true;
                return Some(GateEvent::InputEnded(input));
            }
        }
        if let Some(b) = self.pending_barrier
            && self.channels.iter().all(|c| c.ended || c.at_barrier)
        {
            self.pending_barrier = None;
            for c in &mut self.channels {
                c.at_barrier = false;
            }
            let waited = self
                .pending_since
                .take()
                .map(|t| t.elapsed())
                .unwrap_or_default();
            return Some(GateEvent::Barrier(b, waited));
        }
        let all_idle =
            self.channels.iter().all(|c| c.idle && !c.ended) && !self.channels.is_empty();
        if all_idle != self.idle {
            self.idle = all_idle;
            return Some(GateEvent::Idle(all_idle));
        }
        if let Some(wm) = self.combined_watermark()
            && wm > self.watermark
        {
            self.watermark = wm;
            return Some(GateEvent::Watermark(wm));
        }
        None
    }

    fn poll_event(
        &mut self,
        cx: &mut Context<'_>,
        selected: Option<usize>,
    ) -> Poll<Result<GateEvent>> {
        if self.done {
            return Poll::Ready(Ok(GateEvent::End));
        }
        let mut registered = false;
        loop {
            if let Some(t) = self.timer_at
                && std::time::Instant::now() >= t
            {
                self.timer_at = None;
                return Poll::Ready(Ok(GateEvent::Timer));
            }
            if let Some(ev) = self.derived_event() {
                return Poll::Ready(Ok(ev));
            }
            if self.channels.iter().all(|c| c.ended) {
                self.done = true;
                return Poll::Ready(Ok(GateEvent::End));
            }
            let n = self.channels.len();
            let mut got = None;
            for k in 0..n {
                let i = (self.next + k) % n;
                let c = &self.channels[i];
                if c.ended || c.at_barrier || selected.is_some_and(|s| s != c.input) {
                    continue;
                }
                if let Some(msg) = c.chan.try_recv() {
                    got = Some((i, msg));
                    break;
                }
                if c.chan.is_closed() {
                    return Poll::Ready(Err(EngineError::Cancelled));
                }
            }
            let Some((i, msg)) = got else {
                if self.report_drained && !self.drained_reported {
                    self.drained_reported = true;
                    return Poll::Ready(Ok(GateEvent::Drained));
                }
                if registered {
                    return Poll::Pending;
                }
                // Register, then scan once more so a message sent in between is not missed.
                self.waker.register(cx.waker());
                registered = true;
                continue;
            };
            self.next = i + 1;
            let c = &mut self.channels[i];
            match msg {
                Message::Data(b) => {
                    self.drained_reported = false;
                    if c.idle {
                        c.idle = false;
                    }
                    // An idle gate revived by data reports `Idle(false)` on the next poll.
                    return Poll::Ready(Ok(GateEvent::Batch(c.input, b)));
                }
                Message::Watermark(w) => c.watermark = c.watermark.max(w),
                Message::Idle(flag) => c.idle = flag,
                Message::Barrier(b) => {
                    c.at_barrier = true;
                    match self.pending_barrier {
                        Some(p) if p.id != b.id => {
                            return Poll::Ready(Err(EngineError::Other(format!(
                                "checkpoint barrier {} arrived while aligning barrier {}",
                                b.id, p.id
                            ))));
                        }
                        Some(_) => {}
                        None => {
                            self.pending_barrier = Some(b);
                            self.pending_since = Some(std::time::Instant::now());
                        }
                    }
                }
                Message::EndOfInput => c.ended = true,
            }
        }
    }
}

/// Future of [`InputGate::next`].
pub(crate) struct NextEvent<'a> {
    gate: &'a mut InputGate,
    selected: Option<usize>,
}

impl Future for NextEvent<'_> {
    type Output = Result<GateEvent>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let selected = self.selected;
        self.gate.poll_event(cx, selected)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::ChannelBound;
    use futures::executor::block_on;

    fn gate_with(n: usize) -> (InputGate, Vec<Arc<Channel>>) {
        let mut g = InputGate::new(1);
        let chans: Vec<_> = (0..n)
            .map(|_| Channel::new(ChannelBound::default(), g.waker()))
            .collect();
        for c in &chans {
            g.add(c.clone(), 0);
        }
        (g, chans)
    }

    #[test]
    fn watermark_is_minimum_over_channels() {
        let (mut g, c) = gate_with(2);
        c[0].try_send(Message::Watermark(10)).unwrap();
        c[1].try_send(Message::Watermark(5)).unwrap();
        assert!(matches!(
            block_on(g.next()).unwrap(),
            GateEvent::Watermark(5)
        ));
        c[1].try_send(Message::Watermark(20)).unwrap();
        assert!(matches!(
            block_on(g.next()).unwrap(),
            GateEvent::Watermark(10)
        ));
    }

    #[test]
    fn idle_channel_does_not_hold_back_watermark() {
        let (mut g, c) = gate_with(2);
        c[1].try_send(Message::Idle(true)).unwrap();
        c[0].try_send(Message::Watermark(7)).unwrap();
        assert!(matches!(
            block_on(g.next()).unwrap(),
            GateEvent::Watermark(7)
        ));
    }

    #[test]
    fn barriers_align_and_end_is_reported_once() {
        let (mut g, c) = gate_with(2);
        let b = CheckpointBarrier {
            id: 1,
            timestamp_ms: 0,
            stop: false,
        };
        c[0].try_send(Message::Barrier(b)).unwrap();
        c[0].try_send(Message::EndOfInput).unwrap();
        c[1].try_send(Message::Barrier(b)).unwrap();
        c[1].try_send(Message::EndOfInput).unwrap();
        assert!(matches!(
            block_on(g.next()).unwrap(),
            GateEvent::Barrier(..)
        ));
        let mut events = Vec::new();
        loop {
            let e = block_on(g.next()).unwrap();
            let end = matches!(e, GateEvent::End);
            events.push(format!("{e:?}"));
            if end {
                break;
            }
        }
        assert_eq!(
            events,
            vec!["InputEnded(0)", "Watermark(9223372036854775807)", "End"]
        );
    }
}
