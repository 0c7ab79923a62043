//! The `EventManager`: a bounded queue between the HTTP layer and durable storage.
//!
//! Submissions wait in a queue bounded in events (not requests). A single writer task takes
//! everything waiting, hands it to the [`EventSink`] as one write (one WAL fsync for many
//! requests: group commit), and then answers each submitter. When the queue has no room,
//! [`EventManager::submit`] fails at once with [`SubmitError::Overloaded`], which the HTTP layer
//! turns into `503` with `Retry-After`: memory stays bounded under any load.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;

/// How many events an item counts for in the queue's capacity.
pub trait Weighted {
    fn weight(&self) -> usize;
}

/// Where the manager sends groups of items: the durable store.
pub trait EventSink<T>: Send + 'static {
    /// Writes all `items` durably, or none of them.
    fn write(&mut self, items: Vec<T>) -> impl Future<Output = Result<(), SinkError>> + Send;
}

/// A failed write.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SinkError {
    /// True when retrying later may succeed (the store is overloaded).
    pub overloaded: bool,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    #[error("the event queue is full; retry later")]
    Overloaded,
    #[error("the submission holds {0} events, more than the queue can ever hold")]
    TooLarge(usize),
    #[error("Tally is shutting down")]
    Closed,
    #[error("storing the events failed: {0}")]
    Sink(SinkError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventManagerConfig {
    /// Events that may wait in the queue (and be in the write under way) at once.
    pub queue_capacity: usize,
    /// The writer stops adding submissions to a group once it holds this many events.
    pub max_group_events: usize,
}

impl Default for EventManagerConfig {
    fn default() -> Self {
        Self {
            queue_capacity: 200_000,
            max_group_events: 50_000,
        }
    }
}

struct Submission<T> {
    items: Vec<T>,
    _permit: OwnedSemaphorePermit,
    done: oneshot::Sender<Result<(), SinkError>>,
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct ManagerStats {
    pub submitted_events: AtomicU64,
    pub rejected_overloaded: AtomicU64,
    pub group_writes: AtomicU64,
}

/// The queue's sending side. Clone it freely; the writer stops once every clone is dropped and
/// the queue is drained.
#[derive(Debug)]
pub struct EventManager<T> {
    tx: mpsc::UnboundedSender<Submission<T>>,
    permits: Arc<Semaphore>,
    capacity: usize,
    stats: Arc<ManagerStats>,
}

impl<T> Clone for EventManager<T> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            permits: Arc::clone(&self.permits),
            capacity: self.capacity,
            stats: Arc::clone(&self.stats),
        }
    }
}

impl<T> std::fmt::Debug for Submission<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Submission")
            .field("items", &self.items.len())
            .finish()
    }
}

impl<T: Weighted + Send + 'static> EventManager<T> {
    /// Starts the writer task on the current Tokio runtime.
    pub fn start<S: EventSink<T>>(sink: S, config: EventManagerConfig) -> (Self, JoinHandle<()>) {
        // The channel itself is unbounded; the semaphore bounds what is in it, in events.
        let (tx, rx) = mpsc::unbounded_channel();
        let stats = Arc::new(ManagerStats::default());
        let handle = tokio::spawn(run_writer(
            sink,
            rx,
            config.max_group_events,
            Arc::clone(&stats),
        ));
        let manager = Self {
            tx,
            permits: Arc::new(Semaphore::new(config.queue_capacity)),
            capacity: config.queue_capacity,
            stats,
        };
        (manager, handle)
    }

    /// Queues `items` and waits until they are durable. Fails at once when there is no room.
    pub async fn submit(&self, items: Vec<T>) -> Result<(), SubmitError> {
        let n: usize = items.iter().map(Weighted::weight).sum();
        if n == 0 {
            return Ok(());
        }
        if n > self.capacity {
            return Err(SubmitError::TooLarge(n));
        }
        let permit = match Arc::clone(&self.permits).try_acquire_many_owned(n as u32) {
            Ok(p) => p,
            Err(tokio::sync::TryAcquireError::NoPermits) => {
                self.stats
                    .rejected_overloaded
                    .fetch_add(n as u64, Ordering::Relaxed);
                return Err(SubmitError::Overloaded);
            }
            Err(tokio::sync::TryAcquireError::Closed) => return Err(SubmitError::Closed),
        };
        self.submit_with_permit(items, permit).await
    }

    /// Like [`submit`](Self::submit) but waits for room instead of failing: for bulk imports,
    /// which want back-pressure that slows them down rather than errors.
    pub async fn submit_waiting(&self, items: Vec<T>) -> Result<(), SubmitError> {
        let n: usize = items.iter().map(Weighted::weight).sum();
        if n > self.capacity {
            return Err(SubmitError::TooLarge(n));
        }
        let permit = Arc::clone(&self.permits)
            .acquire_many_owned(n as u32)
            .await
            .map_err(|_| SubmitError::Closed)?;
        self.submit_with_permit(items, permit).await
    }

    async fn submit_with_permit(
        &self,
        items: Vec<T>,
        permit: OwnedSemaphorePermit,
    ) -> Result<(), SubmitError> {
        let n = permit.num_permits() as u64;
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Submission {
                items,
                _permit: permit,
                done,
            })
            .map_err(|_| SubmitError::Closed)?;
        self.stats.submitted_events.fetch_add(n, Ordering::Relaxed);
        match wait.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) if e.overloaded => Err(SubmitError::Overloaded),
            Ok(Err(e)) => Err(SubmitError::Sink(e)),
            Err(_) => Err(SubmitError::Closed),
        }
    }

    /// Events waiting or being written.
    pub fn queued_events(&self) -> usize {
        self.capacity - self.permits.available_permits()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn stats(&self) -> &ManagerStats {
        &self.stats
    }
}

async fn run_writer<T: Weighted + Send + 'static, S: EventSink<T>>(
    mut sink: S,
    mut rx: mpsc::UnboundedReceiver<Submission<T>>,
    max_group: usize,
    stats: Arc<ManagerStats>,
) {
    while let Some(first) = rx.recv().await {
        let mut n: usize = first.items.iter().map(Weighted::weight).sum();
        let mut group = vec![first];
        while n < max_group {
            match rx.try_recv() {
                Ok(s) => {
                    n += s.items.iter().map(Weighted::weight).sum::<usize>();
                    group.push(s);
                }
                Err(_) => break,
            }
        }
        let mut items = Vec::with_capacity(group.iter().map(|s| s.items.len()).sum());
        for s in &mut group {
            items.append(&mut s.items);
        }
        let result = sink.write(items).await;
        stats.group_writes.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = &result {
            tracing::warn!(error = %e, events = n, "a group write failed");
        }
        for s in group {
            // The submitter may have gone away (client disconnected); the write stands.
            let _ = s.done.send(result.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    impl Weighted for u32 {
        fn weight(&self) -> usize {
            1
        }
    }

    #[derive(Clone, Default)]
    struct Recorder {
        groups: Arc<Mutex<Vec<Vec<u32>>>>,
        gate: Option<Arc<tokio::sync::Notify>>,
    }

    impl EventSink<u32> for Recorder {
        async fn write(&mut self, items: Vec<u32>) -> Result<(), SinkError> {
            if let Some(g) = &self.gate {
                g.notified().await;
            }
            if items.contains(&13) {
                return Err(SinkError {
                    overloaded: false,
                    message: "unlucky".into(),
                });
            }
            self.groups.lock().unwrap().push(items);
            Ok(())
        }
    }

    #[tokio::test]
    async fn groups_concurrent_submissions() {
        let gate = Arc::new(tokio::sync::Notify::new());
        let rec = Recorder {
            gate: Some(gate.clone()),
            ..Default::default()
        };
        let (m, _h) = EventManager::start(
            rec.clone(),
            EventManagerConfig {
                queue_capacity: 100,
                max_group_events: 100,
            },
        );
        let first = tokio::spawn({
            let m = m.clone();
            async move { m.submit(vec![1]).await }
        });
        tokio::task::yield_now().await;
        let rest: Vec<_> = (2..5)
            .map(|i| {
                let m = m.clone();
                tokio::spawn(async move { m.submit(vec![i]).await })
            })
            .collect();
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        gate.notify_one();
        first.await.unwrap().unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        gate.notify_one();
        for r in rest {
            r.await.unwrap().unwrap();
        }
        let groups = rec.groups.lock().unwrap().clone();
        assert_eq!(groups.len(), 2, "{groups:?}");
        assert_eq!(groups[1].len(), 3);
    }

    #[tokio::test]
    async fn refuses_when_full_and_reports_sink_errors() {
        let gate = Arc::new(tokio::sync::Notify::new());
        let rec = Recorder {
            gate: Some(gate.clone()),
            ..Default::default()
        };
        let (m, _h) = EventManager::start(
            rec,
            EventManagerConfig {
                queue_capacity: 3,
                max_group_events: 10,
            },
        );
        let pending = tokio::spawn({
            let m = m.clone();
            async move { m.submit(vec![1, 2]).await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        assert_eq!(m.submit(vec![3, 4]).await, Err(SubmitError::Overloaded));
        assert_eq!(
            m.submit(vec![1, 2, 3, 4]).await,
            Err(SubmitError::TooLarge(4))
        );
        gate.notify_one();
        pending.await.unwrap().unwrap();
        let failing = tokio::spawn({
            let m = m.clone();
            async move { m.submit(vec![13]).await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        gate.notify_one();
        assert!(matches!(failing.await.unwrap(), Err(SubmitError::Sink(_))));
        assert_eq!(m.queued_events(), 0);
    }
}
