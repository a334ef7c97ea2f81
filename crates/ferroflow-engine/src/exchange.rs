//! The output side of a task: routes what a node emits to the channels of one consumer edge.

use std::sync::Arc;

use arrow_array::{RecordBatch, UInt32Array};
use arrow_select::take::take_record_batch;

use crate::channel::{Channel, SendError};
use crate::error::{EngineError, Result};
use crate::hash::{hash_rows, key_group, key_group_owner};
use crate::message::Message;

/// Resolved partitioning of one edge.
#[derive(Debug, Clone)]
pub(crate) enum Route {
    /// One channel (instance i to instance i, or everything to instance 0).
    Forward,
    RoundRobin,
    /// Key columns and the job's number of key groups.
    Hash(Vec<usize>, u32),
    Broadcast,
}

/// Sends one node's output to every instance of one consumer.
pub(crate) struct Router {
    route: Route,
    pub(crate) chans: Vec<Arc<Channel>>,
    next: usize,
    hashes: Vec<u64>,
}

impl Router {
    pub(crate) fn new(route: Route) -> Self {
        Router {
            route,
            chans: Vec::new(),
            next: 0,
            hashes: Vec::new(),
        }
    }

    /// Split a message into (channel index, message) pairs. Pure CPU work, no waiting.
    pub(crate) fn partition(&mut self, msg: Message) -> Result<Vec<(usize, Message)>> {
        let n = self.chans.len();
        let batch = match msg {
            Message::Data(b) => b,
            other => return Ok((0..n).map(|i| (i, other.clone())).collect()),
        };
        if n == 1 {
            return Ok(vec![(0, Message::Data(batch))]);
        }
        Ok(match &self.route {
            Route::Forward => vec![(0, Message::Data(batch))],
            Route::RoundRobin => {
                let i = self.next % n;
                self.next = self.next.wrapping_add(1);
                vec![(i, Message::Data(batch))]
            }
            Route::Broadcast => (0..n).map(|i| (i, Message::Data(batch.clone()))).collect(),
            Route::Hash(keys, max) => {
                let cols: Vec<_> = keys.iter().map(|&k| batch.column(k).clone()).collect();
                hash_rows(&cols, batch.num_rows(), &mut self.hashes)?;
                split_by_partition(&batch, &self.hashes, n, *max)?
                    .into_iter()
                    .map(|(i, b)| (i, Message::Data(b)))
                    .collect()
            }
        })
    }

    /// Send a partitioned message, waiting for room.
    pub(crate) async fn send_to(&self, chan: usize, msg: Message) -> Result<()> {
        self.chans[chan]
            .send(msg)
            .await
            .map_err(|SendError::Closed| EngineError::Cancelled)
    }
}

fn split_by_partition(
    batch: &RecordBatch,
    hashes: &[u64],
    n: usize,
    max: u32,
) -> Result<Vec<(usize, RecordBatch)>> {
    let mut idx: Vec<Vec<u32>> = vec![Vec::new(); n];
    for (row, h) in hashes.iter().enumerate() {
        idx[key_group_owner(key_group(*h, max), max, n)].push(row as u32);
    }
    let mut out = Vec::new();
    for (p, rows) in idx.into_iter().enumerate() {
        if rows.is_empty() {
            continue;
        }
        if rows.len() == batch.num_rows() {
            out.push((p, batch.clone()));
        } else {
            out.push((p, take_record_batch(batch, &UInt32Array::from(rows))?));
        }
    }
    Ok(out)
}
