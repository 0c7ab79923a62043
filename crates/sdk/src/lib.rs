//! Send usage events to [Tally](https://github.com/) from Rust services.
//!
//! [`EventManager`] is the client side of Tally's pipeline: [`track`](EventManager::track),
//! [`identify`](EventManager::identify) and [`alias`](EventManager::alias) never block and never
//! fail; a background task sends what they queued in batches (by size and by time) to Tally's
//! Segment-compatible `POST /v1/batch`, retries on network errors, 429 and 5xx with exponential
//! backoff and jitter, and keeps memory bounded: when Tally stays unreachable and the queue
//! is full, the oldest events are dropped and counted ([`Stats::dropped`]).
//!
//! Every event gets a `messageId` when it is queued, and a retry re-sends the same ids, so Tally's
//! de-duplication stores each event once even when an answer was lost.
//!
//! ```no_run
//! use std::time::Duration;
//! use tally_sdk::{Config, Event, EventManager, Identify};
//!
//! # async fn run() -> Result<(), tally_sdk::Error> {
//! let tally = EventManager::start(Config::new("http://localhost:8080", "tw_your_write_key"))?;
//! tally.track(Event::new("Signed Up").user_id("u1").property("plan", "pro"));
//! // The origin's shape: AnalyticsEvent(category, action, label, value).
//! tally.track(Event::action("video", "play").anonymous_id("a1").label("intro").value(30.0));
//! tally.identify(Identify::new("u1").anonymous_id("a1").trait_("email", "u1@example.com"));
//! tally.alias("legacy-42", "u1");
//! tally.flush().await?; // everything queued so far is stored (or was dropped and counted)
//! tally.shutdown(Duration::from_secs(5)).await; // flush, then stop the background task
//! # Ok(()) }
//! ```
//!
//! HTTPS needs the `rustls` feature.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value, json};
use std::sync::Mutex;

use tokio::sync::{Notify, mpsc, oneshot};

/// Tally's limit on one message (Segment's): larger events are dropped when queued.
pub const MAX_MESSAGE_BYTES: usize = 32 << 10;
/// Tally's limit on one batch request: batches are cut below it.
pub const MAX_BATCH_BYTES: usize = 500 << 10;

/// What can go wrong in the calls that wait.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("the event manager was shut down")]
    ShutDown,
}

/// Where to send, and how.
#[derive(Debug, Clone)]
pub struct Config {
    /// Tally's base URL, e.g. `http://localhost:8080`.
    pub endpoint: String,
    /// The project's write key.
    pub write_key: String,
    /// Events per request at most (default 100).
    pub max_batch: usize,
    /// A batch is sent at the latest this long after its first event was queued (default 1 s).
    pub flush_interval: Duration,
    /// Events held while Tally is slow or unreachable; beyond it the oldest are dropped
    /// (default 10,000).
    pub max_queue: usize,
    /// The first retry waits up to this long; each next one up to twice as long (default 100 ms).
    pub min_backoff: Duration,
    /// The longest wait between retries (default 10 s).
    pub max_backoff: Duration,
    /// One request's time limit (default 10 s).
    pub request_timeout: Duration,
    /// `context.library` of every event.
    pub library: String,
}

impl Config {
    pub fn new(endpoint: impl Into<String>, write_key: impl Into<String>) -> Self {
        Self {
            endpoint: endpoint.into(),
            write_key: write_key.into(),
            max_batch: 100,
            flush_interval: Duration::from_secs(1),
            max_queue: 10_000,
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
            request_timeout: Duration::from_secs(10),
            library: format!("tally-sdk {}", env!("CARGO_PKG_VERSION")),
        }
    }
}

/// A named event, or one in the origin's shape (category, action, label, value).
#[derive(Debug, Clone, Default)]
pub struct Event {
    event: Option<String>,
    category: Option<String>,
    action: Option<String>,
    label: Option<String>,
    value: Option<f64>,
    user_id: Option<String>,
    anonymous_id: Option<String>,
    timestamp: Option<DateTime<Utc>>,
    properties: Map<String, Value>,
    context: Map<String, Value>,
}

impl Event {
    /// A named event (`"Signed Up"`).
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            event: Some(name.into()),
            ..Self::default()
        }
    }

    /// An event in the origin's shape: `AnalyticsEvent(category, action, label, value)`; the
    /// action names it.
    pub fn action(category: impl Into<String>, action: impl Into<String>) -> Self {
        Self {
            category: Some(category.into()),
            action: Some(action.into()),
            ..Self::default()
        }
    }

    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    pub fn value(mut self, value: f64) -> Self {
        self.value = Some(value);
        self
    }

    pub fn user_id(mut self, id: impl Into<String>) -> Self {
        self.user_id = Some(id.into());
        self
    }

    pub fn anonymous_id(mut self, id: impl Into<String>) -> Self {
        self.anonymous_id = Some(id.into());
        self
    }

    /// When it happened (default: when it was queued).
    pub fn timestamp(mut self, at: DateTime<Utc>) -> Self {
        self.timestamp = Some(at);
        self
    }

    pub fn property(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.properties.insert(key.into(), value.into());
        self
    }

    /// A context key (`ip`, `userAgent`, `page`, `locale`, ...), as in Tally's event shape.
    pub fn context(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.context.insert(key.into(), value.into());
        self
    }
}

/// Traits for a person, optionally merging an anonymous id into the user.
#[derive(Debug, Clone, Default)]
pub struct Identify {
    user_id: String,
    anonymous_id: Option<String>,
    traits: Map<String, Value>,
}

impl Identify {
    pub fn new(user_id: impl Into<String>) -> Self {
        Self {
            user_id: user_id.into(),
            ..Self::default()
        }
    }

    /// The anonymous id this user had: Tally merges the two into one person.
    pub fn anonymous_id(mut self, id: impl Into<String>) -> Self {
        self.anonymous_id = Some(id.into());
        self
    }

    pub fn trait_(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.traits.insert(key.into(), value.into());
        self
    }
}

/// Counters since the manager started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Events waiting to be sent (not counting a batch being retried).
    pub queued: u64,
    /// Events Tally acknowledged.
    pub sent: u64,
    /// Events dropped because the queue was full (the oldest went first).
    pub dropped: u64,
    /// Events Tally refused (a 4xx other than 429, or larger than Tally's limit).
    pub rejected: u64,
    /// Requests that failed and were retried.
    pub retries: u64,
}

#[derive(Debug, Default)]
struct Counters {
    sent: AtomicU64,
    dropped: AtomicU64,
    rejected: AtomicU64,
    retries: AtomicU64,
}

#[derive(Debug)]
struct Shared {
    /// Messages as JSON text, oldest first.
    queue: Mutex<VecDeque<String>>,
    /// Mirrors the queue's length for `stats()` without the lock.
    queued: AtomicU64,
    wake: Notify,
    counters: Counters,
    closed: AtomicBool,
    /// Set by `shutdown`: retries stop at this instant.
    deadline: Mutex<Option<tokio::time::Instant>>,
    /// Wakes a retry wait when `shutdown` sets the deadline.
    stop: Notify,
    max_queue: usize,
    max_batch: usize,
    library: String,
}

enum Command {
    Flush(oneshot::Sender<()>),
    Shutdown(Duration, oneshot::Sender<()>),
}

/// The client-side event manager. Cheap to clone; all clones share one queue and one
/// background task, which must run inside a Tokio runtime.
#[derive(Debug, Clone)]
pub struct EventManager {
    shared: Arc<Shared>,
    commands: mpsc::UnboundedSender<Command>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Flush(_) => "Flush",
            Self::Shutdown(..) => "Shutdown",
        })
    }
}

impl EventManager {
    /// Starts the background task on the current Tokio runtime.
    pub fn start(config: Config) -> Result<Self, Error> {
        if config.max_batch == 0 || config.max_queue == 0 {
            return Err(Error::Config(
                "max_batch and max_queue must be at least 1".into(),
            ));
        }
        let url = format!("{}/v1/batch", config.endpoint.trim_end_matches('/'));
        reqwest::Url::parse(&url).map_err(|e| Error::Config(format!("endpoint: {e}")))?;
        let http = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .build()
            .map_err(|e| Error::Config(e.to_string()))?;
        let shared = Arc::new(Shared {
            queue: Mutex::new(VecDeque::new()),
            queued: AtomicU64::new(0),
            wake: Notify::new(),
            counters: Counters::default(),
            closed: AtomicBool::new(false),
            deadline: Mutex::new(None),
            stop: Notify::new(),
            max_queue: config.max_queue,
            max_batch: config.max_batch,
            library: config.library.clone(),
        });
        let (commands, rx) = mpsc::unbounded_channel();
        let worker = Worker {
            shared: Arc::clone(&shared),
            http,
            url,
            config,
        };
        tokio::spawn(worker.run(rx));
        Ok(Self { shared, commands })
    }

    /// Queues an event. Never blocks; an event larger than Tally's 32 KB limit is dropped and
    /// counted as rejected.
    pub fn track(&self, event: Event) {
        let Event {
            event,
            category,
            action,
            label,
            value,
            user_id,
            anonymous_id,
            timestamp,
            properties,
            context,
        } = event;
        let mut o = Map::new();
        o.insert("type".into(), json!("track"));
        o.insert("properties".into(), Value::Object(properties));
        o.insert("context".into(), Value::Object(context));
        for (k, v) in [
            ("event", event),
            ("category", category),
            ("action", action),
            ("label", label),
            ("userId", user_id),
            ("anonymousId", anonymous_id),
        ] {
            if let Some(v) = v {
                o.insert(k.into(), Value::String(v));
            }
        }
        if let Some(v) = value {
            o.insert("value".into(), json!(v));
        }
        self.enqueue(Value::Object(o), timestamp);
    }

    /// Queues traits for a person (and the merge of its anonymous id, if given).
    pub fn identify(&self, identify: Identify) {
        let mut m =
            json!({"type": "identify", "userId": identify.user_id, "traits": identify.traits});
        if let Some(a) = identify.anonymous_id {
            m["anonymousId"] = Value::String(a);
        }
        self.enqueue(m, None);
    }

    /// Queues the merge of `previous_id` into `user_id`: one person from then on, for past
    /// events too.
    pub fn alias(&self, previous_id: impl Into<String>, user_id: impl Into<String>) {
        let m =
            json!({"type": "alias", "previousId": previous_id.into(), "userId": user_id.into()});
        self.enqueue(m, None);
    }

    fn enqueue(&self, mut message: Value, at: Option<DateTime<Utc>>) {
        let s = &self.shared;
        if s.closed.load(Ordering::Acquire) {
            s.counters.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let at = at.unwrap_or_else(Utc::now);
        message["timestamp"] = Value::String(at.to_rfc3339_opts(SecondsFormat::Micros, true));
        message["messageId"] = Value::String(uuid::Uuid::new_v4().to_string());
        match message.get_mut("context").and_then(Value::as_object_mut) {
            Some(c) => {
                c.entry("library").or_insert_with(|| json!(s.library));
            }
            None => message["context"] = json!({"library": s.library}),
        }
        // Serialized once, here: the queue holds each message as the text it is sent as.
        let message = message.to_string();
        if message.len() > MAX_MESSAGE_BYTES {
            s.counters.rejected.fetch_add(1, Ordering::Relaxed);
            tracing::warn!("tally-sdk: an event over {MAX_MESSAGE_BYTES} bytes was dropped");
            return;
        }
        // The lock is only ever held to push or pop (never across a send), so this does not
        // wait on the network, and works from any thread, inside a runtime or not.
        let mut q = lock(&s.queue);
        push_bounded(s, &mut q, message);
        let full = q.len() >= s.max_batch;
        drop(q);
        if full {
            s.wake.notify_one();
        }
    }

    /// Waits until everything queued before this call was sent, or refused or dropped (what is
    /// queued meanwhile does not hold it up). While Tally is unreachable this keeps retrying:
    /// wrap it in `tokio::time::timeout` to bound it.
    pub async fn flush(&self) -> Result<(), Error> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Flush(tx))
            .map_err(|_| Error::ShutDown)?;
        rx.await.map_err(|_| Error::ShutDown)
    }

    /// Stops taking events, sends what is queued for at most `timeout` (what is left is counted
    /// as dropped), and stops the background task. Call it before the service exits.
    pub async fn shutdown(&self, timeout: Duration) {
        self.shared.closed.store(true, Ordering::Release);
        *lock(&self.shared.deadline) = Some(tokio::time::Instant::now() + timeout);
        self.shared.stop.notify_waiters();
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::Shutdown(timeout, tx)).is_ok() {
            let _ = rx.await;
        }
    }

    pub fn stats(&self) -> Stats {
        let c = &self.shared.counters;
        Stats {
            queued: self.shared.queued.load(Ordering::Relaxed),
            sent: c.sent.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            rejected: c.rejected.load(Ordering::Relaxed),
            retries: c.retries.load(Ordering::Relaxed),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn push_bounded(s: &Shared, q: &mut VecDeque<String>, message: String) {
    q.push_back(message);
    while q.len() > s.max_queue {
        q.pop_front();
        s.counters.dropped.fetch_add(1, Ordering::Relaxed);
    }
    s.queued.store(q.len() as u64, Ordering::Relaxed);
}

struct Worker {
    shared: Arc<Shared>,
    http: reqwest::Client,
    url: String,
    config: Config,
}

/// How a batch ended.
enum Sent {
    Done,
    /// The deadline passed while retrying: the batch was not sent.
    GaveUp,
}

impl Worker {
    async fn run(self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let mut tick = tokio::time::interval(self.config.flush_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                cmd = commands.recv() => match cmd {
                    // Every handle is gone: send what is left (bounded), then stop.
                    None => {
                        self.drain(Some(Duration::from_secs(5))).await;
                        return;
                    }
                    Some(Command::Flush(done)) => {
                        // What was queued before the call: the oldest `n` (later ones may
                        // keep coming; a flush does not wait for them).
                        let n = lock(&self.shared.queue).len();
                        self.drain_oldest(n).await;
                        let _ = done.send(());
                    }
                    Some(Command::Shutdown(timeout, done)) => {
                        self.drain(Some(timeout)).await;
                        let _ = done.send(());
                        return;
                    }
                },
                // A full batch is waiting.
                () = self.shared.wake.notified() => self.drain_full_batches().await,
                // The interval passed: send everything there is.
                _ = tick.tick() => self.drain(None).await,
            }
        }
    }

    /// Sends full batches while there are some.
    async fn drain_full_batches(&self) {
        while lock(&self.shared.queue).len() >= self.config.max_batch {
            if let (Sent::GaveUp, _) = self.send_one_until(None).await {
                return;
            }
        }
    }

    /// Sends everything queued; with a timeout, what is left then is dropped and counted.
    /// Sends at least the `n` oldest queued messages (fewer if some were dropped meanwhile).
    async fn drain_oldest(&self, n: usize) {
        let mut taken = 0;
        while taken < n {
            match self.send_one_until(None).await {
                (_, 0) => return,
                (_, k) => taken += k,
            }
        }
    }

    async fn drain(&self, timeout: Option<Duration>) {
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        loop {
            if lock(&self.shared.queue).is_empty() {
                return;
            }
            if let (Sent::GaveUp, _) = self.send_one_until(deadline).await {
                let mut q = lock(&self.shared.queue);
                let left = q.len() as u64;
                q.clear();
                self.shared.queued.store(0, Ordering::Relaxed);
                self.shared
                    .counters
                    .dropped
                    .fetch_add(left, Ordering::Relaxed);
                return;
            }
        }
    }

    /// Takes one batch off the queue and sends it, retrying until it is acknowledged or refused
    /// or `deadline` (or a shutdown's) passes; then the batch is dropped and counted. Returns how
    /// it ended and how many messages the batch held.
    async fn send_one_until(&self, deadline: Option<tokio::time::Instant>) -> (Sent, usize) {
        let batch = self.take_batch();
        if batch.is_empty() {
            return (Sent::Done, 0);
        }
        let size = batch.len();
        let n = size as u64;
        let body = format!(
            r#"{{"batch":[{}],"sentAt":"{}"}}"#,
            batch.join(","),
            Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true)
        );
        let counters = &self.shared.counters;
        let give_up = || {
            counters.dropped.fetch_add(n, Ordering::Relaxed);
            (Sent::GaveUp, size)
        };
        let mut attempt: u32 = 0;
        loop {
            // Listen for a shutdown before reading its deadline, so none slips between.
            let stop = self.shared.stop.notified();
            tokio::pin!(stop);
            stop.as_mut().enable();
            // The earlier of the caller's deadline and a shutdown's.
            let stop_at = match (deadline, *lock(&self.shared.deadline)) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let send = self
                .http
                .post(&self.url)
                .basic_auth(&self.config.write_key, Some(""))
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone())
                .send();
            let result = match stop_at {
                Some(d) => match tokio::time::timeout_at(d, send).await {
                    Ok(r) => r,
                    Err(_) => return give_up(),
                },
                None => send.await,
            };
            let retry_after = match result {
                Ok(r) if r.status().is_success() => {
                    counters.sent.fetch_add(n, Ordering::Relaxed);
                    return (Sent::Done, size);
                }
                Ok(r) if r.status().as_u16() == 429 || r.status().is_server_error() => r
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok())
                    .map(|secs| Duration::from_secs(secs).min(self.config.max_backoff)),
                Ok(r) => {
                    let status = r.status();
                    let text = r.text().await.unwrap_or_default();
                    tracing::warn!(%status, answer = %text, "tally-sdk: Tally refused a batch");
                    counters.rejected.fetch_add(n, Ordering::Relaxed);
                    return (Sent::Done, size);
                }
                Err(e) => {
                    tracing::debug!(error = %e, "tally-sdk: sending failed; retrying");
                    None
                }
            };
            counters.retries.fetch_add(1, Ordering::Relaxed);
            let wait = retry_after.unwrap_or_else(|| self.backoff(attempt));
            attempt = attempt.saturating_add(1);
            let wake = tokio::time::Instant::now() + wait;
            if stop_at.is_some_and(|d| wake > d) {
                return give_up();
            }
            tokio::select! {
                () = tokio::time::sleep_until(wake) => {}
                () = &mut stop => {}
            }
        }
    }

    /// Exponential backoff with jitter: a random wait between half and all of
    /// `min_backoff · 2^attempt`, capped at `max_backoff`.
    fn backoff(&self, attempt: u32) -> Duration {
        let cap = self
            .config
            .min_backoff
            .saturating_mul(1u32 << attempt.min(20))
            .min(self.config.max_backoff);
        let ms = cap.as_millis().max(1) as u64;
        Duration::from_millis(rand::random_range(ms / 2..=ms))
    }

    /// Up to `max_batch` events, and never more than Tally's limit on a request's bytes.
    fn take_batch(&self) -> Vec<String> {
        let mut q = lock(&self.shared.queue);
        let mut batch = Vec::new();
        let mut bytes = 64;
        while batch.len() < self.config.max_batch
            && let Some(next) = q.front()
            && (batch.is_empty() || bytes + next.len() < MAX_BATCH_BYTES * 9 / 10)
        {
            bytes += next.len() + 1;
            batch.extend(q.pop_front());
        }
        self.shared.queued.store(q.len() as u64, Ordering::Relaxed);
        batch
    }
}
