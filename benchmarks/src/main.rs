//! `tally-bench`: Tally's benchmark workload generator and runner.
//!
//! - `generate` writes a deterministic, realistic event stream (gzip NDJSON) for `tally import`
//!   and `ingest`;
//! - `ingest` measures sustained `POST /v1/events` throughput with many requests in flight;
//! - `latency` measures how soon an acknowledged event is visible to `POST /v1/query`;
//! - `queries` times a fixed suite of queries (the same suite `peers_compare.py` runs on
//!   DuckDB and chDB), and rollup answers of saved rules;
//! - `overview` times the web UI's front page (`GET /v1/overview`) for several ranges;
//! - `report` merges results saved with `--json` into Markdown for BENCHMARKS.md.
//!
//! Every subcommand prints a Markdown table fragment at the end. See `benchmarks/README.md`.

mod generate;
mod http;
mod ingest;
mod latency;
mod overview;
mod queries;
mod report;
mod rng;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "tally-bench",
    version,
    about = "Tally's benchmark workload generator and runner"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write a deterministic event stream (NDJSON, gzip when the file ends in .gz).
    Generate(generate::GenerateArgs),
    /// Measure sustained ingest throughput over HTTP.
    Ingest(ingest::IngestArgs),
    /// Measure acknowledgment-to-visible latency.
    Latency(latency::LatencyArgs),
    /// Time the query suite against a server holding generated data.
    Queries(queries::QueriesArgs),
    /// Time the web UI's overview (GET /v1/overview), computed afresh each run.
    Overview(overview::OverviewArgs),
    /// Merge results saved with --json into Markdown tables.
    Report(report::ReportArgs),
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Generate(args) => generate::run(args),
        Command::Ingest(args) => ingest::run(args),
        Command::Latency(args) => latency::run(args),
        Command::Queries(args) => queries::run(args),
        Command::Overview(args) => overview::run(args),
        Command::Report(args) => report::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
