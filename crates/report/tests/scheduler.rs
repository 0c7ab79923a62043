//! The `ReportScheduler` driven through a `ManualClock`: slots across DST changes in the
//! report's zone, catch-up after downtime, and a restart in the middle of a delivery.

use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};
use tally_catalog::Catalog;
use tally_core::ProjectId;
use tally_core::time::parse_rfc3339;
use tally_report::{
    Deliverer, DeliveryConfig, ManualClock, ReportGenerator, ReportScheduler, SchedulerConfig,
    create_report,
};
use tally_store::{EmbeddedStore, EmbeddedStoreConfig};
use tally_viz::ChartGenerator;

fn at(s: &str) -> DateTime<Utc> {
    parse_rfc3339(s).unwrap()
}

struct World {
    _dir: tempfile::TempDir,
    catalog: Arc<Catalog>,
    store: EmbeddedStore,
    project: ProjectId,
    report_dir: std::path::PathBuf,
    clock: ManualClock,
}

impl World {
    fn new(start: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let catalog = Arc::new(Catalog::open(&dir.path().join("meta.sqlite")).unwrap());
        let store = EmbeddedStore::open(
            EmbeddedStoreConfig::new(dir.path().join("data")),
            Arc::clone(&catalog),
        )
        .unwrap();
        let project = catalog.create_project("shop").unwrap().id;
        let report_dir = dir.path().join("reports");
        Self {
            _dir: dir,
            catalog,
            store,
            project,
            report_dir,
            clock: ManualClock::new(at(start)),
        }
    }

    /// A scheduler over the same catalog: a fresh one is what a restart gives.
    fn scheduler(&self) -> ReportScheduler {
        ReportScheduler::new(
            Arc::clone(&self.catalog),
            ReportGenerator::new(Arc::new(self.store.clone())),
            Deliverer::new(
                DeliveryConfig {
                    report_dir: self.report_dir.clone(),
                    smtp: None,
                },
                ChartGenerator::new(),
            ),
            Arc::new(self.clock.clone()),
            SchedulerConfig {
                retry_base: std::time::Duration::from_secs(60),
                ..SchedulerConfig::default()
            },
        )
    }

    fn report(&self, cron: &str, catch_up: &str) -> String {
        let def = json!({
            "title": "Weekly", "time_range": "last_7_days", "timezone": "Europe/Berlin",
            "sections": [{"title": "Views", "query": {"event": "pageview"}, "display": "number"}],
            "schedule": {"cron": cron, "catch_up": catch_up},
            "deliver": [{"type": "directory", "path": "out"}],
        });
        create_report(&self.catalog, &self.project, def, self.clock.now_utc())
            .unwrap()
            .id
    }

    /// (slot, trigger, status) of every run, oldest first.
    fn runs(&self, id: &str) -> Vec<(String, String, String)> {
        let mut runs: Vec<_> = self
            .catalog
            .runs(id, 1000)
            .unwrap()
            .into_iter()
            .map(|r| {
                let slot = DateTime::from_timestamp_micros(r.slot.unwrap()).unwrap();
                (tally_core::time::format_rfc3339(slot), r.trigger, r.status)
            })
            .collect();
        runs.reverse();
        runs
    }
}

trait Now {
    fn now_utc(&self) -> DateTime<Utc>;
}
impl Now for ManualClock {
    fn now_utc(&self) -> DateTime<Utc> {
        tally_report::Clock::now(self)
    }
}

async fn run_until(world: &World, s: &ReportScheduler, until: &str, step: Duration) {
    while world.clock.now_utc() < at(until) {
        world.clock.advance(step);
        s.tick().await.unwrap();
    }
}

fn scheduled(slots: &[&str]) -> Vec<(String, String, String)> {
    slots
        .iter()
        .map(|s| (s.to_string(), "schedule".to_owned(), "succeeded".to_owned()))
        .collect()
}

#[tokio::test]
async fn monday_nine_in_berlin_across_the_spring_change() {
    let w = World::new("2027-03-14T12:00:00Z");
    let id = w.report("0 9 * * 1", "run_once");
    let s = w.scheduler();
    run_until(&w, &s, "2027-04-06T00:00:00Z", Duration::minutes(20)).await;
    // 09:00 in Berlin is 08:00 UTC before 2027-03-28 and 07:00 UTC after.
    assert_eq!(
        w.runs(&id),
        scheduled(&[
            "2027-03-15T08:00:00Z",
            "2027-03-22T08:00:00Z",
            "2027-03-29T07:00:00Z",
            "2027-04-05T07:00:00Z"
        ])
    );
    // Each run went to its own folder, named for its slot, with the report's files.
    let folder = w
        .report_dir
        .join("out")
        .join(&id)
        .join("2027-03-29T07-00-00Z");
    let json: Value =
        serde_json::from_slice(&std::fs::read(folder.join("report.json")).unwrap()).unwrap();
    assert_eq!(json["time_range"]["from"], "2027-03-21T23:00:00Z");
    assert_eq!(json["time_range"]["to"], "2027-03-28T22:00:00Z");
    assert!(folder.join("report.html").exists());
    assert!(folder.join("01-views.csv").exists());
}

#[tokio::test]
async fn a_repeated_hour_runs_once_and_a_skipped_one_runs_after_it() {
    let w = World::new("2026-10-24T00:00:00Z");
    let id = w.report("30 2 * * *", "run_once");
    let s = w.scheduler();
    run_until(&w, &s, "2026-10-26T12:00:00Z", Duration::minutes(10)).await;
    // 02:30 happens twice on 2026-10-25 (00:30 and 01:30 UTC): one run.
    assert_eq!(
        w.runs(&id),
        scheduled(&[
            "2026-10-24T00:30:00Z",
            "2026-10-25T00:30:00Z",
            "2026-10-26T01:30:00Z"
        ])
    );
    let w = World::new("2027-03-27T00:00:00Z");
    let id = w.report("30 2 * * *", "run_once");
    let s = w.scheduler();
    run_until(&w, &s, "2027-03-29T12:00:00Z", Duration::minutes(10)).await;
    // 02:30 does not exist on 2027-03-28: it runs at 03:00 local (01:00 UTC).
    assert_eq!(
        w.runs(&id),
        scheduled(&[
            "2027-03-27T01:30:00Z",
            "2027-03-28T01:00:00Z",
            "2027-03-29T00:30:00Z"
        ])
    );
}

#[tokio::test]
async fn slots_missed_while_down_run_once_or_are_skipped() {
    let w = World::new("2027-01-03T12:00:00Z");
    let once = w.report("0 9 * * 1", "run_once");
    let skip = w.report("0 9 * * 1", "skip");
    // Tally is down for three Mondays, then starts.
    w.clock.set(at("2027-01-20T10:00:00Z"));
    let s = w.scheduler();
    let outcome = s.tick().await.unwrap();
    assert_eq!((outcome.claimed, outcome.skipped), (1, 1));
    assert_eq!(
        w.runs(&once),
        vec![(
            "2027-01-18T08:00:00Z".into(),
            "catch_up".into(),
            "succeeded".into()
        )]
    );
    assert_eq!(
        w.runs(&skip),
        vec![(
            "2027-01-04T08:00:00Z".into(),
            "schedule".into(),
            "skipped".into()
        )]
    );
    // Both wait for the next Monday now, and nothing runs twice.
    for id in [&once, &skip] {
        let next = w
            .catalog
            .report(&w.project, id)
            .unwrap()
            .next_run_at
            .unwrap();
        assert_eq!(next, at("2027-01-25T08:00:00Z").timestamp_micros());
    }
    assert_eq!(s.tick().await.unwrap(), Default::default());
}

#[tokio::test]
async fn a_restart_mid_delivery_resumes_the_same_run() {
    let w = World::new("2027-01-03T12:00:00Z");
    let id = w.report("0 9 * * 1", "run_once");
    // The delivery cannot write: a file stands where the report directory should be.
    std::fs::write(&w.report_dir, b"in the way").unwrap();
    let first = w.scheduler();
    w.clock.set(at("2027-01-04T08:00:01Z"));
    let o = first.tick().await.unwrap();
    assert_eq!(
        (o.claimed, o.rendered, o.delivered, o.failed_attempts),
        (1, 1, 0, 1)
    );
    let run = &w.catalog.runs(&id, 10).unwrap()[0];
    assert_eq!(run.status, "delivering");
    let output = run.output.clone();
    // Tally is killed here, the disk is fixed, and Tally starts again.
    drop(first);
    std::fs::remove_file(&w.report_dir).unwrap();
    let second = w.scheduler();
    w.clock.set(at("2027-01-04T08:00:30Z"));
    // Before the retry is due, nothing happens.
    assert_eq!(second.tick().await.unwrap(), Default::default());
    w.clock.set(at("2027-01-04T08:01:02Z"));
    let o = second.tick().await.unwrap();
    assert_eq!((o.claimed, o.rendered, o.delivered), (0, 0, 1));
    let runs = w.catalog.runs(&id, 10).unwrap();
    assert_eq!(runs.len(), 1, "one run for the slot");
    assert_eq!(runs[0].status, "succeeded");
    assert_eq!(runs[0].deliveries[0].attempts, 2);
    assert_eq!(
        runs[0].output, output,
        "the output is the one rendered before the crash"
    );
    assert!(
        Path::new(&w.report_dir)
            .join("out")
            .join(&id)
            .join("2027-01-04T08-00-00Z")
            .exists()
    );
}
