//! Waiting for events: long-poll `listen` and in-process subscriptions.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{Notify, mpsc, oneshot};

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

/// One waiting listener: woken only when an event it wants arrives.
struct Waiter {
    filter: EventFilter,
    after: i64,
    wake: Arc<Notify>,
}

#[derive(Default)]
struct Waiters {
    next_id: u64,
    by_id: HashMap<u64, Waiter>,
}

/// Removes its waiter when the listen ends (returns, times out or is dropped).
struct Registration<'a> {
    waiters: &'a Mutex<Waiters>,
    id: u64,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        self.waiters.lock().by_id.remove(&self.id);
    }
}

/// Sends and waits on the event log of a [`MetaStore`].
///
/// Sends are group-committed: concurrent [`Notifier::send`] calls queue to one writer task,
/// which stores everything waiting in one transaction (one disk sync) and then answers each
/// caller. A send still returns only after its event is durable.
///
/// Listeners neither poll the store nor wake on every event: they register their filter,
/// and one watcher task per notifier (running only while someone waits) follows the log —
/// woken by local sends at once and, for events other processes write, by
/// [`MetaStore::wait_for_events`] (PostgreSQL `NOTIFY`; SQLite one `stat` of its
/// write-ahead log per 2 ms) — reads each new event once and wakes just the listeners
/// whose filter it passes.
#[derive(Clone)]
pub struct Notifier {
    store: Arc<dyn MetaStore>,
    waiters: Arc<Mutex<Waiters>>,
    /// Something was written through this notifier (or [`Notifier::written`] was called).
    poke: Arc<Notify>,
    /// A listener registered (the watcher sleeps on it while nobody waits).
    arrival: Arc<Notify>,
    writer: Arc<OnceLock<mpsc::Sender<PendingSend>>>,
    watcher: Arc<OnceLock<()>>,
}

impl Notifier {
    /// A notifier over `store`.
    pub fn new(store: Arc<dyn MetaStore>) -> Self {
        Notifier {
            store,
            waiters: Arc::default(),
            poke: Arc::new(Notify::new()),
            arrival: Arc::new(Notify::new()),
            writer: Arc::default(),
            watcher: Arc::default(),
        }
    }

    /// The store underneath.
    pub fn store(&self) -> &Arc<dyn MetaStore> {
        &self.store
    }

    /// Tell listeners that something was written (after a model-center change, say).
    pub fn written(&self) {
        self.poke.notify_one();
    }

    /// Start the watcher (once). While listeners wait it reads new events and wakes those
    /// they match; it ends when every handle on the notifier is gone.
    fn watch_store(&self) {
        self.watcher.get_or_init(|| {
            let store = self.store.clone();
            let (waiters, poke, arrival) = (
                Arc::downgrade(&self.waiters),
                Arc::downgrade(&self.poke),
                Arc::downgrade(&self.arrival),
            );
            tokio::spawn(async move {
                let mut known: Option<i64> = None;
                loop {
                    let (Some(waiters), Some(poke), Some(arrival)) =
                        (waiters.upgrade(), poke.upgrade(), arrival.upgrade())
                    else {
                        return;
                    };
                    if waiters.lock().by_id.is_empty() {
                        // Nobody waits: forget the position (a new listener queries first)
                        // and sleep until one comes, looking now and then whether the
                        // notifier is gone.
                        known = None;
                        drop((waiters, poke));
                        let _ = tokio::time::timeout(WATCH_WAIT, arrival.notified()).await;
                        continue;
                    }
                    drop(arrival);
                    let from = match known {
                        Some(k) => k,
                        None => match store.latest_offset().await {
                            Ok(o) => {
                                // Events up to `o` may have come after a waiting listener's
                                // query: each queries once more (later listeners query after
                                // this read, so they see them anyway).
                                for w in waiters.lock().by_id.values() {
                                    w.wake.notify_one();
                                }
                                known = Some(o);
                                o
                            }
                            Err(_) => {
                                tokio::time::sleep(Duration::from_millis(200)).await;
                                continue;
                            }
                        },
                    };
                    let latest = tokio::select! {
                        // A local write: read what came (one query), no offset check.
                        _ = poke.notified() => Ok(i64::MAX),
                        r = store.wait_for_events(from, WATCH_WAIT) => r,
                    };
                    match latest {
                        Ok(latest) if latest > from => {
                            match wake_matching(&*store, &waiters, from, latest).await {
                                Ok(upto) => known = Some(upto),
                                // The store is failing: listeners keep waiting; retry.
                                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                            }
                        }
                        Ok(_) => {}
                        Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                    }
                }
            });
        });
    }

    /// Store an event (group-committed with concurrent sends) and wake listeners.
    pub async fn send(&self, event: NewEvent) -> Result<Event> {
        // A bad event is refused on its own, never failing the others of its group.
        event.validate()?;
        let writer = self.writer.get_or_init(|| {
            let (tx, rx) = mpsc::channel(4 * GROUP_COMMIT_MAX);
            tokio::spawn(group_commit(self.store.clone(), self.poke.clone(), rx));
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
        self.poke.notify_one();
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
        let wake = Arc::new(Notify::new());
        // Registered before the first query: an event stored while it runs either shows in
        // the query or wakes us; none falls between.
        let _registration = {
            let mut w = self.waiters.lock();
            let id = w.next_id;
            w.next_id += 1;
            w.by_id.insert(
                id,
                Waiter {
                    filter: filter.clone(),
                    after,
                    wake: wake.clone(),
                },
            );
            Registration {
                waiters: &self.waiters,
                id,
            }
        };
        self.watch_store();
        self.arrival.notify_one();
        loop {
            let events = self.store.list_events(filter, after, limit).await?;
            if !events.is_empty() {
                return Ok(events);
            }
            if tokio::time::timeout_at(deadline, wake.notified())
                .await
                .is_err()
            {
                return Ok(Vec::new());
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

/// Read the events after `from` up to `latest` (one query per 1000 events for the whole
/// notifier) and wake the listeners each one matches; returns the offset read up to.
async fn wake_matching(
    store: &dyn MetaStore,
    waiters: &Mutex<Waiters>,
    from: i64,
    latest: i64,
) -> Result<i64> {
    let mut from = from;
    while from < latest {
        let batch = store
            .list_events(&EventFilter::default(), from, 1000)
            .await?;
        let Some(last) = batch.last().map(|e| e.offset) else {
            break;
        };
        for w in waiters.lock().by_id.values() {
            if batch
                .iter()
                .any(|e| e.offset > w.after && w.filter.matches(e))
            {
                w.wake.notify_one();
            }
        }
        from = last;
    }
    Ok(from)
}

/// The writer task: takes every waiting send, stores them in one transaction, answers each.
async fn group_commit(
    store: Arc<dyn MetaStore>,
    poke: Arc<Notify>,
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
                poke.notify_one();
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
