//! Results: each subcommand's outcome as JSON (`--json FILE`) and as a Markdown table fragment
//! for BENCHMARKS.md; `report` merges saved outcomes (including `peers_compare.py --json`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// One subcommand's result, as saved with `--json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum Outcome {
    Generate(GenerateReport),
    Ingest(IngestReport),
    Latency(LatencyReport),
    Queries(QueriesReport),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct GenerateReport {
    pub(crate) file: String,
    pub(crate) events: u64,
    pub(crate) days: u32,
    pub(crate) seed: u64,
    pub(crate) persons: u64,
    pub(crate) most_active_user: String,
    pub(crate) from: String,
    pub(crate) to: String,
    pub(crate) bytes: u64,
    pub(crate) seconds: f64,
    pub(crate) events_per_sec: f64,
    /// Events of each name (`play` is the origin-shaped video event).
    pub(crate) kinds: std::collections::BTreeMap<String, u64>,
}

/// Milliseconds at a few percentiles.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Percentiles {
    pub(crate) p50: f64,
    pub(crate) p99: f64,
    pub(crate) max: f64,
}

impl Percentiles {
    /// Nearest-rank percentiles of `ms` (all zero when empty).
    pub(crate) fn of(ms: &mut [f64]) -> Self {
        if ms.is_empty() {
            return Self::default();
        }
        ms.sort_unstable_by(f64::total_cmp);
        let rank = |p: f64| {
            let i = (p * ms.len() as f64).ceil() as usize;
            ms[i.clamp(1, ms.len()) - 1]
        };
        Self {
            p50: rank(0.50),
            p99: rank(0.99),
            max: ms[ms.len() - 1],
        }
    }
}

/// The median (the mean of the two middle values for an even count), None when empty.
pub(crate) fn median(values: &[f64]) -> Option<f64> {
    let mut v = values.to_vec();
    v.sort_unstable_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => None,
        _ if !n.is_multiple_of(2) => Some(v[n / 2]),
        _ => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct IngestReport {
    pub(crate) url: String,
    pub(crate) file: String,
    /// Events sent (each exactly once, retries aside).
    pub(crate) events: u64,
    pub(crate) requests: u64,
    pub(crate) batch: usize,
    pub(crate) concurrency: usize,
    pub(crate) gzip: bool,
    /// Bytes of request bodies as sent (compressed with `--gzip`).
    pub(crate) body_bytes: u64,
    pub(crate) accepted: u64,
    pub(crate) rejected: u64,
    pub(crate) seconds: f64,
    /// Accepted events per second of wall time.
    pub(crate) events_per_sec: f64,
    /// Latency of the successful requests (send to answer read), in ms.
    pub(crate) latency_ms: Percentiles,
    /// 503 answers, each retried.
    pub(crate) overloaded_503: u64,
    /// Requests that failed otherwise (transport errors, other statuses), retried or not.
    pub(crate) errors: u64,
    /// Batches given up on (never accepted).
    pub(crate) failed_batches: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) first_error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct LatencyReport {
    pub(crate) url: String,
    pub(crate) samples: usize,
    /// From the acknowledgment (200 read) to the answer of the first query that counts the event.
    pub(crate) visible_ms: Percentiles,
    /// The ingest request itself (send to 200), for reference.
    pub(crate) ack_ms: Percentiles,
    /// Queries needed until the event was visible, averaged.
    pub(crate) mean_polls: f64,
    /// Samples that were not visible within the timeout (not in `visible_ms`).
    pub(crate) timeouts: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct QueriesReport {
    /// `tally`, `duckdb` or `chdb`.
    pub(crate) engine: String,
    /// The peer's version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) version: Option<String>,
    /// The server queried, or the file loaded.
    pub(crate) source: String,
    pub(crate) runs: u32,
    pub(crate) from: String,
    pub(crate) to: String,
    /// The user of `one_person`.
    #[serde(default)]
    pub(crate) user: Option<String>,
    /// Peers only: seconds to load the file into a table, and its rows.
    #[serde(default)]
    pub(crate) load_seconds: Option<f64>,
    #[serde(default)]
    pub(crate) events: Option<u64>,
    pub(crate) queries: Vec<QueryTiming>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct QueryTiming {
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) min_ms: Option<f64>,
    #[serde(default)]
    pub(crate) median_ms: Option<f64>,
    /// Rows of the answer (all rules together), to check both engines answer alike.
    #[serde(default)]
    pub(crate) rows: Option<u64>,
    /// The sum of the `value` column (all rules, nulls skipped): the same check.
    #[serde(default)]
    pub(crate) value_sum: Option<f64>,
    #[serde(default)]
    pub(crate) error: Option<String>,
}

/// Prints the outcome's Markdown table and, with `json`, saves it.
pub(crate) fn emit(outcome: &Outcome, json: Option<&Path>) -> anyhow::Result<()> {
    if let Some(path) = json {
        let text = serde_json::to_string_pretty(outcome)?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    println!("{}", markdown(outcome));
    Ok(())
}

#[derive(Debug, clap::Args)]
pub(crate) struct ReportArgs {
    /// JSON files written with `--json` by the other subcommands or by `peers_compare.py`.
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

pub(crate) fn run(args: ReportArgs) -> anyhow::Result<()> {
    let mut outcomes = Vec::new();
    for path in &args.files {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let outcome: Outcome = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a tally-bench result", path.display()))?;
        outcomes.push(outcome);
    }
    println!("{}", merged(&outcomes));
    Ok(())
}

/// Every outcome's table, then Tally against the peers (DuckDB, chDB) that ran the query suite.
pub(crate) fn merged(outcomes: &[Outcome]) -> String {
    let mut out = String::new();
    for o in outcomes {
        out.push_str(&markdown(o));
        out.push('\n');
    }
    let suite = |engine: &str| {
        outcomes.iter().find_map(|o| match o {
            Outcome::Queries(q) if q.engine == engine => Some(q),
            _ => None,
        })
    };
    if let Some(t) = suite("tally") {
        let peers: Vec<&QueriesReport> = ["duckdb", "chdb"].into_iter().filter_map(suite).collect();
        if !peers.is_empty() {
            out.push_str(&comparison(t, &peers));
        }
    }
    out
}

pub(crate) fn markdown(outcome: &Outcome) -> String {
    let mut s = String::new();
    // Writing to a String cannot fail.
    let _ = match outcome {
        Outcome::Generate(g) => write_generate(&mut s, g),
        Outcome::Ingest(i) => write_ingest(&mut s, i),
        Outcome::Latency(l) => write_latency(&mut s, l),
        Outcome::Queries(q) => write_queries(&mut s, q),
    };
    s
}

fn write_generate(s: &mut String, g: &GenerateReport) -> std::fmt::Result {
    writeln!(s, "#### Workload `{}`\n", g.file)?;
    writeln!(
        s,
        "| events | days | seed | persons | file | time | events/s |"
    )?;
    writeln!(s, "|---:|---:|---:|---:|---:|---:|---:|")?;
    writeln!(
        s,
        "| {} | {} | {} | {} | {:.1} MB | {:.2} s | {} |",
        thousands(g.events),
        g.days,
        g.seed,
        thousands(g.persons),
        g.bytes as f64 / 1e6,
        g.seconds,
        thousands(g.events_per_sec.round() as u64),
    )?;
    let mix: Vec<String> = g
        .kinds
        .iter()
        .map(|(k, n)| format!("{k} {:.1}%", 100.0 * *n as f64 / g.events.max(1) as f64))
        .collect();
    writeln!(
        s,
        "\nRange {} to {}; events: {}; busiest user `{}`.",
        g.from,
        g.to,
        mix.join(", "),
        g.most_active_user
    )
}

fn write_ingest(s: &mut String, i: &IngestReport) -> std::fmt::Result {
    writeln!(
        s,
        "#### Ingest over HTTP (batches of {}, {} in flight, {})\n",
        i.batch,
        i.concurrency,
        if i.gzip {
            "gzip bodies"
        } else {
            "plain JSON bodies"
        }
    )?;
    writeln!(s, "| metric | value |")?;
    writeln!(s, "|---|---:|")?;
    writeln!(s, "| events sent | {} |", thousands(i.events))?;
    writeln!(
        s,
        "| accepted / rejected | {} / {} |",
        thousands(i.accepted),
        thousands(i.rejected)
    )?;
    writeln!(s, "| wall time | {:.2} s |", i.seconds)?;
    writeln!(
        s,
        "| **accepted events/s** | **{}** |",
        thousands(i.events_per_sec.round() as u64)
    )?;
    writeln!(
        s,
        "| request latency p50 / p99 / max | {:.1} / {:.1} / {:.1} ms |",
        i.latency_ms.p50, i.latency_ms.p99, i.latency_ms.max
    )?;
    writeln!(
        s,
        "| requests / body MB sent | {} / {:.1} MB |",
        thousands(i.requests),
        i.body_bytes as f64 / 1e6
    )?;
    writeln!(
        s,
        "| 503 answers (retried) | {} |",
        thousands(i.overloaded_503)
    )?;
    writeln!(
        s,
        "| errors / failed batches | {} / {} |",
        i.errors, i.failed_batches
    )?;
    if let Some(e) = &i.first_error {
        writeln!(s, "\nFirst error: {}", e.replace('\n', " "))?;
    }
    Ok(())
}

fn write_latency(s: &mut String, l: &LatencyReport) -> std::fmt::Result {
    writeln!(
        s,
        "#### Acknowledgment to visible ({} samples)\n",
        l.samples
    )?;
    writeln!(s, "| measure | p50 | p99 | max |")?;
    writeln!(s, "|---|---:|---:|---:|")?;
    writeln!(
        s,
        "| ack → visible in `/v1/query` | {:.1} ms | {:.1} ms | {:.1} ms |",
        l.visible_ms.p50, l.visible_ms.p99, l.visible_ms.max
    )?;
    writeln!(
        s,
        "| ingest request (send → 200) | {:.1} ms | {:.1} ms | {:.1} ms |",
        l.ack_ms.p50, l.ack_ms.p99, l.ack_ms.max
    )?;
    writeln!(
        s,
        "\nQueries until visible: {:.2} on average; not visible within the timeout: {}.",
        l.mean_polls, l.timeouts
    )
}

fn write_queries(s: &mut String, q: &QueriesReport) -> std::fmt::Result {
    writeln!(
        s,
        "#### Queries on {} ({} runs after a warm-up, {} to {})\n",
        engine_name(&q.engine),
        q.runs,
        q.from,
        q.to
    )?;
    if let (Some(secs), Some(n)) = (q.load_seconds, q.events) {
        writeln!(s, "Loaded {} events in {:.2} s.\n", thousands(n), secs)?;
    }
    writeln!(s, "| query | min ms | median ms | rows | Σ value |")?;
    writeln!(s, "|---|---:|---:|---:|---:|")?;
    for t in &q.queries {
        match &t.error {
            Some(e) => writeln!(
                s,
                "| `{}` | error: {} | | | |",
                t.name,
                e.replace(['\n', '|'], " ")
            )?,
            None => writeln!(
                s,
                "| `{}` | {} | {} | {} | {} |",
                t.name,
                opt_ms(t.min_ms),
                opt_ms(t.median_ms),
                t.rows.map(thousands).unwrap_or_default(),
                t.value_sum.map(number).unwrap_or_default(),
            )?,
        }
    }
    if let Some(u) = &q.user {
        writeln!(s, "\n`one_person` is user `{u}`.")?;
    }
    Ok(())
}

/// Rollup answers must take under this many milliseconds.
const ROLLUP_TARGET_MS: f64 = 10.0;

fn comparison(tally: &QueriesReport, peers: &[&QueriesReport]) -> String {
    let mut s = String::new();
    let _ = (|| -> std::fmt::Result {
        let names: Vec<&str> = peers.iter().map(|p| engine_name(&p.engine)).collect();
        writeln!(
            s,
            "#### Tally against {} (median ms)\n",
            names.join(" and ")
        )?;
        writeln!(
            s,
            "| query | Tally | {} | Tally / fastest peer | same answer |",
            names.join(" | ")
        )?;
        writeln!(s, "|---|---:|{}---:|:---:|", "---:|".repeat(peers.len()))?;
        let mut rollups = Vec::new();
        for t in &tally.queries {
            let found: Vec<Option<&QueryTiming>> = peers
                .iter()
                .map(|p| p.queries.iter().find(|d| d.name == t.name))
                .collect();
            if found.iter().all(Option::is_none) {
                rollups.push(t);
                continue;
            }
            let fastest = found
                .iter()
                .filter_map(|d| d.and_then(|d| d.median_ms))
                .reduce(f64::min);
            let ratio = match (t.median_ms, fastest) {
                (Some(a), Some(b)) if b > 0.0 => format!("{:.1}×", a / b),
                _ => String::new(),
            };
            let sums: Vec<f64> = found
                .iter()
                .filter_map(|d| d.and_then(|d| d.value_sum))
                .collect();
            let same = match t.value_sum {
                Some(a) if !sums.is_empty() && sums.iter().all(|b| close(a, *b)) => "yes",
                Some(_) if !sums.is_empty() => "**no**",
                _ => "",
            };
            let peer_ms: Vec<String> = found
                .iter()
                .map(|d| opt_ms(d.and_then(|d| d.median_ms)))
                .collect();
            writeln!(
                s,
                "| `{}` | {} | {} | {} | {} |",
                t.name,
                opt_ms(t.median_ms),
                peer_ms.join(" | "),
                ratio,
                same
            )?;
        }
        if !rollups.is_empty() {
            writeln!(
                s,
                "\n#### Answered from rollups (median ms, target < {ROLLUP_TARGET_MS} ms)\n"
            )?;
            writeln!(s, "| query | Tally | target met |")?;
            writeln!(s, "|---|---:|:---:|")?;
            for t in rollups {
                let met = match t.median_ms {
                    Some(m) if m < ROLLUP_TARGET_MS => "yes",
                    Some(_) => "**no**",
                    None => "",
                };
                writeln!(s, "| `{}` | {} | {met} |", t.name, opt_ms(t.median_ms))?;
            }
        }
        Ok(())
    })();
    s
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-6 * a.abs().max(b.abs()).max(1.0)
}

fn engine_name(engine: &str) -> &str {
    match engine {
        "tally" => "Tally",
        "duckdb" => "DuckDB",
        "chdb" => "chDB",
        other => other,
    }
}

fn opt_ms(ms: Option<f64>) -> String {
    match ms {
        Some(v) if v >= 100.0 => format!("{v:.0}"),
        Some(v) => format!("{v:.1}"),
        None => String::new(),
    }
}

/// An integer when it is one, else two decimals.
fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        thousands_signed(v as i64)
    } else {
        format!("{v:.2}")
    }
}

fn thousands_signed(v: i64) -> String {
    if v < 0 {
        format!("-{}", thousands(v.unsigned_abs()))
    } else {
        thousands(v as u64)
    }
}

/// `1234567` → `1,234,567`.
pub(crate) fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let mut v: Vec<f64> = (1..=100).map(f64::from).collect();
        v.reverse();
        let p = Percentiles::of(&mut v);
        assert_eq!((p.p50, p.p99, p.max), (50.0, 99.0, 100.0));
        let p = Percentiles::of(&mut [7.0]);
        assert_eq!((p.p50, p.p99, p.max), (7.0, 7.0, 7.0));
        assert_eq!(Percentiles::of(&mut []), Percentiles::default());
    }

    #[test]
    fn medians() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1234567), "1,234,567");
        assert_eq!(number(-1234.0), "-1,234");
        assert_eq!(number(2.5), "2.50");
    }

    #[test]
    fn outcomes_round_trip_and_merge() {
        let q = |engine: &str, median: f64, sum: f64| QueriesReport {
            engine: engine.into(),
            source: "x".into(),
            runs: 5,
            from: "a".into(),
            to: "b".into(),
            user: None,
            version: None,
            load_seconds: None,
            events: None,
            queries: vec![QueryTiming {
                name: "events_per_day".into(),
                min_ms: Some(median),
                median_ms: Some(median),
                rows: Some(90),
                value_sum: Some(sum),
                error: None,
            }],
        };
        let outcomes = vec![
            Outcome::Queries(q("tally", 20.0, 1000.0)),
            Outcome::Queries(q("duckdb", 10.0, 1000.0)),
            Outcome::Queries(q("chdb", 8.0, 1000.0)),
        ];
        let text = serde_json::to_string(&outcomes[0]).expect("json");
        assert!(text.contains("\"kind\":\"queries\""), "{text}");
        let back: Outcome = serde_json::from_str(&text).expect("parse");
        assert!(matches!(back, Outcome::Queries(ref r) if r.engine == "tally"));
        let md = merged(&outcomes);
        assert!(
            md.contains("| `events_per_day` | 20.0 | 10.0 | 8.0 | 2.5× | yes |"),
            "{md}"
        );
    }

    #[test]
    fn reads_what_peers_compare_writes() {
        // The shape `peers_compare.py --json` writes.
        let text = r#"{"kind": "queries", "engine": "duckdb", "source": "events.ndjson.gz",
            "runs": 5, "from": "2026-08-22T00:00:00Z", "to": "2026-11-20T00:00:00Z",
            "user": "u_1", "load_seconds": 1.5, "events": 1000,
            "queries": [{"name": "events_per_day", "min_ms": 1.0, "median_ms": 1.2, "rows": 90,
                         "value_sum": 1000.0, "error": null}]}"#;
        let o: Outcome = serde_json::from_str(text).expect("parse");
        assert!(markdown(&o).contains("Loaded 1,000 events"));
    }
}
