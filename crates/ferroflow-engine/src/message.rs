//! What flows along the edges of a job: data and in-band control messages.

use arrow_array::RecordBatch;

/// A watermark: no record with an event time at or below this value (milliseconds since the
/// epoch) is expected any more on the channel that carried it.
pub type Watermark = i64;

/// The watermark sent when an input ends: every window fires.
pub const MAX_WATERMARK: Watermark = i64::MAX;

/// A checkpoint barrier: everything before it on a channel belongs to checkpoint `id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointBarrier {
    /// Monotonically increasing checkpoint id.
    pub id: u64,
    /// When the checkpoint was triggered (milliseconds since the epoch).
    pub timestamp_ms: i64,
    /// A stop's savepoint: every task ends after this barrier, without end-of-input (no
    /// window fires early; the state is in the savepoint).
    pub stop: bool,
}

/// One element on a channel.
#[derive(Debug, Clone)]
pub enum Message {
    /// A batch of rows.
    Data(RecordBatch),
    /// Event time advanced on this channel.
    Watermark(Watermark),
    /// The producer went idle (`true`) or became active again (`false`); an idle channel does
    /// not hold back the watermark of its consumer.
    Idle(bool),
    /// A checkpoint barrier (aligned at consumers with several input channels).
    Barrier(CheckpointBarrier),
    /// The producer will send nothing more.
    EndOfInput,
}

/// Nominal size charged to a channel for a control message, so that control messages are
/// bounded too.
pub(crate) const CONTROL_MESSAGE_BYTES: usize = 64;

impl Message {
    /// Rows carried (0 for control messages).
    pub fn rows(&self) -> usize {
        match self {
            Message::Data(b) => b.num_rows(),
            _ => 0,
        }
    }

    /// Bytes charged to a channel for this message.
    pub fn bytes(&self) -> usize {
        match self {
            Message::Data(b) => b.get_array_memory_size(),
            _ => CONTROL_MESSAGE_BYTES,
        }
    }
}
