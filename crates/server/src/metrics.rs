//! `GET /metrics` in the Prometheus text format.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use crate::state::AppState;

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) accepted: AtomicU64,
    pub(crate) rejected: AtomicU64,
    pub(crate) overloaded: AtomicU64,
}

pub(crate) async fn render(State(state): State<AppState>) -> impl IntoResponse {
    let s = &state.inner;
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    };
    metric(
        "tally_events_accepted_total",
        "counter",
        "Events accepted by ingest.",
        s.counters.accepted.load(Ordering::Relaxed),
    );
    metric(
        "tally_events_rejected_total",
        "counter",
        "Events rejected by validation.",
        s.counters.rejected.load(Ordering::Relaxed),
    );
    metric(
        "tally_ingest_overloaded_total",
        "counter",
        "Ingest requests answered 503.",
        s.counters.overloaded.load(Ordering::Relaxed),
    );
    metric(
        "tally_queue_events",
        "gauge",
        "Events waiting for the WAL.",
        s.manager.queued_events() as u64,
    );
    metric(
        "tally_wal_group_commits_total",
        "counter",
        "Group commits (one fsync each).",
        s.manager.stats().group_writes.load(Ordering::Relaxed),
    );
    metric(
        "tally_buffer_rows",
        "gauge",
        "Rows in memory, not yet in Parquet.",
        s.store.buffered_rows() as u64,
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}
