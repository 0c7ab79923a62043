//! Golden query cases: `tests/golden/*.json` at the repository root, one case per file (input
//! events, a query, the exact expected results). Each case runs on the embedded engine twice:
//! from the in-memory buffer, then again after a flush to Parquet. A case's `late_events` are
//! processed and written after the first events were flushed to Parquet, so the first run reads
//! both.

mod common;

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::Value;
use tally_catalog::Catalog;
use tally_process::{EventProcessor, ProcessorConfig, ProjectSchemas};
use tally_query::{Aggregator, QueryRequest};
use tally_store::{EmbeddedStore, EmbeddedStoreConfig, ProjectBatch, Store};

fn cases() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/golden");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/golden exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    files
}

async fn run_case(path: &PathBuf) -> Result<(), String> {
    let case: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let catalog = Arc::new(Catalog::open(&dir.path().join("meta.sqlite")).unwrap());
    let project = catalog.create_project("golden").unwrap().id;
    let store = EmbeddedStore::open(EmbeddedStoreConfig::new(dir.path()), catalog).unwrap();
    let processor = EventProcessor::new(ProcessorConfig::default());
    let received = tally_core::time::parse_rfc3339("2026-11-24T00:00:00Z").unwrap();
    let write = |key: &'static str| {
        let (store, processor, project, case) = (&store, &processor, &project, &case);
        async move {
            let mut records = Vec::new();
            let events = case[key].as_array().cloned().unwrap_or_default();
            for (i, e) in events.into_iter().enumerate() {
                let ev = tally_collect::native::event_from_value(e)
                    .map_err(|e| format!("{key}[{i}]: {e}"))?;
                records.extend(
                    processor
                        .process(project, &ProjectSchemas::default(), ev, received)
                        .map_err(|e| format!("{key}[{i}]: {e}"))?,
                );
            }
            store
                .write(vec![ProjectBatch {
                    project: project.clone(),
                    records,
                }])
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
    };
    write("events").await?;
    if case.get("late_events").is_some() {
        // The first events are in Parquet (their buckets closed) before the late ones arrive.
        store.flush_now().await.map_err(|e| e.to_string())?;
        write("late_events").await?;
    }
    let request: QueryRequest =
        serde_json::from_value(case["query"].clone()).map_err(|e| e.to_string())?;
    let aggregator = Aggregator::new(Arc::new(store.clone()));
    for phase in ["buffer", "parquet"] {
        if phase == "parquet" {
            store.flush_now().await.map_err(|e| e.to_string())?;
            assert_eq!(store.buffered_rows(), 0);
        }
        let got = aggregator
            .run(&project, &request)
            .await
            .map_err(|e| format!("{phase}: {e}"))?;
        let got = serde_json::to_value(&got.results).unwrap();
        if !common::same_json(&got, &case["expected"]) {
            return Err(format!(
                "{phase}:\n got      {got}\n expected {}",
                case["expected"]
            ));
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn golden_cases() {
    let mut failures = Vec::new();
    for path in cases() {
        if let Err(e) = run_case(&path).await {
            failures.push(format!(
                "{}: {e}",
                path.file_name().unwrap().to_string_lossy()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} golden case(s) failed:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}
