//! `overview`: how long the web UI's front page takes to load, as `GET /v1/overview` (the figures
//! the page shows; its HTML, script and styles are small static files).
//!
//! The server keeps a computed overview for 2 seconds, so that many open pages cost one
//! computation; each timed run waits longer than that first, so every run computes the overview
//! from the stored events. The overview's ranges end now, so the data must end about now too:
//! generate it with `--end` set to the current hour.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::http;
use crate::report::median;

/// Longer than the server's overview cache (2 s).
const COLD: Duration = Duration::from_millis(2200);

#[derive(Debug, clap::Args)]
pub(crate) struct OverviewArgs {
    /// Base URL of the server.
    #[arg(long, env = "TALLY_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// The project's read key.
    #[arg(long, env = "TALLY_READ_KEY")]
    key: String,
    /// The overview's ranges to time (repeatable).
    #[arg(long, default_values_t = ["today".to_owned(), "past_7_days".to_owned(), "past_30_days".to_owned(), "past_90_days".to_owned()])]
    range: Vec<String>,
    /// Timed runs of each range, after one warm-up run.
    #[arg(long, default_value_t = 5)]
    runs: u32,
    /// The zone of "today" and "this week".
    #[arg(long, default_value = "UTC")]
    timezone: String,
    /// Also write the result as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct OverviewTiming {
    pub(crate) range: String,
    pub(crate) min_ms: f64,
    pub(crate) median_ms: f64,
    /// Events in the range, as the overview counted them.
    pub(crate) events: u64,
    pub(crate) persons: u64,
}

pub(crate) fn run(args: OverviewArgs) -> anyhow::Result<()> {
    if args.runs == 0 {
        bail!("--runs must be at least 1");
    }
    let rt = http::runtime(1)?;
    let timings = rt.block_on(async {
        let client = http::client(1)?;
        http::check_health(&client, &args.url).await?;
        let key = http::bearer(&args.key)?;
        let mut timings = Vec::new();
        for range in &args.range {
            let url = http::endpoint(
                &args.url,
                &format!("/v1/overview?range={range}&timezone={}", args.timezone),
            );
            let mut ms = Vec::new();
            let mut last = Value::Null;
            for run in 0..=args.runs {
                tokio::time::sleep(COLD).await;
                let started = Instant::now();
                let resp = client
                    .get(&url)
                    .header(reqwest::header::AUTHORIZATION, key.clone())
                    .send()
                    .await
                    .with_context(|| format!("GET {url}"))?;
                let status = resp.status();
                let body = resp.bytes().await?;
                let elapsed = started.elapsed();
                if !status.is_success() {
                    bail!(
                        "GET {url} answered {status}: {}",
                        String::from_utf8_lossy(&body)
                    );
                }
                if run > 0 {
                    ms.push(elapsed.as_secs_f64() * 1e3);
                }
                last = serde_json::from_slice(&body)?;
            }
            let timing = OverviewTiming {
                range: range.clone(),
                min_ms: ms.iter().copied().fold(f64::INFINITY, f64::min),
                median_ms: median(&ms).unwrap_or(f64::NAN),
                events: last["range"]["events"].as_u64().unwrap_or(0),
                persons: last["range"]["persons"].as_u64().unwrap_or(0),
            };
            eprintln!(
                "  {range}: median {:.1} ms over {} events",
                timing.median_ms, timing.events
            );
            timings.push(timing);
        }
        anyhow::Ok(timings)
    })?;
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&timings)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    println!("| overview range | events in range | persons | median ms | min ms |");
    println!("|---|---:|---:|---:|---:|");
    for t in &timings {
        println!(
            "| `{}` | {} | {} | {:.1} | {:.1} |",
            t.range, t.events, t.persons, t.median_ms, t.min_ms
        );
    }
    Ok(())
}
