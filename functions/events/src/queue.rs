//! A bounded, in-order delivery queue in front of sinks: the service hands an event over in microseconds and
//! each sink receives it from its own background task, so a slow webhook delays neither the device nor the file.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use dps_core::events::{Event, EventSink};
use dps_core::{Error, Result};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Counts since start, per queue (all sinks together).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Events a sink accepted.
    pub delivered: u64,
    /// Events a sink failed to take (after its own retries).
    pub failed: u64,
    /// Events not queued because a sink's queue was full or the queue closed.
    pub dropped: u64,
}

#[derive(Default)]
struct Counters {
    delivered: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
}

/// The queue: one bounded channel and one delivering task per sink.
pub struct Queue {
    senders: RwLock<Vec<mpsc::Sender<Event>>>,
    tasks: tokio::sync::Mutex<Vec<JoinHandle<()>>>,
    counters: Arc<Counters>,
}

impl Queue {
    /// Start delivering to each sink, up to `batch` events per call (a file takes many per fsync; a webhook one,
    /// so that a failure counts exactly the event it was about), holding at most `capacity` undelivered events per
    /// sink (then new events are dropped and counted, never waited for). Must be called inside a Tokio runtime.
    pub fn start(sinks: Vec<(Arc<dyn EventSink>, usize)>, capacity: usize) -> Self {
        let counters = Arc::new(Counters::default());
        let mut senders = Vec::new();
        let mut tasks = Vec::new();
        for (sink, batch) in sinks {
            let (tx, rx) = mpsc::channel(capacity.max(1));
            senders.push(tx);
            tasks.push(tokio::spawn(deliver(sink, batch.max(1), rx, counters.clone())));
        }
        Self { senders: RwLock::new(senders), tasks: tokio::sync::Mutex::new(tasks), counters }
    }

    /// Counts so far.
    pub fn stats(&self) -> QueueStats {
        QueueStats {
            delivered: self.counters.delivered.load(Ordering::Relaxed),
            failed: self.counters.failed.load(Ordering::Relaxed),
            dropped: self.counters.dropped.load(Ordering::Relaxed),
        }
    }

    /// Stop taking events and deliver those queued, for at most `grace`; returns the final counts. Events still
    /// queued after it are lost (and logged as such).
    pub async fn close(&self, grace: Duration) -> QueueStats {
        self.senders.write().unwrap_or_else(|p| p.into_inner()).clear();
        let tasks = std::mem::take(&mut *self.tasks.lock().await);
        let all = async {
            for task in tasks {
                let _ = task.await;
            }
        };
        if tokio::time::timeout(grace, all).await.is_err() {
            tracing::warn!(grace_secs = grace.as_secs(), "events still undelivered at shutdown are lost");
        }
        self.stats()
    }
}

async fn deliver(sink: Arc<dyn EventSink>, size: usize, mut rx: mpsc::Receiver<Event>, counters: Arc<Counters>) {
    let mut batch = Vec::with_capacity(size);
    while rx.recv_many(&mut batch, size).await > 0 {
        let n = batch.len() as u64;
        match sink.publish(&batch).await {
            Ok(()) => {
                counters.delivered.fetch_add(n, Ordering::Relaxed);
            }
            Err(err) => {
                counters.failed.fetch_add(n, Ordering::Relaxed);
                let first = batch.first().map(|e| e.id.as_str()).unwrap_or_default();
                tracing::warn!(events = n, first_event_id = first, "events not delivered: {err}");
            }
        }
        batch.clear();
    }
}

#[async_trait]
impl EventSink for Queue {
    async fn publish(&self, events: &[Event]) -> Result<()> {
        let senders = self.senders.read().unwrap_or_else(|p| p.into_inner());
        let mut dropped = 0;
        for tx in senders.iter() {
            for event in events {
                if tx.try_send(event.clone()).is_err() {
                    dropped += 1;
                }
            }
        }
        if senders.is_empty() {
            dropped = events.len() as u64;
        }
        if dropped > 0 {
            self.counters.dropped.fetch_add(dropped, Ordering::Relaxed);
            return Err(Error::Unavailable(format!(
                "{dropped} event deliveries dropped: the event queue is full or closed"
            )));
        }
        Ok(())
    }
}
