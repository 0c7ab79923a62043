//! `ingest`: sustained `POST /v1/events` throughput.
//!
//! The file's events are first joined into batch bodies (`[e1,e2,…]`, gzip-compressed with
//! `--gzip`), before the clock starts, so the client's own JSON work is not measured. Then
//! `--concurrency` tasks each keep one request in flight over HTTP/1.1 keep-alive connections,
//! taking the next batch as soon as theirs is answered. A 503 is counted and the batch retried
//! after a short, growing sleep (at most `Retry-After`). The result is accepted events per second
//! of wall time, from the first request to the last answer.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use flate2::Compression;
use flate2::write::GzEncoder;
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use serde::Deserialize;

use crate::generate::rate;
use crate::http;
use crate::report::{self, IngestReport, Outcome, Percentiles};

/// At most this many events are held in memory as request bodies.
pub(crate) const MAX_HELD_EVENTS: usize = 2_000_000;

#[derive(Debug, clap::Args)]
pub(crate) struct IngestArgs {
    /// Base URL of the server.
    #[arg(long, env = "TALLY_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// The project's write key.
    #[arg(long, env = "TALLY_WRITE_KEY")]
    key: String,
    /// NDJSON events (`.gz` is decompressed), e.g. from `tally-bench generate`.
    #[arg(long)]
    file: PathBuf,
    /// Events per request.
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Send only the first N events of the file (at most 2,000,000, also the default).
    #[arg(long)]
    limit: Option<usize>,
    /// Send gzip-compressed bodies (`Content-Encoding: gzip`).
    #[arg(long)]
    gzip: bool,
    /// Worker threads of the client (it usually shares the machine with the server).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Give up on a batch after this many failed attempts (503s included).
    #[arg(long, default_value_t = 1000)]
    max_attempts: u32,
    /// Also write the result as JSON here (for `tally-bench report`).
    #[arg(long)]
    json: Option<PathBuf>,
}

pub(crate) fn run(args: IngestArgs) -> anyhow::Result<()> {
    if args.batch == 0 || args.concurrency == 0 {
        bail!("--batch and --concurrency must be at least 1");
    }
    let limit = match args.limit {
        Some(n) if n > MAX_HELD_EVENTS => {
            bail!("--limit {n}: at most {MAX_HELD_EVENTS} events are held in memory")
        }
        Some(n) => n,
        None => MAX_HELD_EVENTS,
    };
    let prepared = Instant::now();
    let batches = load_batches(&args.file, args.batch, limit, args.gzip)?;
    if batches.events == 0 {
        bail!("{} holds no events", args.file.display());
    }
    eprintln!(
        "prepared {} events in {} requests ({:.1} MB of bodies) in {:.1} s",
        report::thousands(batches.events),
        batches.bodies.len(),
        batches.body_bytes as f64 / 1e6,
        prepared.elapsed().as_secs_f64()
    );
    let result = http::runtime(args.threads)?.block_on(send_all(&args, batches))?;
    let failed = result.failed_batches;
    report::emit(&Outcome::Ingest(result), args.json.as_deref())?;
    if failed > 0 {
        bail!("{failed} batches were not accepted");
    }
    Ok(())
}

/// Request bodies, ready to send.
#[derive(Debug, Default)]
pub(crate) struct Batches {
    pub(crate) bodies: Vec<Bytes>,
    pub(crate) events: u64,
    pub(crate) body_bytes: u64,
}

/// Joins the first `limit` events of `path` into JSON array bodies of `batch` events, without
/// parsing them (every line must be a JSON object; the server judges the rest).
pub(crate) fn load_batches(
    path: &Path,
    batch: usize,
    limit: usize,
    gzip: bool,
) -> anyhow::Result<Batches> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut reader: Box<dyn BufRead> = if path.extension().is_some_and(|e| e == "gz") {
        Box::new(BufReader::with_capacity(
            1 << 20,
            flate2::read::MultiGzDecoder::new(BufReader::with_capacity(1 << 20, file)),
        ))
    } else {
        Box::new(BufReader::with_capacity(1 << 20, file))
    };
    let mut out = Batches::default();
    let mut line = Vec::new();
    let mut body = Vec::new();
    let mut in_body = 0usize;
    let mut line_no = 0u64;
    let finish = |body: &mut Vec<u8>, out: &mut Batches| -> anyhow::Result<()> {
        body.push(b']');
        let bytes = if gzip {
            let mut enc = GzEncoder::new(Vec::with_capacity(body.len() / 4), Compression::fast());
            enc.write_all(body).context("compressing a body")?;
            Bytes::from(enc.finish().context("compressing a body")?)
        } else {
            Bytes::copy_from_slice(body)
        };
        out.body_bytes += bytes.len() as u64;
        out.bodies.push(bytes);
        body.clear();
        Ok(())
    };
    while (out.events as usize) < limit {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        line_no += 1;
        let event = line.trim_ascii();
        if event.is_empty() {
            continue;
        }
        if event[0] != b'{' {
            bail!("{} line {line_no}: not a JSON object", path.display());
        }
        body.push(if in_body == 0 { b'[' } else { b',' });
        body.extend_from_slice(event);
        in_body += 1;
        out.events += 1;
        if in_body == batch {
            finish(&mut body, &mut out)?;
            in_body = 0;
        }
    }
    if in_body > 0 {
        finish(&mut body, &mut out)?;
    }
    Ok(out)
}

/// The answer to `POST /v1/events` (200, or 400 when every event was rejected).
#[derive(Debug, Deserialize)]
struct IngestAnswer {
    accepted: u64,
    #[serde(default)]
    rejected: Vec<serde_json::Value>,
}

#[derive(Debug)]
struct Shared {
    client: reqwest::Client,
    url: String,
    auth: HeaderValue,
    gzip: bool,
    bodies: Vec<Bytes>,
    next: AtomicUsize,
    accepted: AtomicU64,
    /// Set on an answer that every other batch would get too (401, 403, 404, 413, …).
    stop: AtomicBool,
    max_attempts: u32,
}

#[derive(Debug, Default)]
struct WorkerStats {
    latencies_ms: Vec<f64>,
    accepted: u64,
    rejected: u64,
    overloaded: u64,
    errors: u64,
    failed_batches: u64,
    first_error: Option<String>,
}

impl WorkerStats {
    fn error(&mut self, message: String) {
        self.errors += 1;
        self.first_error.get_or_insert(message);
    }

    fn merge(&mut self, other: WorkerStats) {
        self.latencies_ms.extend(other.latencies_ms);
        self.accepted += other.accepted;
        self.rejected += other.rejected;
        self.overloaded += other.overloaded;
        self.errors += other.errors;
        self.failed_batches += other.failed_batches;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }
}

async fn send_all(args: &IngestArgs, batches: Batches) -> anyhow::Result<IngestReport> {
    let client = http::client(args.concurrency)?;
    http::check_health(&client, &args.url).await?;
    let requests = batches.bodies.len() as u64;
    let shared = Arc::new(Shared {
        client,
        url: http::endpoint(&args.url, "/v1/events"),
        auth: http::bearer(&args.key)?,
        gzip: args.gzip,
        bodies: batches.bodies,
        next: AtomicUsize::new(0),
        accepted: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        max_attempts: args.max_attempts.max(1),
    });

    let started = Instant::now();
    let progress = {
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            tick.tick().await;
            loop {
                tick.tick().await;
                let n = shared.accepted.load(Ordering::Relaxed);
                eprintln!(
                    "  {} accepted, {} events/s",
                    report::thousands(n),
                    report::thousands(rate(n, started.elapsed().as_secs_f64()).round() as u64)
                );
            }
        })
    };
    let workers: Vec<_> = (0..args.concurrency)
        .map(|_| tokio::spawn(worker(Arc::clone(&shared))))
        .collect();
    let mut stats = WorkerStats::default();
    for w in workers {
        stats.merge(w.await.context("a sender task failed")?);
    }
    let seconds = started.elapsed().as_secs_f64();
    progress.abort();

    Ok(IngestReport {
        url: args.url.clone(),
        file: args.file.display().to_string(),
        events: batches.events,
        requests,
        batch: args.batch,
        concurrency: args.concurrency,
        gzip: args.gzip,
        body_bytes: batches.body_bytes,
        accepted: stats.accepted,
        rejected: stats.rejected,
        seconds,
        events_per_sec: rate(stats.accepted, seconds),
        latency_ms: Percentiles::of(&mut stats.latencies_ms),
        overloaded_503: stats.overloaded,
        errors: stats.errors,
        failed_batches: stats.failed_batches,
        first_error: stats.first_error,
    })
}

async fn worker(shared: Arc<Shared>) -> WorkerStats {
    let mut stats = WorkerStats::default();
    loop {
        if shared.stop.load(Ordering::Relaxed) {
            return stats;
        }
        let i = shared.next.fetch_add(1, Ordering::Relaxed);
        let Some(body) = shared.bodies.get(i) else {
            return stats;
        };
        send_batch(&shared, body, &mut stats).await;
    }
}

/// What became of one attempt.
#[derive(Debug)]
enum Attempt {
    Done,
    Retry(Option<Duration>),
    GiveUp,
}

async fn send_batch(shared: &Shared, body: &Bytes, stats: &mut WorkerStats) {
    let mut backoff = Duration::from_millis(10);
    for _ in 0..shared.max_attempts {
        match attempt(shared, body, stats).await {
            Attempt::Done => return,
            Attempt::GiveUp => {
                stats.failed_batches += 1;
                return;
            }
            Attempt::Retry(retry_after) => {
                let cap = retry_after.unwrap_or(Duration::from_secs(1));
                tokio::time::sleep(backoff.min(cap)).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
    stats.failed_batches += 1;
    stats
        .first_error
        .get_or_insert_with(|| format!("a batch failed {} times", shared.max_attempts));
}

async fn attempt(shared: &Shared, body: &Bytes, stats: &mut WorkerStats) -> Attempt {
    let mut request = shared
        .client
        .post(&shared.url)
        .header(AUTHORIZATION, shared.auth.clone())
        .header(CONTENT_TYPE, "application/json");
    if shared.gzip {
        request = request.header(CONTENT_ENCODING, "gzip");
    }
    let sent = Instant::now();
    let response = match request.body(body.clone()).send().await {
        Ok(r) => r,
        Err(e) => {
            stats.error(format!("POST /v1/events: {e}"));
            return Attempt::Retry(None);
        }
    };
    let status = response.status();
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let answer = match response.bytes().await {
        Ok(b) => b,
        Err(e) => {
            stats.error(format!("reading the answer to POST /v1/events: {e}"));
            return Attempt::Retry(None);
        }
    };
    let elapsed = sent.elapsed();
    match status {
        StatusCode::SERVICE_UNAVAILABLE => {
            stats.overloaded += 1;
            Attempt::Retry(retry_after)
        }
        StatusCode::OK | StatusCode::BAD_REQUEST => {
            match serde_json::from_slice::<IngestAnswer>(&answer) {
                Ok(a) => {
                    stats.latencies_ms.push(elapsed.as_secs_f64() * 1e3);
                    stats.accepted += a.accepted;
                    stats.rejected += a.rejected.len() as u64;
                    if !a.rejected.is_empty() && stats.first_error.is_none() {
                        stats.first_error = Some(format!(
                            "rejected: {}",
                            serde_json::to_string(&a.rejected[0]).unwrap_or_default()
                        ));
                    }
                    shared.accepted.fetch_add(a.accepted, Ordering::Relaxed);
                    Attempt::Done
                }
                Err(_) => {
                    stats.error(format!("{status}: {}", String::from_utf8_lossy(&answer)));
                    Attempt::GiveUp
                }
            }
        }
        s if s.is_server_error() => {
            stats.error(format!("{s}: {}", String::from_utf8_lossy(&answer)));
            Attempt::Retry(retry_after)
        }
        s => {
            // A client error other than rejected events: every batch would get it.
            stats.error(format!("{s}: {}", String::from_utf8_lossy(&answer)));
            shared.stop.store(true, Ordering::Relaxed);
            Attempt::GiveUp
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write");
        path
    }

    #[test]
    fn bodies_are_json_arrays_of_the_lines() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = write(
            dir.path(),
            "e.ndjson",
            "{\"a\":1}\n\n{\"a\":2}\r\n{\"a\":3}\n{\"a\":4}",
        );
        let b = load_batches(&path, 3, usize::MAX, false).expect("load");
        assert_eq!(b.events, 4);
        let texts: Vec<&[u8]> = b.bodies.iter().map(|b| &b[..]).collect();
        assert_eq!(
            texts,
            [&b"[{\"a\":1},{\"a\":2},{\"a\":3}]"[..], b"[{\"a\":4}]"]
        );
        for body in &b.bodies {
            serde_json::from_slice::<Vec<serde_json::Value>>(body).expect("valid JSON");
        }
        assert_eq!(
            b.body_bytes,
            b.bodies.iter().map(|b| b.len() as u64).sum::<u64>()
        );

        let limited = load_batches(&path, 3, 2, false).expect("load");
        assert_eq!(limited.events, 2);
        assert_eq!(&limited.bodies[0][..], b"[{\"a\":1},{\"a\":2}]");
    }

    #[test]
    fn gzip_bodies_decompress_to_the_same_json() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("g.ndjson.gz");
        crate::generate::write_file(&path, 250, 2, 9, crate::generate::END_UNIX_MS)
            .expect("generate");
        let plain = load_batches(&path, 100, usize::MAX, false).expect("load");
        let gz = load_batches(&path, 100, usize::MAX, true).expect("load");
        assert_eq!(plain.events, 250);
        assert_eq!(plain.bodies.len(), 3);
        for (p, g) in plain.bodies.iter().zip(&gz.bodies) {
            let mut text = Vec::new();
            flate2::read::GzDecoder::new(&g[..])
                .read_to_end(&mut text)
                .expect("gunzip");
            assert_eq!(&text[..], &p[..]);
            let events: Vec<serde_json::Value> = serde_json::from_slice(p).expect("JSON array");
            assert!(!events.is_empty());
        }
    }

    #[test]
    fn a_line_that_is_not_an_object_is_an_error() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = write(dir.path(), "bad.ndjson", "{\"a\":1}\n[1,2]\n");
        let err = load_batches(&path, 10, usize::MAX, false).expect_err("not an object");
        assert!(err.to_string().contains("line 2"), "{err}");
    }
}
