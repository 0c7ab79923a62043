//! The embedded engine's life cycle: flushes, compaction, restarts, crash debris and read-only views.

use std::sync::Arc;

use serde_json::Value;
use tally_catalog::Catalog;
use tally_core::{EventRecord, ProjectId};
use tally_store::{
    AggregateQuery, EmbeddedStore, EmbeddedStoreConfig, Measure, ProjectBatch, Store,
};

const DAY: i64 = 86_400_000_000;
const T0: i64 = 1_790_000_000_000_000 - 1_790_000_000_000_000 % DAY; // a UTC midnight in 2026

fn records(n: usize, offset: usize) -> Vec<EventRecord> {
    (0..n)
        .map(|i| EventRecord {
            timestamp: T0 + ((offset + i) as i64) * 1_000_000,
            // Ids are remembered by receive time, within the window.
            received_at: chrono::Utc::now().timestamp_micros(),
            event: "e".into(),
            person_id: format!("u{}", i % 3),
            message_id: Some(((offset + i) as u128).to_be_bytes()),
            ..Default::default()
        })
        .collect()
}

fn count_query(project: &ProjectId) -> AggregateQuery {
    AggregateQuery {
        project: project.clone(),
        from: T0 - DAY,
        to: T0 + 2 * DAY,
        timezone: chrono_tz::Tz::UTC,
        filters: vec![],
        bucket: None,
        group_by: vec![],
        measure: Measure::Count,
        limit: None,
    }
}

async fn count(store: &EmbeddedStore, project: &ProjectId) -> u64 {
    let t = store.aggregate(&count_query(project)).await.unwrap();
    match &t.rows[0][0] {
        Value::Number(n) => n.as_u64().unwrap(),
        other => panic!("{other}"),
    }
}

fn open(dir: &std::path::Path) -> (EmbeddedStore, Arc<Catalog>) {
    let catalog = Arc::new(Catalog::open(&dir.join("meta.sqlite")).unwrap());
    let store = EmbeddedStore::open(EmbeddedStoreConfig::new(dir), Arc::clone(&catalog)).unwrap();
    (store, catalog)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flushes_compact_and_survive_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let (store, catalog) = open(dir.path());
    let project = catalog.create_project("p").unwrap().id;
    let day = chrono::DateTime::from_timestamp_micros(T0)
        .unwrap()
        .format("%Y-%m-%d")
        .to_string();

    // Ten flushes of one day: more files than the compaction threshold, merged into one.
    for i in 0..10 {
        store
            .write(vec![ProjectBatch {
                project: project.clone(),
                records: records(10, i * 10),
            }])
            .await
            .unwrap();
        store.flush_now().await.unwrap();
    }
    let files = catalog.files(&project, &day, &day).unwrap();
    assert!(files.len() < 9, "compacted: {} files", files.len());
    assert_eq!(files.iter().map(|f| f.rows).sum::<u64>(), 100);
    assert_eq!(count(&store, &project).await, 100);

    // Duplicates of flushed events are still recognised (the id index outlives the buffer).
    let outcome = store
        .write(vec![ProjectBatch {
            project: project.clone(),
            records: records(10, 95),
        }])
        .await
        .unwrap();
    assert_eq!((outcome.stored, outcome.duplicates), (5, 5));

    // A read-only view sees flushed and buffered events alike.
    let ro =
        EmbeddedStore::open_read_only(EmbeddedStoreConfig::new(dir.path()), Arc::clone(&catalog))
            .unwrap();
    assert_eq!(count(&ro, &project).await, 105);

    // The data directory is locked while a writer has it.
    assert!(
        EmbeddedStore::open(EmbeddedStoreConfig::new(dir.path()), Arc::clone(&catalog)).is_err()
    );

    // Restart without a flush: the 5 buffered events come back from the WAL, once.
    drop(store);
    drop(ro);
    // Debris a crash could leave: a half-written file and a file no flush recorded.
    let debris = dir.path().join("events").join(project.as_str()).join(&day);
    std::fs::write(debris.join("x.parquet.tmp"), b"half").unwrap();
    std::fs::write(debris.join("y.parquet"), b"unrecorded").unwrap();
    let (store, _catalog) = open(dir.path());
    assert_eq!(count(&store, &project).await, 105);
    assert!(!debris.join("x.parquet.tmp").exists() && !debris.join("y.parquet").exists());
    let outcome = store
        .write(vec![ProjectBatch {
            project: project.clone(),
            records: records(3, 100),
        }])
        .await
        .unwrap();
    assert_eq!(
        outcome.duplicates, 3,
        "ids replayed from the WAL are remembered"
    );
    store.flush_now().await.unwrap();
    drop(store);
    let (store, _catalog) = open(dir.path());
    assert_eq!(count(&store, &project).await, 105);
    assert_eq!(store.buffered_rows(), 0);
}

/// Events per person: `(person, count)`, sorted.
async fn per_person(store: &EmbeddedStore, project: &ProjectId) -> Vec<(String, u64)> {
    let mut q = count_query(project);
    q.from = T0 - 10 * DAY;
    q.to = T0 + 10 * DAY;
    q.group_by = vec![tally_store::FieldRef::Column("person_id".into())];
    let t = store.aggregate(&q).await.unwrap();
    let mut out: Vec<(String, u64)> = t
        .rows
        .iter()
        .map(|r| (r[0].as_str().unwrap().to_owned(), r[1].as_u64().unwrap()))
        .collect();
    out.sort();
    out
}

/// `n` events of `person` over three days, message ids from `first`.
fn of(person: &str, n: usize, first: u128) -> Vec<EventRecord> {
    (0..n)
        .map(|i| EventRecord {
            timestamp: T0 + (i as i64 % 3) * DAY + i as i64 * 1_000_000,
            received_at: chrono::Utc::now().timestamp_micros(),
            event: "e".into(),
            person_id: person.into(),
            user_id: Some(person.into()),
            message_id: Some((first + i as u128).to_be_bytes()),
            ..Default::default()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erasure_misses_nothing_while_writes_and_flushes_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let (store, catalog) = open(dir.path());
    let project = catalog.create_project("p").unwrap().id;
    // Many files (some compacted) and a buffer, holding the victim and others.
    let mut next = 0u128;
    for round in 0..12 {
        for person in ["victim", "other"] {
            let records = of(person, 9, next);
            next += 9;
            let batch = ProjectBatch {
                project: project.clone(),
                records,
            };
            store.write(vec![batch]).await.unwrap();
        }
        if round % 2 == 0 {
            store.flush_now().await.unwrap();
        }
    }
    assert_eq!(
        per_person(&store, &project).await,
        [("other".to_owned(), 108), ("victim".to_owned(), 108)]
    );
    // Meanwhile, others write and the buffer is flushed again and again.
    let writer = {
        let (store, project) = (store.clone(), project.clone());
        tokio::spawn(async move {
            for i in 0..30u128 {
                let batch = ProjectBatch {
                    project: project.clone(),
                    records: of("late", 3, 1_000_000 + i * 3),
                };
                store.write(vec![batch]).await.unwrap();
                store.flush_now().await.unwrap();
            }
        })
    };
    let report = store
        .erase_events(&project, &["victim".to_owned()])
        .await
        .unwrap();
    writer.await.unwrap();
    assert_eq!(report.events_removed(), 108, "{report:?}");
    assert_eq!(
        per_person(&store, &project).await,
        [("late".to_owned(), 90), ("other".to_owned(), 108)]
    );
    // And after a restart, the same.
    drop(store);
    let (store, _) = open(dir.path());
    assert_eq!(
        per_person(&store, &project).await,
        [("late".to_owned(), 90), ("other".to_owned(), 108)]
    );
}

/// Queries that differ only in measure and limit are answered with one scan; each answer is
/// what the query alone gives, from the buffer and from Parquet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_sharing_groups_answer_as_each_alone() {
    use tally_store::{FieldRef, Filter, FilterOp};
    let dir = tempfile::tempdir().unwrap();
    let (store, catalog) = open(dir.path());
    let project = catalog.create_project("p").unwrap().id;
    let mut records = Vec::new();
    for (person, n, first) in [("ann", 7, 0), ("bob", 5, 100), ("cy", 3, 200)] {
        let mut r = of(person, n, first);
        for (i, e) in r.iter_mut().enumerate() {
            e.event = if i % 2 == 0 { "view" } else { "buy" }.into();
            e.properties = Some(format!(r#"{{"value": {}}}"#, i * 10));
        }
        records.extend(r);
    }
    store
        .write(vec![ProjectBatch {
            project: project.clone(),
            records,
        }])
        .await
        .unwrap();
    let value = FieldRef::Json {
        column: "properties".into(),
        path: vec!["value".into()],
    };
    let user = |ids: &[&str]| Filter {
        field: FieldRef::Column("user_id".into()),
        op: FilterOp::In(ids.iter().map(|&i| Value::from(i)).collect()),
    };
    let base = AggregateQuery {
        from: T0 - DAY,
        to: T0 + 5 * DAY,
        group_by: vec![FieldRef::Column("event".into())],
        ..count_query(&project)
    };
    let with = |measure: Measure, limit: Option<usize>, filters: Vec<Filter>| AggregateQuery {
        measure,
        limit,
        filters,
        ..base.clone()
    };
    let queries = vec![
        with(Measure::Count, None, vec![]),
        with(Measure::UniquePersons, Some(1), vec![]),
        with(Measure::Percentile(value.clone(), 0.5), None, vec![]),
        with(
            Measure::Sum(value.clone()),
            None,
            vec![user(&["bob", "cy"])],
        ),
        with(Measure::Count, None, vec![user(&["bob", "cy"])]),
        with(Measure::Count, None, vec![user(&["nobody"])]),
    ];
    for flushed in [false, true] {
        if flushed {
            store.flush_now().await.unwrap();
        }
        let together = store.aggregate_many(&queries).await.unwrap();
        assert_eq!(together.len(), queries.len());
        for (q, t) in queries.iter().zip(&together) {
            assert_eq!(t, &store.aggregate(q).await.unwrap(), "{q:?}");
        }
        let rows = |i: usize| together[i].rows.clone();
        assert_eq!(
            rows(0),
            [
                vec![Value::from("view"), 9.into()],
                vec!["buy".into(), 6.into()]
            ]
        );
        // The limit of one query does not cut the others.
        assert_eq!(rows(1).len(), 1);
        assert_eq!(rows(1)[0][1], Value::from(3));
        // bob: 3 views, 2 buys; cy: 2 views, 1 buy.
        assert_eq!(
            rows(4),
            [
                vec![Value::from("view"), 5.into()],
                vec!["buy".into(), 3.into()]
            ]
        );
        assert!(rows(5).is_empty());
    }
}

/// Rewrites a Parquet file without its `person_key` column: the layout before that column.
fn strip_person_key(path: &std::path::Path) {
    use datafusion::arrow::datatypes::Schema;
    use datafusion::parquet::arrow::ArrowWriter;
    use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let file = std::fs::File::open(path).unwrap();
    let batches: Vec<_> = ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let schema = batches[0].schema();
    let keep: Vec<usize> = (0..schema.fields().len())
        .filter(|&i| schema.field(i).name() != "person_key")
        .collect();
    let old = Arc::new(Schema::new(
        keep.iter()
            .map(|&i| schema.field(i).clone())
            .collect::<Vec<_>>(),
    ));
    let mut w = ArrowWriter::try_new(std::fs::File::create(path).unwrap(), old, None).unwrap();
    for b in &batches {
        w.write(&b.project(&keep).unwrap()).unwrap();
    }
    w.close().unwrap();
}

fn has_person_key(path: &std::path::Path) -> bool {
    use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let file = std::fs::File::open(path).unwrap();
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
    builder.schema().column_with_name("person_key").is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_written_before_person_keys_are_rewritten_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let (store, catalog) = open(dir.path());
    let project = catalog.create_project("p").unwrap().id;
    for day in 0..3 {
        let mut recs = records(30, day * 30);
        for r in &mut recs {
            r.timestamp += day as i64 * DAY;
        }
        store
            .write(vec![ProjectBatch {
                project: project.clone(),
                records: recs,
            }])
            .await
            .unwrap();
        store.flush_now().await.unwrap();
    }
    drop(store);
    let old: Vec<_> = catalog.all_files().unwrap();
    assert_eq!(old.len(), 3);
    for f in &old {
        strip_person_key(&dir.path().join(&f.path));
    }
    catalog.set_setting("events_layout", "1").unwrap();

    let (store, catalog) = open(dir.path());
    let new = catalog.all_files().unwrap();
    assert_eq!(new.len(), 3, "one file per day, rewritten");
    for f in &new {
        assert!(has_person_key(&dir.path().join(&f.path)), "{}", f.path);
    }
    for f in &old {
        assert!(!dir.path().join(&f.path).exists(), "{} removed", f.path);
    }
    let mut q = count_query(&project);
    q.to = T0 + 4 * DAY;
    assert_eq!(
        store.aggregate(&q).await.unwrap().rows[0][0],
        Value::from(90)
    );
    q.measure = Measure::UniquePersons;
    assert_eq!(
        store.aggregate(&q).await.unwrap().rows[0][0],
        Value::from(3)
    );
    // Per day, too: the keys are the same in every file.
    q.bucket = Some(tally_core::Interval::Day);
    let per_day = store.aggregate(&q).await.unwrap().rows;
    assert_eq!(per_day.len(), 3);
    assert!(per_day.iter().all(|r| r[1] == 3), "{per_day:?}");
    drop(store);
    // Done once: the next open reads no footers and rewrites nothing.
    let (_store, catalog) = open(dir.path());
    assert_eq!(catalog.all_files().unwrap(), new);
}

/// Counts of all events per day, week or month (and over the whole range) take whole files'
/// row counts from the catalog instead of scanning them; the answers must be those of a scan
/// (forced here by a filter that every event passes), in zones whose midnights fall inside the
/// UTC-day files, across DST changes (Havana's at midnight) and with events still buffered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_from_the_catalog_equal_a_scan() {
    use tally_core::Interval;
    use tally_store::{FieldRef, Filter, FilterOp};
    let dir = tempfile::tempdir().unwrap();
    let (store, catalog) = open(dir.path());
    let project = catalog.create_project("p").unwrap().id;
    let spread = |n: usize, step_s: i64, first: u128| {
        (0..n)
            .map(|i| EventRecord {
                timestamp: T0 + i as i64 * step_s * 1_000_000,
                received_at: chrono::Utc::now().timestamp_micros(),
                event: "e".into(),
                person_id: format!("u{}", i % 5),
                message_id: Some((first + i as u128).to_be_bytes()),
                ..Default::default()
            })
            .collect::<Vec<_>>()
    };
    // 45 days, an event every 37 minutes: one file per UTC day.
    let write = |records| ProjectBatch {
        project: project.clone(),
        records,
    };
    store
        .write(vec![write(spread(1_750, 37 * 60, 0))])
        .await
        .unwrap();
    store.flush_now().await.unwrap();
    // More on the same days, still in the buffer.
    store
        .write(vec![write(spread(300, 3 * 3_600 + 11, 10_000))])
        .await
        .unwrap();
    let all = Filter {
        field: FieldRef::Column("event".into()),
        op: FilterOp::Neq("never".into()),
    };
    for tz in [
        chrono_tz::Tz::UTC,
        chrono_tz::Tz::Europe__Berlin,
        chrono_tz::Tz::America__Havana,
        chrono_tz::Tz::Asia__Kolkata,
    ] {
        for bucket in [
            None,
            Some(Interval::Day),
            Some(Interval::Week),
            Some(Interval::Month),
        ] {
            let q = AggregateQuery {
                from: T0 + 3 * 3_600_000_000,
                to: T0 + 44 * DAY,
                timezone: tz,
                bucket,
                ..count_query(&project)
            };
            let counted = store.aggregate(&q).await.unwrap();
            let scanned = store
                .aggregate(&AggregateQuery {
                    filters: vec![all.clone()],
                    ..q.clone()
                })
                .await
                .unwrap();
            assert_eq!(counted, scanned, "{tz} {bucket:?}");
            let total: u64 = counted
                .rows
                .iter()
                .map(|r| r.last().and_then(Value::as_u64).unwrap())
                .sum();
            assert!(total > 1_500, "{tz} {bucket:?}: {total}");
        }
    }
    // With a limit, the counted rows are cut like scanned ones.
    let q = AggregateQuery {
        bucket: Some(Interval::Day),
        limit: Some(1),
        to: T0 + 44 * DAY,
        ..count_query(&project)
    };
    assert_eq!(store.aggregate(&q).await.unwrap().rows.len(), 44);
}
