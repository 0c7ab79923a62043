//! `latency`: how long after its acknowledgment an event can be queried.
//!
//! Each sample sends one `bench_probe` event carrying a unique `properties.probe`, waits for the
//! 200, then runs `POST /v1/query` (a count filtered on that probe) in a tight loop until the
//! count is 1. The latency is from reading the 200 to reading the first answer that counts the
//! event, so it includes that one query; Tally promises that an acknowledged event is already
//! visible, which makes this one query's round trip.

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use chrono::{SecondsFormat, Utc};
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use serde_json::{Value, json};

use crate::http;
use crate::report::{self, LatencyReport, Outcome, Percentiles};

/// The rule name of the probe query.
const RULE: &str = "probe";

#[derive(Debug, clap::Args)]
pub(crate) struct LatencyArgs {
    /// Base URL of the server.
    #[arg(long, env = "TALLY_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// The project's write key.
    #[arg(long, env = "TALLY_WRITE_KEY")]
    write_key: String,
    /// The project's read key.
    #[arg(long, env = "TALLY_READ_KEY")]
    read_key: String,
    /// Measured samples (one more runs first as a warm-up).
    #[arg(long, default_value_t = 50)]
    samples: usize,
    /// Seconds to wait for one event to become visible before counting a timeout.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
    /// Also write the result as JSON here (for `tally-bench report`).
    #[arg(long)]
    json: Option<PathBuf>,
}

pub(crate) fn run(args: LatencyArgs) -> anyhow::Result<()> {
    if args.samples == 0 {
        bail!("--samples must be at least 1");
    }
    let result = http::runtime(1)?.block_on(measure(&args))?;
    report::emit(&Outcome::Latency(result), args.json.as_deref())
}

/// The event of sample `probe`.
pub(crate) fn probe_event(probe: &str) -> Value {
    json!([{
        "event": "bench_probe",
        "user_id": "tally-bench-latency",
        "properties": {"probe": probe},
    }])
}

/// The query that counts the events of sample `probe`, over a day either side of `now`.
pub(crate) fn probe_query(probe: &str, now: chrono::DateTime<Utc>) -> Value {
    let day = chrono::Duration::days(1);
    json!({
        "time_range": {
            "from": (now - day).to_rfc3339_opts(SecondsFormat::Secs, true),
            "to": (now + day).to_rfc3339_opts(SecondsFormat::Secs, true),
            "timezone": "UTC",
        },
        "rules": [{
            "name": RULE,
            "event": "bench_probe",
            "measure": {"op": "count"},
            "filters": [["properties.probe", "eq", probe]],
        }],
    })
}

/// The count in an answer to [`probe_query`] (no row counts as 0); None if the answer does not
/// have the expected shape.
fn probe_count(answer: &Value) -> Option<f64> {
    match http::rows(answer, RULE)?.first() {
        None => Some(0.0),
        Some(row) => row.as_array()?.last()?.as_f64(),
    }
}

#[derive(Debug)]
struct Sample {
    ack: Duration,
    visible: Option<Duration>,
    polls: u32,
}

async fn measure(args: &LatencyArgs) -> anyhow::Result<LatencyReport> {
    let client = http::client(2)?;
    http::check_health(&client, &args.url).await?;
    let write_key = http::bearer(&args.write_key)?;
    let read_key = http::bearer(&args.read_key)?;
    let run_id = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let timeout = Duration::from_secs(args.timeout.max(1));

    let mut samples = Vec::with_capacity(args.samples);
    for k in 0..=args.samples {
        let probe = format!("{run_id:x}-{k}");
        let s = sample(&client, args, &write_key, &read_key, &probe, timeout).await?;
        if k > 0 {
            samples.push(s);
        }
    }
    let mut visible: Vec<f64> = samples
        .iter()
        .filter_map(|s| s.visible)
        .map(|d| d.as_secs_f64() * 1e3)
        .collect();
    let mut ack: Vec<f64> = samples.iter().map(|s| s.ack.as_secs_f64() * 1e3).collect();
    let polls: u32 = samples.iter().map(|s| s.polls).sum();
    Ok(LatencyReport {
        url: args.url.clone(),
        samples: samples.len(),
        timeouts: samples.len() - visible.len(),
        visible_ms: Percentiles::of(&mut visible),
        ack_ms: Percentiles::of(&mut ack),
        mean_polls: f64::from(polls) / samples.len() as f64,
    })
}

async fn sample(
    client: &reqwest::Client,
    args: &LatencyArgs,
    write_key: &HeaderValue,
    read_key: &HeaderValue,
    probe: &str,
    timeout: Duration,
) -> anyhow::Result<Sample> {
    let body = serde_json::to_vec(&probe_event(probe))?;
    let query = serde_json::to_vec(&probe_query(probe, Utc::now()))?;
    let sent = Instant::now();
    let acked = loop {
        let resp = client
            .post(http::endpoint(&args.url, "/v1/events"))
            .header(AUTHORIZATION, write_key.clone())
            .header(CONTENT_TYPE, "application/json")
            .body(body.clone())
            .send()
            .await
            .context("POST /v1/events failed")?;
        let status = resp.status();
        let text = resp.bytes().await.context("reading the ingest answer")?;
        match status {
            StatusCode::OK => {
                let answer: Value =
                    serde_json::from_slice(&text).context("the ingest answer is not JSON")?;
                if answer.get("accepted").and_then(Value::as_u64) != Some(1) {
                    bail!("the probe event was not accepted: {answer}");
                }
                break Instant::now();
            }
            StatusCode::SERVICE_UNAVAILABLE if sent.elapsed() < timeout => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            _ => bail!(
                "POST /v1/events answered {status}: {}",
                String::from_utf8_lossy(&text)
            ),
        }
    };
    let mut polls = 0;
    loop {
        let (_, answer) = http::query(client, &args.url, read_key, &query).await?;
        polls += 1;
        let count =
            probe_count(&answer).with_context(|| format!("unexpected query answer: {answer}"))?;
        if count >= 1.0 {
            return Ok(Sample {
                ack: acked - sent,
                visible: Some(acked.elapsed()),
                polls,
            });
        }
        if acked.elapsed() > timeout {
            return Ok(Sample {
                ack: acked - sent,
                visible: None,
                polls,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_query_counts_one_probe_around_now() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-11-24T10:00:00Z")
            .expect("time")
            .with_timezone(&Utc);
        let q = probe_query("abc-1", now);
        assert_eq!(q["time_range"]["from"], "2026-11-23T10:00:00Z");
        assert_eq!(q["time_range"]["to"], "2026-11-25T10:00:00Z");
        assert_eq!(
            q["rules"][0]["filters"][0],
            json!(["properties.probe", "eq", "abc-1"])
        );
        let e = probe_event("abc-1");
        assert_eq!(e[0]["properties"]["probe"], "abc-1");
        assert_eq!(e[0]["event"], q["rules"][0]["event"]);
    }

    #[test]
    fn reads_the_count() {
        let answer = json!({"results": {"probe": {"columns": ["value"], "rows": [[1]]}}});
        assert_eq!(probe_count(&answer), Some(1.0));
        let empty = json!({"results": {"probe": {"columns": ["value"], "rows": [[0]]}}});
        assert_eq!(probe_count(&empty), Some(0.0));
        let no_rows = json!({"results": {"probe": {"columns": ["value"], "rows": []}}});
        assert_eq!(probe_count(&no_rows), Some(0.0));
        assert_eq!(probe_count(&json!({})), None);
    }
}
