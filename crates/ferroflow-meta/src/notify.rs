//! Waiting for events: long-poll `listen` and in-process subscriptions.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

use crate::error::{MetaError, Result};
use crate::store::MetaStore;
use crate::types::{Event, EventFilter, NewEvent};

/// How often a waiting listener re-checks the store for events written by other processes
/// (sends through this notifier wake listeners at once).
const POLL: Duration = Duration::from_millis(10);

/// Most sends committed together by the group-commit writer.
const GROUP_COMMIT_MAX: usize = 512;

struct PendingSend {
    event: NewEvent,
    reply: oneshot::Sender<Result<Event>>,
}

/// Sends and waits on the event log of a [`MetaStore`].
///
/// Sends are group-committed: concurrent [`Notifier::send`] calls queue to one writer task,
/// which stores everything waiting in one transaction (one disk sync) and then answers each
/// caller. A send still returns only after its event is durable.
#[derive(Clone)]
pub struct Notifier {
    store: Arc<dyn MetaStore>,
    latest: Arc<watch::Sender<i64>>,
    writer: Arc<OnceLock<mpsc::Sender<PendingSend>>>,
}

impl Notifier {
    /// A notifier over `store`.
    pub fn new(store: Arc<dyn MetaStore>) -> Self {
        Notifier {
            store,
            latest: Arc::new(watch::Sender::new(0)),
            writer: Arc::default(),
        }
    }

    /// The store underneath.
    pub fn store(&self) -> &Arc<dyn MetaStore> {
        &self.store
    }

    /// Tell listeners that something was written (after a model-center change, say).
    pub fn written(&self, offset: i64) {
        self.latest.send_if_modified(|cur| {
            if offset > *cur {
                *cur = offset;
                true
            } else {
                false
            }
        });
    }

    /// Store an event (group-committed with concurrent sends) and wake listeners.
    pub async fn send(&self, event: NewEvent) -> Result<Event> {
        // A bad event is refused on its own, never failing the others of its group.
        event.validate()?;
        let writer = self.writer.get_or_init(|| {
            let (tx, rx) = mpsc::channel(4 * GROUP_COMMIT_MAX);
            tokio::spawn(group_commit(self.store.clone(), self.latest.clone(), rx));
            tx
        });
        let (reply, answer) = oneshot::channel();
        writer
            .send(PendingSend { event, reply })
            .await
            .map_err(|_| MetaError::Unavailable("the event writer stopped".into()))?;
        answer
            .await
            .map_err(|_| MetaError::Unavailable("the event writer stopped".into()))?
    }

    /// Store several events in one transaction and wake listeners.
    pub async fn send_batch(&self, events: Vec<NewEvent>) -> Result<Vec<Event>> {
        let stored = self.store.send_events(events).await?;
        if let Some(last) = stored.iter().map(|e| e.offset).max() {
            self.written(last);
        }
        Ok(stored)
    }

    /// Events after `after` passing `filter`; if there are none yet, wait up to `timeout` for
    /// the first ones. Returns an empty list on timeout.
    pub async fn listen(
        &self,
        filter: &EventFilter,
        after: i64,
        limit: u32,
        timeout: Duration,
    ) -> Result<Vec<Event>> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut rx = self.latest.subscribe();
        loop {
            let events = self.store.list_events(filter, after, limit).await?;
            if !events.is_empty() {
                return Ok(events);
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(Vec::new());
            }
            let wait = (deadline - now).min(POLL);
            // Woken by a local send, or re-check after the poll interval.
            let _ = tokio::time::timeout(wait, rx.changed()).await;
        }
    }

    /// Every event after `after` passing `filter`, now and as they come, until the receiver
    /// is dropped. Errors end the subscription after being delivered.
    pub fn subscribe(&self, filter: EventFilter, after: i64) -> mpsc::Receiver<Result<Event>> {
        let (tx, rx) = mpsc::channel(1024);
        let this = self.clone();
        tokio::spawn(async move {
            let mut next = after;
            loop {
                match this
                    .listen(&filter, next, 1000, Duration::from_secs(30))
                    .await
                {
                    Ok(events) => {
                        for e in events {
                            next = e.offset;
                            if tx.send(Ok(e)).await.is_err() {
                                return;
                            }
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                }
                if tx.is_closed() {
                    return;
                }
            }
        });
        rx
    }
}

/// The writer task: takes every waiting send, stores them in one transaction, answers each.
async fn group_commit(
    store: Arc<dyn MetaStore>,
    latest: Arc<watch::Sender<i64>>,
    mut rx: mpsc::Receiver<PendingSend>,
) {
    while let Some(first) = rx.recv().await {
        let mut group = vec![first];
        while group.len() < GROUP_COMMIT_MAX {
            match rx.try_recv() {
                Ok(p) => group.push(p),
                Err(_) => break,
            }
        }
        let events = group.iter().map(|p| p.event.clone()).collect();
        match store.send_events(events).await {
            Ok(stored) => {
                if let Some(last) = stored.iter().map(|e| e.offset).max() {
                    latest.send_if_modified(|cur| {
                        let newer = last > *cur;
                        *cur = (*cur).max(last);
                        newer
                    });
                }
                for (p, e) in group.into_iter().zip(stored) {
                    let _ = p.reply.send(Ok(e));
                }
            }
            Err(e) => {
                // Nothing of the group was stored (one transaction): every caller may retry.
                let msg = e.to_string();
                for p in group {
                    let _ = p.reply.send(Err(MetaError::Unavailable(msg.clone())));
                }
            }
        }
    }
}
