//! Columnar encoding and aggregation on the embedded engine.

use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use tally_catalog::Catalog;
use tally_core::{EventRecord, Interval, ProjectId};
use tally_store::schema::records_to_batch;
use tally_store::{
    AggregateQuery, EmbeddedStore, EmbeddedStoreConfig, FieldRef, Measure, ProjectBatch, Store,
};

fn records(n: usize) -> Vec<EventRecord> {
    let start = 1_790_000_000_000_000i64;
    (0..n)
        .map(|i| EventRecord {
            timestamp: start + (i as i64) * 1_000_000,
            received_at: start + (i as i64) * 1_000_000,
            event: ["pageview", "signup", "purchase"][i % 3].to_owned(),
            person_id: format!("u{}", i % 5000),
            user_id: Some(format!("u{}", i % 5000)),
            session_id: (i / 10) as i64,
            path: Some(format!("/p{}", i % 200)),
            browser: Some(["Chrome", "Firefox", "Safari"][i % 3].to_owned()),
            country: Some(["DE", "US", "FR", "JP"][i % 4].to_owned()),
            properties: Some(format!("{{\"value\": {}, \"plan\": \"pro\"}}", i % 500)),
            ..Default::default()
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let recs = records(10_000);
    c.bench_function("records_to_batch 10k", |b| {
        b.iter(|| records_to_batch(&recs).unwrap())
    });

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let catalog = Arc::new(Catalog::open(&dir.path().join("meta.sqlite")).unwrap());
    let project = catalog.create_project("bench").unwrap().id;
    let store = EmbeddedStore::open(EmbeddedStoreConfig::new(dir.path()), catalog).unwrap();
    // `cargo bench` measures a million rows; the test run (`--all-targets`) only checks that the
    // benches work, on a few.
    let rows = if std::env::args().any(|a| a == "--bench") {
        1_000_000
    } else {
        10_000
    };
    rt.block_on(async {
        for chunk in records(rows).chunks(100_000) {
            store
                .write(vec![ProjectBatch {
                    project: project.clone(),
                    records: chunk.to_vec(),
                }])
                .await
                .unwrap();
        }
        store.flush().await.unwrap();
    });
    let q = |measure: Measure, group: Vec<FieldRef>| AggregateQuery {
        project: ProjectId::parse(project.as_str()).unwrap(),
        from: 1_780_000_000_000_000,
        to: 1_800_000_000_000_000,
        timezone: chrono_tz::Tz::UTC,
        filters: vec![],
        bucket: Some(Interval::Day),
        group_by: group,
        measure,
        limit: None,
    };
    let mut g = c.benchmark_group(format!("aggregate {rows} parquet rows"));
    g.sample_size(10);
    g.bench_function("count per day", |b| {
        b.iter(|| {
            rt.block_on(store.aggregate(&q(Measure::Count, vec![])))
                .unwrap()
        })
    });
    g.bench_function("unique persons per day", |b| {
        b.iter(|| {
            rt.block_on(store.aggregate(&q(Measure::UniquePersons, vec![])))
                .unwrap()
        })
    });
    g.bench_function("count per day by browser", |b| {
        b.iter(|| {
            rt.block_on(
                store.aggregate(&q(Measure::Count, vec![FieldRef::Column("browser".into())])),
            )
            .unwrap()
        })
    });
    g.bench_function("sum of a JSON property per day", |b| {
        let m = Measure::Sum(FieldRef::Json {
            column: "properties".into(),
            path: vec!["value".into()],
        });
        b.iter(|| rt.block_on(store.aggregate(&q(m.clone(), vec![]))).unwrap())
    });
    g.finish();

    // The same series answered from rollups (registered rules): time depends on hours × groups,
    // not on events.
    let hour = 3_600_000_000i64;
    let rq = |measure: Measure, group: Vec<FieldRef>| {
        let mut x = q(measure, group);
        x.from -= x.from.rem_euclid(hour);
        x.to -= x.to.rem_euclid(hour);
        x
    };
    let browser = || vec![FieldRef::Column("browser".into())];
    rt.block_on(async {
        for (id, m, g) in [
            ("count", Measure::Count, vec![]),
            ("persons", Measure::UniquePersons, vec![]),
            ("by_browser", Measure::Count, browser()),
        ] {
            store
                .register_rollup(id, tally_store::RollupDef::of(&rq(m, g)))
                .await
                .unwrap();
        }
    });
    let mut g = c.benchmark_group(format!("rollup over {rows} rows"));
    for (name, m, group) in [
        ("count per day", Measure::Count, vec![]),
        ("unique persons per day", Measure::UniquePersons, vec![]),
        ("count per day by browser", Measure::Count, browser()),
    ] {
        let query = rq(m, group);
        assert!(store.aggregate_from_rollup(&query).is_some());
        g.bench_function(name, |b| {
            b.iter(|| store.aggregate_from_rollup(&query).unwrap())
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
