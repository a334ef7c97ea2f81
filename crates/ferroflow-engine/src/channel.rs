//! Bounded exchange channels between tasks.
//!
//! A channel connects one producer instance to one consumer instance. Its bound is counted in
//! rows and in bytes, not in messages, so that memory stays bounded whatever the batch size. A
//! message is accepted when the channel is empty (so one oversized batch never deadlocks) or
//! when it fits under both bounds. Send and receive are `Future`-based and executor-agnostic:
//! the CPU pool polls them, and source/sink threads block on them.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};

use futures::task::AtomicWaker;
use parking_lot::Mutex;

use crate::message::Message;

/// The capacity of one exchange channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelBound {
    /// Most rows buffered at once.
    pub max_rows: usize,
    /// Most bytes (Arrow buffer memory) buffered at once.
    pub max_bytes: usize,
}

impl Default for ChannelBound {
    fn default() -> Self {
        ChannelBound {
            max_rows: 64 * 1024,
            max_bytes: 16 * 1024 * 1024,
        }
    }
}

#[derive(Default)]
struct State {
    queue: VecDeque<Message>,
    rows: usize,
    bytes: usize,
}

/// The largest amount a channel ever buffered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HighWater {
    /// Most rows buffered at once.
    pub rows: usize,
    /// Most bytes buffered at once.
    pub bytes: usize,
}

/// A bounded single-producer single-consumer channel of [`Message`]s.
pub(crate) struct Channel {
    state: Mutex<State>,
    bound: ChannelBound,
    closed: AtomicBool,
    /// Woken when a message arrives; shared by every channel of one consumer's input gate.
    consumer: Arc<AtomicWaker>,
    /// Woken when space frees up.
    producer: AtomicWaker,
    high_rows: AtomicUsize,
    high_bytes: AtomicUsize,
}

/// Why a send did not complete.
#[derive(Debug)]
pub(crate) enum SendError {
    /// The job is shutting down.
    Closed,
}

impl Channel {
    pub(crate) fn new(bound: ChannelBound, consumer: Arc<AtomicWaker>) -> Arc<Self> {
        Arc::new(Channel {
            state: Mutex::new(State::default()),
            bound,
            closed: AtomicBool::new(false),
            consumer,
            producer: AtomicWaker::new(),
            high_rows: AtomicUsize::new(0),
            high_bytes: AtomicUsize::new(0),
        })
    }

    /// Try to enqueue; gives the message back when the channel is full.
    pub(crate) fn try_send(&self, msg: Message) -> Result<(), Result<Message, SendError>> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Err(SendError::Closed));
        }
        let (rows, bytes) = (msg.rows(), msg.bytes());
        {
            let mut st = self.state.lock();
            if !st.queue.is_empty()
                && (st.rows + rows > self.bound.max_rows || st.bytes + bytes > self.bound.max_bytes)
            {
                return Err(Ok(msg));
            }
            st.queue.push_back(msg);
            st.rows += rows;
            st.bytes += bytes;
            self.high_rows.fetch_max(st.rows, Ordering::Relaxed);
            self.high_bytes.fetch_max(st.bytes, Ordering::Relaxed);
        }
        self.consumer.wake();
        Ok(())
    }

    /// Send, waiting while the channel is full.
    pub(crate) fn send(self: &Arc<Self>, msg: Message) -> SendFuture<'_> {
        SendFuture {
            chan: self,
            msg: Some(msg),
        }
    }

    /// Take the next message, if any. Wakes a producer waiting for space once the channel
    /// is at most half full (or empty), not on every message: a blocked producer then
    /// refills in a burst, and the consumer pays one cross-thread wake-up per half channel
    /// instead of one per batch. An empty channel accepts any message, so a waiting
    /// producer is always woken in time.
    pub(crate) fn try_recv(&self) -> Option<Message> {
        let (msg, wake) = {
            let mut st = self.state.lock();
            let msg = st.queue.pop_front()?;
            st.rows -= msg.rows();
            st.bytes -= msg.bytes();
            let wake = st.queue.is_empty()
                || (st.rows <= self.bound.max_rows / 2 && st.bytes <= self.bound.max_bytes / 2);
            (msg, wake)
        };
        if wake {
            self.producer.wake();
        }
        Some(msg)
    }

    /// Close the channel: pending and future sends fail, both sides are woken.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.producer.wake();
        self.consumer.wake();
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    pub(crate) fn high_water(&self) -> HighWater {
        HighWater {
            rows: self.high_rows.load(Ordering::Relaxed),
            bytes: self.high_bytes.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn bound(&self) -> ChannelBound {
        self.bound
    }
}

/// Future returned by [`Channel::send`].
pub(crate) struct SendFuture<'a> {
    chan: &'a Arc<Channel>,
    msg: Option<Message>,
}

impl Future for SendFuture<'_> {
    type Output = Result<(), SendError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Some(msg) = self.msg.take() else {
            return Poll::Ready(Ok(()));
        };
        match self.chan.try_send(msg) {
            Ok(()) => Poll::Ready(Ok(())),
            Err(Err(e)) => Poll::Ready(Err(e)),
            Err(Ok(msg)) => {
                // Register before retrying so a wake between the two is not lost.
                self.chan.producer.register(cx.waker());
                match self.chan.try_send(msg) {
                    Ok(()) => Poll::Ready(Ok(())),
                    Err(Err(e)) => Poll::Ready(Err(e)),
                    Err(Ok(msg)) => {
                        self.msg = Some(msg);
                        Poll::Pending
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Int64Array, RecordBatch};
    use std::sync::Arc;

    fn batch(n: usize) -> RecordBatch {
        let a = Int64Array::from_iter_values(0..n as i64);
        RecordBatch::try_from_iter([("a", Arc::new(a) as _)]).unwrap()
    }

    #[test]
    fn full_channel_refuses_until_drained() {
        let ch = Channel::new(
            ChannelBound {
                max_rows: 10,
                max_bytes: usize::MAX,
            },
            Arc::new(AtomicWaker::new()),
        );
        assert!(ch.try_send(Message::Data(batch(8))).is_ok());
        assert!(matches!(ch.try_send(Message::Data(batch(8))), Err(Ok(_))));
        assert!(ch.try_recv().is_some());
        assert!(ch.try_send(Message::Data(batch(8))).is_ok());
        assert_eq!(ch.high_water().rows, 8);
    }

    #[test]
    fn oversized_message_accepted_when_empty() {
        let ch = Channel::new(
            ChannelBound {
                max_rows: 10,
                max_bytes: 10,
            },
            Arc::new(AtomicWaker::new()),
        );
        assert!(ch.try_send(Message::Data(batch(100))).is_ok());
        assert!(matches!(ch.try_send(Message::EndOfInput), Err(Ok(_))));
    }

    #[test]
    fn blocked_sender_resumes_after_receive() {
        let ch = Channel::new(
            ChannelBound {
                max_rows: 4,
                max_bytes: usize::MAX,
            },
            Arc::new(AtomicWaker::new()),
        );
        let producer = {
            let ch = ch.clone();
            std::thread::spawn(move || {
                for _ in 0..50 {
                    futures::executor::block_on(ch.send(Message::Data(batch(3)))).unwrap();
                }
            })
        };
        let mut got = 0;
        while got < 150 {
            match ch.try_recv() {
                Some(m) => got += m.rows(),
                None => std::thread::yield_now(),
            }
        }
        producer.join().unwrap();
        assert!(ch.high_water().rows <= 4);
    }

    #[test]
    fn close_fails_pending_send() {
        let ch = Channel::new(
            ChannelBound {
                max_rows: 1,
                max_bytes: usize::MAX,
            },
            Arc::new(AtomicWaker::new()),
        );
        ch.try_send(Message::Data(batch(1))).unwrap();
        let c2 = ch.clone();
        let t = std::thread::spawn(move || {
            futures::executor::block_on(c2.send(Message::Data(batch(1)))).is_err()
        });
        std::thread::sleep(std::time::Duration::from_millis(20));
        ch.close();
        assert!(t.join().unwrap());
    }
}
