//! Rollups answer exactly what the raw events answer: a property test over random streams with
//! late events, flushes and restarts, plus the rebuild-from-storage path.

use std::sync::Arc;

use proptest::prelude::*;
use tally_catalog::Catalog;
use tally_core::{EventRecord, Interval, ProjectId};
use tally_store::{
    AggregateQuery, EmbeddedStore, EmbeddedStoreConfig, FieldRef, Filter, FilterOp, Measure,
    ProjectBatch, RollupDef, Store,
};

const HOUR: i64 = 3_600_000_000;
const DAY: i64 = 24 * HOUR;
const T0: i64 = 1_790_000_000_000_000 - 1_790_000_000_000_000 % DAY;

#[derive(Debug, Clone)]
enum Op {
    /// Events as (hour offset from T0 — any order, so late events happen —, minute, event,
    /// plan, value, person).
    Write(Vec<(i64, i64, u8, u8, Option<i8>, u8)>),
    Flush,
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    let event = (
        0i64..72,
        0i64..60,
        0u8..2,
        0u8..3,
        proptest::option::of(-5i8..50),
        0u8..40,
    );
    prop_oneof![
        6 => proptest::collection::vec(event, 1..40).prop_map(Op::Write),
        1 => Just(Op::Flush),
        1 => Just(Op::Restart),
    ]
}

fn record(e: &(i64, i64, u8, u8, Option<i8>, u8)) -> EventRecord {
    let (hour, minute, event, plan, value, person) = *e;
    let plan = ["pro", "free", ""][plan as usize];
    let props = if plan.is_empty() {
        "{}".to_owned()
    } else {
        format!(r#"{{"plan":"{plan}"}}"#)
    };
    EventRecord {
        timestamp: T0 + hour * HOUR + minute * 60_000_000,
        received_at: chrono::Utc::now().timestamp_micros(),
        event: ["view", "buy"][event as usize].into(),
        value: value.map(f64::from),
        person_id: format!("p{person}"),
        properties: Some(props),
        ..Default::default()
    }
}

fn defs(project: &ProjectId) -> Vec<(String, RollupDef)> {
    let plan = FieldRef::Json {
        column: "properties".into(),
        path: vec!["plan".into()],
    };
    let value = FieldRef::Column("value".into());
    let buy = Filter {
        field: FieldRef::Column("event".into()),
        op: FilterOp::Eq("buy".into()),
    };
    let not_free = Filter {
        field: plan.clone(),
        op: FilterOp::Neq("free".into()),
    };
    let d = |filters: Vec<Filter>, group_by: Vec<FieldRef>, measure: Measure| RollupDef {
        project: project.clone(),
        filters,
        group_by,
        measure,
    };
    vec![
        ("count".into(), d(vec![], vec![], Measure::Count)),
        (
            "buy_by_plan".into(),
            d(vec![buy.clone()], vec![plan.clone()], Measure::Count),
        ),
        (
            "sum".into(),
            d(vec![not_free], vec![], Measure::Sum(value.clone())),
        ),
        (
            "avg_by_plan".into(),
            d(vec![], vec![plan.clone()], Measure::Avg(value.clone())),
        ),
        (
            "min".into(),
            d(vec![buy], vec![], Measure::Min(value.clone())),
        ),
        (
            "max_by_plan".into(),
            d(vec![], vec![plan.clone()], Measure::Max(value)),
        ),
        ("persons".into(), d(vec![], vec![], Measure::UniquePersons)),
        (
            "persons_by_plan".into(),
            d(vec![], vec![plan], Measure::UniquePersons),
        ),
    ]
}

fn queries(def: &RollupDef) -> Vec<AggregateQuery> {
    let mut out = Vec::new();
    let shapes = [
        (T0, T0 + 3 * DAY, None, chrono_tz::Tz::UTC),
        (T0, T0 + 3 * DAY, Some(Interval::Hour), chrono_tz::Tz::UTC),
        (
            T0 + 5 * HOUR,
            T0 + 50 * HOUR,
            Some(Interval::Day),
            chrono_tz::Tz::UTC,
        ),
        (
            T0 - DAY,
            T0 + 4 * DAY,
            Some(Interval::Day),
            chrono_tz::Europe::Berlin,
        ),
        (
            T0,
            T0 + 3 * DAY,
            Some(Interval::Week),
            chrono_tz::America::New_York,
        ),
    ];
    for (from, to, bucket, timezone) in shapes {
        out.push(AggregateQuery {
            project: def.project.clone(),
            from,
            to,
            timezone,
            filters: def.filters.clone(),
            bucket,
            group_by: def.group_by.clone(),
            measure: def.measure.clone(),
            limit: None,
        });
    }
    out
}

fn open(dir: &std::path::Path) -> (EmbeddedStore, Arc<Catalog>) {
    let catalog = Arc::new(Catalog::open(&dir.join("meta.sqlite")).unwrap());
    let store = EmbeddedStore::open(EmbeddedStoreConfig::new(dir), Arc::clone(&catalog)).unwrap();
    (store, catalog)
}

async fn register_all(store: &EmbeddedStore, project: &ProjectId) {
    for (id, def) in defs(project) {
        store.register_rollup(&id, def).await.unwrap();
    }
}

/// Every query of every rollup gives the raw answer. (Sums of whole numbers are exact in f64,
/// and fewer than 128 persons are counted exactly by the sketch.)
async fn check(store: &EmbeddedStore, project: &ProjectId) -> Result<(), TestCaseError> {
    for (id, def) in defs(project) {
        for q in queries(&def) {
            let raw = store.aggregate(&q).await.unwrap();
            let rolled = store.aggregate_from_rollup(&q);
            let Some(rolled) = rolled else {
                // Only zones whose buckets fall on whole hours are answered: all of these are.
                return Err(TestCaseError::fail(format!(
                    "{id}: no rollup answer for {q:?}"
                )));
            };
            prop_assert_eq!(&rolled, &raw, "rollup {} query {:?}", id, q);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn rollups_equal_raw_events(ops in proptest::collection::vec(op(), 1..12)) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let (mut store, catalog) = open(dir.path());
            let project = catalog.create_project("p").unwrap().id;
            register_all(&store, &project).await;
            for op in &ops {
                match op {
                    Op::Write(events) => {
                        store.write(vec![ProjectBatch {
                            project: project.clone(),
                            records: events.iter().map(record).collect(),
                        }]).await.unwrap();
                    }
                    Op::Flush => { store.flush_now().await.unwrap(); }
                    Op::Restart => {
                        drop(store);
                        store = open(dir.path()).0;
                        register_all(&store, &project).await;
                    }
                }
                check(&store, &project).await?;
            }
            // A rollup registered now is built from storage and agrees as well.
            for (id, def) in defs(&project) {
                store.register_rollup(&format!("{id}_rebuilt"), def).await.unwrap();
            }
            check(&store, &project).await?;
            Ok::<(), TestCaseError>(())
        })?;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_is_reused_and_stale_one_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let (store, catalog) = open(dir.path());
    let project = catalog.create_project("p").unwrap().id;
    register_all(&store, &project).await;
    let events: Vec<_> = (0..50)
        .map(|i| {
            (
                i % 30,
                i,
                (i % 2) as u8,
                (i % 3) as u8,
                Some(i as i8),
                (i % 7) as u8,
            )
        })
        .collect();
    store
        .write(vec![ProjectBatch {
            project: project.clone(),
            records: events.iter().map(record).collect(),
        }])
        .await
        .unwrap();
    store.flush_now().await.unwrap();
    assert!(
        dir.path()
            .join("rollups")
            .join(project.as_str())
            .read_dir()
            .unwrap()
            .count()
            >= 8
    );
    drop(store);

    // Restart: the snapshot matches the watermark and is used.
    let (store, _) = open(dir.path());
    register_all(&store, &project).await;
    check(&store, &project).await.unwrap();
    assert_eq!(
        store.rollup_status(&project, "count").unwrap().state,
        "ready"
    );

    // A rollup the query does not match (other filters) answers nothing.
    let mut q = queries(&defs(&project)[0].1).remove(0);
    q.filters.push(Filter {
        field: FieldRef::Column("event".into()),
        op: FilterOp::Eq("nope".into()),
    });
    assert!(store.aggregate_from_rollup(&q).is_none());

    // Ranges or buckets off whole hours are left to the raw events.
    let mut q = queries(&defs(&project)[0].1).remove(0);
    q.from += 60_000_000;
    assert!(store.aggregate_from_rollup(&q).is_none());
    let mut q = queries(&defs(&project)[0].1).remove(0);
    q.bucket = Some(Interval::Day);
    q.timezone = chrono_tz::Asia::Kolkata;
    assert!(store.aggregate_from_rollup(&q).is_none());

    // Dropping forgets it and deletes its snapshot.
    store.drop_rollup(&project, "count").unwrap();
    assert!(store.rollup_status(&project, "count").is_none());
    assert!(
        store
            .aggregate_from_rollup(&queries(&defs(&project)[0].1)[0])
            .is_none()
    );
}
