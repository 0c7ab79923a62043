//! End to end over HTTP: ingest a generated set of events into a real `tally serve`, query every
//! measure, interval and filter, and compare with values computed independently here. The same
//! queries are asked again after a restart (Parquet instead of the buffer) and must not change.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Datelike, Duration, TimeZone, Timelike, Utc};
use common::{Server, create_project, gzip};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

const UAS: [(&str, &str); 3] = [
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
        "Chrome",
    ),
    (
        "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
        "Firefox",
    ),
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
        "Mobile Safari",
    ),
];
const COUNTRIES: [&str; 4] = ["DE", "US", "FR", "JP"];

/// One generated event and the facts the expectations are computed from.
#[derive(Debug, Clone)]
struct Gen {
    json: Value,
    ts: DateTime<Utc>,
    name: String,
    person: String,
    country: &'static str,
    browser: &'static str,
    path: String,
    plan: Option<&'static str>,
    value: Option<f64>,
    category: Option<&'static str>,
}

fn generate(n: usize) -> Vec<Gen> {
    let mut rng = StdRng::seed_from_u64(42);
    let start = Utc.with_ymd_and_hms(2026, 8, 28, 0, 0, 0).unwrap();
    (0..n)
        .map(|i| {
            let ts = start + Duration::seconds(rng.random_range(0..14 * 86_400));
            let anonymous = rng.random_bool(0.2);
            let person = if anonymous { format!("a{}", rng.random_range(0..20)) } else { format!("u{}", rng.random_range(0..50)) };
            let (ua, browser) = UAS[rng.random_range(0..UAS.len())];
            let country = COUNTRIES[rng.random_range(0..COUNTRIES.len())];
            let path = format!("/p{}", rng.random_range(0..12));
            let kind = rng.random_range(0..10);
            let mut j = json!({
                "timestamp": ts.to_rfc3339(),
                "message_id": format!("m{i}"),
                "context": {"user_agent": ua, "country": country, "locale": if i % 2 == 0 {"de-DE"} else {"en-US"},
                            "page": {"url": format!("https://shop.example{path}?utm_source=s{}", i % 3), "referrer": "https://www.google.com/"},
                            "ip": "203.0.113.9"},
            });
            if anonymous {
                j["anonymous_id"] = json!(person);
            } else {
                j["user_id"] = json!(person);
            }
            let (name, plan, value, category) = match kind {
                0..=5 => ("pageview".to_owned(), None, None, None),
                6 => ("signup".to_owned(), None, None, None),
                7 | 8 => {
                    let plan = if rng.random_bool(0.5) { "pro" } else { "free" };
                    let value = (rng.random_range(100..100_000) as f64) / 100.0;
                    j["properties"] = json!({"plan": plan, "value": value, "items": [1, 2]});
                    ("purchase".to_owned(), Some(plan), Some(value), None)
                }
                _ => {
                    // The origin's shape: category + action (+ label, value).
                    let v = rng.random_range(1..300) as f64;
                    j["category"] = json!("video");
                    j["action"] = json!("play");
                    j["label"] = json!("intro");
                    j["value"] = json!(v);
                    ("play".to_owned(), None, Some(v), Some("video"))
                }
            };
            if category.is_none() {
                j["event"] = json!(name);
            }
            Gen { json: j, ts, name, person, country, browser, path, plan, value, category }
        })
        .collect()
}

fn percentile(mut v: Vec<f64>, p: f64) -> Value {
    if v.is_empty() {
        return Value::Null;
    }
    v.sort_by(f64::total_cmp);
    let pos = p * (v.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    json!(v[lo] + (v[hi] - v[lo]) * (pos - lo as f64))
}

fn approx_eq(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => (x - y).abs() <= 1e-6 * x.abs().max(y.abs()).max(1.0),
        _ => a == b,
    }
}

fn assert_rows(name: &str, got: &Value, expected: &[Vec<Value>]) {
    let rows = got["rows"]
        .as_array()
        .unwrap_or_else(|| panic!("{name}: no rows in {got}"));
    assert_eq!(
        rows.len(),
        expected.len(),
        "{name}: row count\n got {got}\n expected {expected:?}"
    );
    for (g, e) in rows.iter().zip(expected) {
        let g = g.as_array().unwrap();
        assert_eq!(g.len(), e.len(), "{name}: {g:?} vs {e:?}");
        for (x, y) in g.iter().zip(e) {
            assert!(approx_eq(x, y), "{name}: got row {g:?}, expected {e:?}");
        }
    }
}

fn rfc(t: DateTime<Utc>) -> Value {
    json!(t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
}

/// Expected (bucket, value) rows for a count per bucket, every bucket present.
fn series(
    events: &[&Gen],
    buckets: &[DateTime<Utc>],
    measure: impl Fn(&[&Gen]) -> Value,
) -> Vec<Vec<Value>> {
    buckets
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let end = buckets
                .get(i + 1)
                .copied()
                .unwrap_or(DateTime::<Utc>::MAX_UTC);
            let inside: Vec<&Gen> = events
                .iter()
                .copied()
                .filter(|e| e.ts >= *b && e.ts < end)
                .collect();
            vec![rfc(*b), measure(&inside)]
        })
        .collect()
}

fn unique(events: &[&Gen]) -> Value {
    json!(
        events
            .iter()
            .map(|e| e.person.as_str())
            .collect::<BTreeSet<_>>()
            .len()
    )
}

fn check_all(server: &Server, key: &str, events: &[Gen]) {
    let from = Utc.with_ymd_and_hms(2026, 8, 30, 0, 0, 0).unwrap();
    let to = Utc.with_ymd_and_hms(2026, 9, 8, 0, 0, 0).unwrap();
    let in_range: Vec<&Gen> = events
        .iter()
        .filter(|e| e.ts >= from && e.ts < to)
        .collect();
    let of = |name: &str| -> Vec<&Gen> {
        in_range
            .iter()
            .copied()
            .filter(|e| e.name == name)
            .collect()
    };
    let range =
        json!({"from": "2026-08-30T00:00:00Z", "to": "2026-09-08T00:00:00Z", "timezone": "UTC"});

    // Measures without buckets.
    let purchases = of("purchase");
    let values: Vec<f64> = purchases.iter().filter_map(|e| e.value).collect();
    let pro: Vec<&Gen> = purchases
        .iter()
        .copied()
        .filter(|e| e.plan == Some("pro"))
        .collect();
    let r = server.query(key, &json!({"time_range": range, "rules": [
        {"name": "all", "measure": {"op": "count"}},
        {"name": "uniq", "measure": {"op": "unique_users"}},
        {"name": "rev", "event": "purchase", "measure": {"op": "sum", "property": "properties.value"}, "filters": [["properties.plan", "eq", "pro"]]},
        {"name": "avg", "event": "purchase", "measure": {"op": "avg", "property": "properties.value"}},
        {"name": "min", "event": "purchase", "measure": {"op": "min", "property": "properties.value"}},
        {"name": "max", "event": "purchase", "measure": {"op": "max", "property": "properties.value"}},
        {"name": "p50", "event": "purchase", "measure": {"op": "p50", "property": "properties.value"}},
        {"name": "p90", "event": "purchase", "measure": {"op": "p90", "property": "properties.value"}},
        {"name": "p95", "event": "purchase", "measure": {"op": "p95", "property": "properties.value"}},
        {"name": "p99", "event": "purchase", "measure": {"op": "p99", "property": "properties.value"}},
        {"name": "origin_sum", "measure": {"op": "sum", "property": "value"}, "filters": [["category", "eq", "video"], ["action", "eq", "play"]]}
    ]}));
    assert_rows("all", &r["all"], &[vec![json!(in_range.len())]]);
    assert_rows("uniq", &r["uniq"], &[vec![unique(&in_range)]]);
    assert_rows(
        "rev",
        &r["rev"],
        &[vec![json!(pro.iter().filter_map(|e| e.value).sum::<f64>())]],
    );
    assert_rows(
        "avg",
        &r["avg"],
        &[vec![json!(
            values.iter().sum::<f64>() / values.len() as f64
        )]],
    );
    assert_rows(
        "min",
        &r["min"],
        &[vec![json!(values.iter().copied().fold(f64::MAX, f64::min))]],
    );
    assert_rows(
        "max",
        &r["max"],
        &[vec![json!(values.iter().copied().fold(f64::MIN, f64::max))]],
    );
    for (name, p) in [("p50", 0.5), ("p90", 0.9), ("p95", 0.95), ("p99", 0.99)] {
        assert_rows(name, &r[name], &[vec![percentile(values.clone(), p)]]);
    }
    let plays: f64 = in_range
        .iter()
        .filter(|e| e.category == Some("video"))
        .filter_map(|e| e.value)
        .sum();
    assert_rows("origin_sum", &r["origin_sum"], &[vec![json!(plays)]]);
    assert_eq!(r["all"]["columns"], json!(["value"]));

    // Intervals, with and without a time zone.
    let pv = of("pageview");
    let tz_ny: chrono_tz::Tz = "America/New_York".parse().unwrap();
    let mut day_b = vec![];
    let mut d = from;
    while d < to {
        day_b.push(d);
        d += Duration::days(1);
    }
    let mut hour_b = vec![];
    let mut h = Utc.with_ymd_and_hms(2026, 9, 1, 0, 0, 0).unwrap();
    while h < Utc.with_ymd_and_hms(2026, 9, 2, 0, 0, 0).unwrap() {
        hour_b.push(h);
        h += Duration::hours(1);
    }
    let week_b = vec![
        Utc.with_ymd_and_hms(2026, 8, 24, 0, 0, 0).unwrap(),
        Utc.with_ymd_and_hms(2026, 8, 31, 0, 0, 0).unwrap(),
        Utc.with_ymd_and_hms(2026, 9, 7, 0, 0, 0).unwrap(),
    ];
    let month_b = vec![
        Utc.with_ymd_and_hms(2026, 8, 1, 0, 0, 0).unwrap(),
        Utc.with_ymd_and_hms(2026, 9, 1, 0, 0, 0).unwrap(),
    ];
    // New York days: local midnight is 04:00 UTC in summer.
    let first_ny = tz_ny
        .with_ymd_and_hms(2026, 8, 29, 0, 0, 0)
        .unwrap()
        .with_timezone(&Utc);
    let ny_b: Vec<DateTime<Utc>> = (0..10).map(|i| first_ny + Duration::days(i)).collect();
    let r = server.query(
        key,
        &json!({"time_range": range, "rules": [
            {"name": "pv", "event": "pageview", "measure": {"op": "count"}, "interval": "day"},
            {"name": "dau", "measure": {"op": "unique_users"}, "interval": "day"},
            {"name": "week", "event": "pageview", "measure": {"op": "count"}, "interval": "week"},
            {"name": "month", "event": "pageview", "measure": {"op": "count"}, "interval": "month"},
        ]}),
    );
    let count = |e: &[&Gen]| json!(e.len());
    assert_rows("pv", &r["pv"], &series(&pv, &day_b, count));
    assert_eq!(r["pv"]["columns"], json!(["bucket", "value"]));
    assert_rows("dau", &r["dau"], &series(&in_range, &day_b, unique));
    // Edge buckets hold only the part of them inside the range.
    assert_rows("week", &r["week"], &series(&pv, &week_b, count));
    assert_rows("month", &r["month"], &series(&pv, &month_b, count));

    let hour_range = json!({"from": "2026-09-01T00:00:00Z", "to": "2026-09-02T00:00:00Z"});
    let r = server.query(key, &json!({"time_range": hour_range, "rules": [
        {"name": "hourly", "measure": {"op": "count"}, "interval": "hour"},
        {"name": "minutes", "measure": {"op": "count"}, "interval": "minute", "filters": [["timestamp", "lt", "2026-09-01T00:10:00Z"]]}
    ]}));
    let day: Vec<&Gen> = events
        .iter()
        .filter(|e| e.ts >= hour_b[0] && e.ts < hour_b[0] + Duration::days(1))
        .collect();
    assert_rows("hourly", &r["hourly"], &series(&day, &hour_b, count));
    let minute_total: u64 = r["minutes"]["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r[1].as_u64().unwrap())
        .sum();
    let expected_minutes = events
        .iter()
        .filter(|e| e.ts >= hour_b[0] && e.ts < hour_b[0] + Duration::minutes(10))
        .count();
    assert_eq!(minute_total as usize, expected_minutes);
    assert_eq!(r["minutes"]["rows"].as_array().unwrap().len(), 24 * 60);

    let ny_range = json!({"from": rfc(first_ny + Duration::days(1)), "to": rfc(first_ny + Duration::days(8)), "timezone": "America/New_York"});
    let r = server.query(
        key,
        &json!({"time_range": ny_range, "rules": [
            {"name": "ny", "event": "pageview", "measure": {"op": "count"}, "interval": "day"}
        ]}),
    );
    let ny_events: Vec<&Gen> = events
        .iter()
        .filter(|e| e.name == "pageview" && e.ts >= ny_b[1] && e.ts < ny_b[8])
        .collect();
    assert_rows("ny", &r["ny"], &series(&ny_events, &ny_b[1..8], count));

    // Group-by and filters on every kind of field.
    let r = server.query(key, &json!({"time_range": range, "rules": [
        {"name": "by_country", "measure": {"op": "unique_users"}, "group_by": ["context.country"]},
        {"name": "by_browser_day", "event": "pageview", "measure": {"op": "count"}, "group_by": ["browser"], "interval": "day", "limit": 2},
        {"name": "neq", "measure": {"op": "count"}, "filters": [["event", "neq", "pageview"]]},
        {"name": "in", "measure": {"op": "count"}, "filters": [["context.country", "in", ["DE", "FR"]]]},
        {"name": "contains", "measure": {"op": "count"}, "filters": [["path", "contains", "/p1"]]},
        {"name": "gt", "measure": {"op": "count"}, "filters": [["properties.value", "gt", 500]]},
        {"name": "lt", "measure": {"op": "count"}, "filters": [["properties.value", "lt", 500]]},
        {"name": "exists", "measure": {"op": "count"}, "filters": [["properties.plan", "exists"]]},
        {"name": "browser", "measure": {"op": "count"}, "filters": [["context.browser", "eq", "Firefox"]]},
        {"name": "locale", "measure": {"op": "count"}, "filters": [["context.locale", "eq", "de-DE"]]},
        {"name": "utm", "measure": {"op": "count"}, "filters": [["utm_source", "eq", "s1"]]},
        {"name": "ref", "measure": {"op": "count"}, "filters": [["referrer_host", "eq", "google.com"], ["referrer_channel", "eq", "organic_search"]]},
        {"name": "person", "measure": {"op": "count"}, "filters": [["user_id", "eq", "u7"]]},
        {"name": "anon", "measure": {"op": "count"}, "filters": [["anonymous_id", "exists"]]},
        {"name": "plan_group", "event": "purchase", "measure": {"op": "sum", "property": "properties.value"}, "group_by": ["properties.plan"]}
    ]}));
    let mut by_country: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for e in &in_range {
        by_country.entry(e.country).or_default().insert(&e.person);
    }
    let mut exp: Vec<Vec<Value>> = by_country
        .iter()
        .map(|(c, p)| vec![json!(c), json!(p.len())])
        .collect();
    exp.sort_by(|a, b| {
        b[1].as_u64()
            .cmp(&a[1].as_u64())
            .then(a[0].as_str().cmp(&b[0].as_str()))
    });
    assert_rows("by_country", &r["by_country"], &exp);
    assert_eq!(
        r["by_country"]["columns"],
        json!(["context.country", "value"])
    );

    let mut exp = vec![];
    for (i, b) in day_b.iter().enumerate() {
        let end = day_b.get(i + 1).copied().unwrap_or(to);
        let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
        for e in pv.iter().filter(|e| e.ts >= *b && e.ts < end) {
            *counts.entry(e.browser).or_default() += 1;
        }
        let mut rows: Vec<(&str, u64)> = counts.into_iter().collect();
        rows.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        for (br, c) in rows.into_iter().take(2) {
            exp.push(vec![rfc(*b), json!(br), json!(c)]);
        }
    }
    assert_rows("by_browser_day", &r["by_browser_day"], &exp);

    let n = |f: &dyn Fn(&Gen) -> bool| json!(in_range.iter().filter(|e| f(e)).count());
    assert_rows("neq", &r["neq"], &[vec![n(&|e| e.name != "pageview")]]);
    assert_rows(
        "in",
        &r["in"],
        &[vec![n(&|e| e.country == "DE" || e.country == "FR")]],
    );
    assert_rows(
        "contains",
        &r["contains"],
        &[vec![n(&|e| e.path.contains("/p1"))]],
    );
    assert_rows(
        "gt",
        &r["gt"],
        &[vec![n(&|e| {
            e.plan.is_some() && e.value.is_some_and(|v| v > 500.0)
        })]],
    );
    assert_rows(
        "lt",
        &r["lt"],
        &[vec![n(&|e| {
            e.plan.is_some() && e.value.is_some_and(|v| v < 500.0)
        })]],
    );
    assert_rows("exists", &r["exists"], &[vec![n(&|e| e.plan.is_some())]]);
    assert_rows(
        "browser",
        &r["browser"],
        &[vec![n(&|e| e.browser == "Firefox")]],
    );
    let locale_de = in_range
        .iter()
        .filter(|e| e.json["context"]["locale"] == "de-DE")
        .count();
    assert_rows("locale", &r["locale"], &[vec![json!(locale_de)]]);
    let utm1 = in_range
        .iter()
        .filter(|e| {
            e.json["context"]["page"]["url"]
                .as_str()
                .unwrap()
                .ends_with("s1")
        })
        .count();
    assert_rows("utm", &r["utm"], &[vec![json!(utm1)]]);
    assert_rows("ref", &r["ref"], &[vec![json!(in_range.len())]]);
    assert_rows("person", &r["person"], &[vec![n(&|e| e.person == "u7")]]);
    assert_rows(
        "anon",
        &r["anon"],
        &[vec![n(&|e| e.person.starts_with('a'))]],
    );
    let mut plan_sums: BTreeMap<&str, f64> = BTreeMap::new();
    for e in &purchases {
        *plan_sums.entry(e.plan.unwrap()).or_default() += e.value.unwrap();
    }
    let mut exp: Vec<Vec<Value>> = plan_sums
        .iter()
        .map(|(p, v)| vec![json!(p), json!(v)])
        .collect();
    exp.sort_by(|a, b| b[1].as_f64().partial_cmp(&a[1].as_f64()).unwrap());
    assert_rows("plan_group", &r["plan_group"], &exp);

    // Retention on Berlin days (CEST all along) against a brute-force count: a person's cohort is
    // the day of their first signup in the range; returns are pro purchases at or after it, up to
    // 3 days, also after the range.
    let berlin = Duration::hours(2);
    let day = |t: DateTime<Utc>| (t + berlin).date_naive();
    let (rfrom, rto) = (from - berlin, to - berlin);
    let mut first: BTreeMap<&str, DateTime<Utc>> = BTreeMap::new();
    for e in events
        .iter()
        .filter(|e| e.name == "signup" && e.ts >= rfrom && e.ts < rto)
    {
        let t = first.entry(e.person.as_str()).or_insert(e.ts);
        *t = (*t).min(e.ts);
    }
    // cohort day -> (size, persons active on day k)
    let mut cohorts: BTreeMap<chrono::NaiveDate, (u64, [BTreeSet<&str>; 3])> = BTreeMap::new();
    for t0 in first.values() {
        cohorts.entry(day(*t0)).or_default().0 += 1;
    }
    for e in events
        .iter()
        .filter(|e| e.name == "purchase" && e.plan == Some("pro"))
    {
        if let Some(t0) = first.get(e.person.as_str()).filter(|t0| e.ts >= **t0) {
            let k = (day(e.ts) - day(*t0)).num_days() as usize;
            if k < 3 {
                cohorts.get_mut(&day(*t0)).unwrap().1[k].insert(e.person.as_str());
            }
        }
    }
    let mut exp = Vec::new();
    for (d, (size, active)) in &cohorts {
        let start = Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0).unwrap()) - berlin;
        for (k, persons) in active.iter().enumerate() {
            let n = persons.len() as f64;
            exp.push(vec![
                rfc(start),
                json!(size),
                json!(k),
                json!(persons.len()),
                json!(n / *size as f64),
            ]);
        }
    }
    assert!(exp.len() >= 9, "the data has several cohorts: {exp:?}");
    let r = server.query(key, &json!({
        "time_range": {"from": "2026-08-30T00:00:00+02:00", "to": "2026-09-08T00:00:00+02:00", "timezone": "Europe/Berlin"},
        "rules": [{"kind": "retention", "name": "ret", "period": "day", "periods": 3,
                   "cohort_event": "signup", "return_event": "purchase",
                   "return_filters": [["properties.plan", "eq", "pro"]]}]}));
    assert_rows("retention", &r["ret"], &exp);

    // An empty range still answers: zero counts, null sums, every bucket.
    let r = server.query(key, &json!({"time_range": {"from": "2025-01-01T00:00:00Z", "to": "2025-01-03T00:00:00Z"}, "rules": [
        {"name": "c", "measure": {"op": "count"}, "interval": "day"},
        {"name": "s", "measure": {"op": "sum", "property": "properties.value"}},
    ]}));
    assert_rows(
        "empty c",
        &r["c"],
        &[
            vec![json!("2025-01-01T00:00:00Z"), json!(0)],
            vec![json!("2025-01-02T00:00:00Z"), json!(0)],
        ],
    );
    assert_rows("empty s", &r["s"], &[vec![Value::Null]]);
    let _ = (Timelike::hour(&from), Datelike::day(&from));
}

#[test]
fn ingest_then_query_every_measure_interval_and_filter() {
    let dir = tempfile::tempdir().unwrap();
    let p = create_project(dir.path(), "shop");
    // A small flush threshold puts part of the data in Parquet and part in the buffer.
    let mut server = Server::start(
        dir.path(),
        &["--flush-rows", "1500", "--flush-interval", "1h"],
    );
    let events = generate(4000);
    for (i, chunk) in events.chunks(250).enumerate() {
        let body: Vec<Value> = chunk.iter().map(|g| g.json.clone()).collect();
        let bytes = serde_json::to_vec(&body).unwrap();
        let (status, answer, _) = if i % 2 == 0 {
            server.post_raw(
                "/v1/events",
                Some(&p.write_key),
                gzip(&bytes),
                &[
                    ("content-encoding", "gzip"),
                    ("content-type", "application/json"),
                ],
            )
        } else {
            server.post_raw(
                "/v1/events",
                Some(&p.write_key),
                bytes,
                &[("content-type", "application/json")],
            )
        };
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["accepted"], json!(chunk.len()), "{answer}");
        assert_eq!(answer["rejected"], json!([]));
    }
    // Sending the same events again stores nothing new: message ids are idempotent.
    let again: Vec<Value> = events[..100].iter().map(|g| g.json.clone()).collect();
    let (status, answer) = server.post("/v1/events", &p.write_key, &json!({"events": again}));
    assert_eq!((status, answer["accepted"].clone()), (200, json!(100)));

    check_all(&server, &p.read_key, &events);
    server.restart();
    check_all(&server, &p.read_key, &events);
}
