//! Waiting for events: long-poll `listen` and in-process subscriptions.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

use crate::error::{MetaError, Result};
use crate::store::MetaStore;
use crate::types::{Event, EventFilter, NewEvent};

/// Longest one wait of the watcher on the store (it loops; a shorter wait only makes it
/// notice sooner that nobody listens any more).
const WATCH_WAIT: Duration = Duration::from_millis(500);

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
///
/// Listeners never poll the store: they wait on the newest known offset, which local sends
/// advance at once and one watcher task per notifier advances for events written by other
/// processes ([`MetaStore::wait_for_events`]: PostgreSQL `NOTIFY`, SQLite a cheap poll),
/// only while someone listens. A listener queries the store only when the offset moved.
#[derive(Clone)]
pub struct Notifier {
    store: Arc<dyn MetaStore>,
    latest: Arc<watch::Sender<i64>>,
    writer: Arc<OnceLock<mpsc::Sender<PendingSend>>>,
    watcher: Arc<OnceLock<()>>,
}

impl Notifier {
    /// A notifier over `store`.
    pub fn new(store: Arc<dyn MetaStore>) -> Self {
        Notifier {
            store,
            latest: Arc::new(watch::Sender::new(0)),
            writer: Arc::default(),
            watcher: Arc::default(),
        }
    }

    /// Start the watcher (once): it follows the store's newest offset while this notifier
    /// has listeners, and ends when every handle on the notifier is gone.
    fn watch_store(&self) {
        self.watcher.get_or_init(|| {
            let store = self.store.clone();
            let latest = Arc::downgrade(&self.latest);
            tokio::spawn(async move {
                loop {
                    let Some(tx) = latest.upgrade() else { return };
                    if tx.receiver_count() == 0 {
                        drop(tx);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                    let known = *tx.borrow();
                    drop(tx);
                    match store.wait_for_events(known, WATCH_WAIT).await {
                        Ok(offset) => {
                            if let Some(tx) = latest.upgrade() {
                                tx.send_if_modified(|cur| {
                                    let newer = offset > *cur;
                                    *cur = (*cur).max(offset);
                                    newer
                                });
                            }
                        }
                        // The store is failing: listeners keep waiting, the watcher retries.
                        Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                    }
                }
            });
        });
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
        self.watch_store();
        loop {
            // Marked seen before the query: an event stored after it wakes us again.
            rx.borrow_and_update();
            let events = self.store.list_events(filter, after, limit).await?;
            if !events.is_empty() {
                return Ok(events);
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => return Ok(Vec::new()),
            }
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
                // Ends as soon as the receiver is gone, not after the wait.
                let got = tokio::select! {
                    _ = tx.closed() => return,
                    got = this.listen(&filter, next, 1000, Duration::from_secs(30)) => got,
                };
                match got {
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
