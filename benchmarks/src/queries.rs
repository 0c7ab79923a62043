//! `queries`: a fixed suite of `POST /v1/query` requests over the generated data's range.
//!
//! Each query runs once as a warm-up, then `--runs` times; the result is the minimum and the
//! median time from sending the request to reading the last byte of the answer. The names are
//! shared with `peers_compare.py`, which runs the equivalent SQL on DuckDB and chDB. These
//! queries ask for `"exact": true`, so they always read the events.
//!
//! Then the rollup suite: the dashboard series of [`ROLLUP_SUITE`] are saved as rules
//! (`POST /v1/rules`), and once their rollups are ready the same queries are timed again without
//! `exact`, answered from the rollups.

use std::path::PathBuf;

use anyhow::{Context, bail};
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde_json::{Value, json};

use crate::generate::END_RFC3339;
use crate::http;
use crate::report::{self, Outcome, QueriesReport, QueryTiming, median};

/// The suite, in order. `peers_compare.py` uses the same names.
pub(crate) const SUITE: [&str; 10] = [
    "events_per_day",
    "uniques_per_day",
    "top_pages_30d",
    "by_browser_country",
    "uniques_by_browser_country",
    "purchase_p50_p95_per_day",
    "revenue_pro",
    "one_person",
    "funnel_3_steps_7d",
    "retention_8_weeks",
];

/// Queries answered from rollups: (name, the query of [`SUITE`] whose rule is saved).
pub(crate) const ROLLUP_SUITE: [(&str, &str); 3] = [
    ("rollup_events_per_day", "events_per_day"),
    ("rollup_uniques_per_day", "uniques_per_day"),
    ("rollup_by_browser_country", "by_browser_country"),
];
#[derive(Debug, clap::Args)]
pub(crate) struct QueriesArgs {
    /// Base URL of the server.
    #[arg(long, env = "TALLY_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// The project's read key.
    #[arg(long, env = "TALLY_READ_KEY", required_unless_present = "dump")]
    key: Option<String>,
    /// Timed runs of each query, after one warm-up run.
    #[arg(long, default_value_t = 5)]
    runs: u32,
    /// Days of data (as given to `generate`): the range is [end − days, end).
    #[arg(long, default_value_t = 90)]
    days: u32,
    /// End of the data's range.
    #[arg(long, default_value = END_RFC3339)]
    end: String,
    /// The user of `one_person`; by default the user with the most events (found by an untimed
    /// query).
    #[arg(long)]
    user: Option<String>,
    /// Run only these queries (repeatable).
    #[arg(long)]
    only: Vec<String>,
    /// Skip the rollup suite (which saves rules on the server).
    #[arg(long)]
    no_rollups: bool,
    /// Also write the result as JSON here (for `tally-bench report`).
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write each request body to DIR/NAME.json (for `tally query --rules`) and exit; without
    /// `--user`, `one_person` asks for `TOP_USER` (run `top_user.json` to find it).
    #[arg(long, value_name = "DIR")]
    dump: Option<PathBuf>,
}

/// A half-open UTC range.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Range {
    pub(crate) from: DateTime<Utc>,
    pub(crate) to: DateTime<Utc>,
}

impl Range {
    pub(crate) fn ending(end: &str, days: u32) -> anyhow::Result<Self> {
        if days == 0 {
            bail!("--days must be at least 1");
        }
        let to = DateTime::parse_from_rfc3339(end)
            .with_context(|| format!("--end {end} is not an RFC 3339 time"))?
            .with_timezone(&Utc);
        Ok(Self {
            from: to - Duration::days(i64::from(days)),
            to,
        })
    }

    /// The last `days` days of the range (all of it if it is shorter).
    fn last_days(self, days: i64) -> Self {
        Self {
            from: self.from.max(self.to - Duration::days(days)),
            to: self.to,
        }
    }

    fn json(self) -> Value {
        json!({"from": rfc3339(self.from), "to": rfc3339(self.to), "timezone": "UTC"})
    }
}

pub(crate) fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The request body of each query of the suite, in [`SUITE`] order.
pub(crate) fn suite(range: Range, user: &str) -> Vec<(&'static str, Value)> {
    let body = |range: Range, rules: Value| json!({"time_range": range.json(), "rules": rules, "exact": true});
    let percentile = |op: &str| {
        json!({
            "name": op,
            "event": "purchase",
            "measure": {"op": op, "property": "properties.value"},
            "interval": "day",
        })
    };
    let queries = vec![
        (
            "events_per_day",
            body(
                range,
                json!([{"name": "events_per_day", "measure": {"op": "count"}, "interval": "day"}]),
            ),
        ),
        (
            "uniques_per_day",
            body(
                range,
                json!([{"name": "uniques_per_day", "measure": {"op": "unique_users"}, "interval": "day"}]),
            ),
        ),
        (
            "top_pages_30d",
            body(
                range.last_days(30),
                json!([{
                    "name": "top_pages_30d",
                    "event": "pageview",
                    "measure": {"op": "count"},
                    "group_by": ["context.page.path"],
                    "limit": 10,
                }]),
            ),
        ),
        (
            "by_browser_country",
            body(
                range,
                json!([{
                    "name": "by_browser_country",
                    "measure": {"op": "count"},
                    "group_by": ["browser", "context.country"],
                }]),
            ),
        ),
        (
            "uniques_by_browser_country",
            body(
                range,
                json!([{
                    "name": "uniques_by_browser_country",
                    "measure": {"op": "unique_users"},
                    "group_by": ["browser", "context.country"],
                }]),
            ),
        ),
        (
            "purchase_p50_p95_per_day",
            body(range, json!([percentile("p50"), percentile("p95")])),
        ),
        (
            "revenue_pro",
            body(
                range,
                json!([{
                    "name": "revenue_pro",
                    "event": "purchase",
                    "measure": {"op": "sum", "property": "properties.value"},
                    "filters": [["properties.plan", "eq", "pro"]],
                }]),
            ),
        ),
        (
            "one_person",
            body(
                range,
                json!([{
                    "name": "one_person",
                    "measure": {"op": "count"},
                    "filters": [["user_id", "eq", user]],
                    "group_by": ["event"],
                }]),
            ),
        ),
        (
            "funnel_3_steps_7d",
            body(
                range,
                json!([{
                    "kind": "funnel",
                    "name": "funnel_3_steps_7d",
                    "steps": [{"event": "signup"}, {"event": "login"}, {"event": "purchase"}],
                    "window": "7d",
                }]),
            ),
        ),
        (
            "retention_8_weeks",
            body(
                range.last_days(7 * 8),
                json!([{
                    "kind": "retention",
                    "name": "retention_8_weeks",
                    "period": "week",
                    "periods": 8,
                    "cohort_event": "signup",
                    "return_event": "pageview",
                }]),
            ),
        ),
    ];
    debug_assert!(queries.iter().map(|q| q.0).eq(SUITE));
    queries
}

/// The query that finds the user with the most events.
pub(crate) fn top_user_query(range: Range) -> Value {
    json!({
        "time_range": range.json(),
        "rules": [{
            "name": "top_user",
            "measure": {"op": "count"},
            "filters": [["user_id", "exists"]],
            "group_by": ["user_id"],
            "limit": 1,
        }],
    })
}

pub(crate) fn run(args: QueriesArgs) -> anyhow::Result<()> {
    let range = Range::ending(&args.end, args.days)?;
    for name in &args.only {
        if !SUITE.contains(&name.as_str()) && !ROLLUP_SUITE.iter().any(|(r, _)| r == name) {
            bail!(
                "--only {name}: the queries are {}, {}",
                SUITE.join(", "),
                ROLLUP_SUITE.map(|r| r.0).join(", ")
            );
        }
    }
    if let Some(dir) = &args.dump {
        return dump(dir, range, args.user.as_deref().unwrap_or("TOP_USER"));
    }
    let result = http::runtime(1)?.block_on(run_suite(&args, range))?;
    report::emit(&Outcome::Queries(result), args.json.as_deref())
}

fn dump(dir: &std::path::Path, range: Range, user: &str) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let bodies = suite(range, user)
        .into_iter()
        .chain([("top_user", top_user_query(range))]);
    for (name, body) in bodies {
        let path = dir.join(format!("{name}.json"));
        let text = serde_json::to_string_pretty(&body)? + "\n";
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        println!("{}", path.display());
    }
    Ok(())
}

async fn run_suite(args: &QueriesArgs, range: Range) -> anyhow::Result<QueriesReport> {
    let client = http::client(1)?;
    http::check_health(&client, &args.url).await?;
    let key = http::bearer(args.key.as_deref().context("--key is required")?)?;
    let user = match &args.user {
        Some(u) => u.clone(),
        None => {
            let body = serde_json::to_vec(&top_user_query(range))?;
            let (_, answer) = http::query(&client, &args.url, &key, &body)
                .await
                .context("finding the most active user")?;
            http::rows(&answer, "top_user")
                .and_then(|rows| rows.first())
                .and_then(|row| row.get(0))
                .and_then(Value::as_str)
                .map(str::to_owned)
                .context(
                    "no event has a user_id in the range: is the data loaded, and --days right?",
                )?
        }
    };
    eprintln!("one_person: user {user}");

    let mut timings = Vec::new();
    let queries = suite(range, &user);
    for (name, body) in &queries {
        if !args.only.is_empty() && !args.only.iter().any(|o| o == name) {
            continue;
        }
        let timing = timed(&client, &args.url, &key, name, body, args.runs, None).await?;
        timings.push(timing);
    }
    if !args.no_rollups {
        for (name, base) in ROLLUP_SUITE {
            if !args.only.is_empty() && !args.only.iter().any(|o| o == name) {
                continue;
            }
            let Some((_, body)) = queries.iter().find(|(n, _)| *n == base) else {
                continue;
            };
            let rule = &body["rules"][0];
            save_rule(&client, &args.url, &key, rule).await?;
            let mut body = body.clone();
            if let Some(o) = body.as_object_mut() {
                o.remove("exact");
            }
            let rule_name = rule["name"].as_str().unwrap_or(base);
            let timing = timed(
                &client,
                &args.url,
                &key,
                name,
                &body,
                args.runs,
                Some(rule_name),
            )
            .await?;
            timings.push(timing);
        }
    }
    Ok(QueriesReport {
        engine: "tally".into(),
        version: None,
        source: args.url.clone(),
        runs: args.runs,
        from: rfc3339(range.from),
        to: rfc3339(range.to),
        user: Some(user),
        load_seconds: None,
        events: None,
        queries: timings,
    })
}

/// Times one query. With `rollup`, an answer that did not come from that rule's rollup is an
/// error.
async fn timed(
    client: &reqwest::Client,
    url: &str,
    key: &reqwest::header::HeaderValue,
    name: &str,
    body: &Value,
    runs: u32,
    rollup: Option<&str>,
) -> anyhow::Result<QueryTiming> {
    let bytes = serde_json::to_vec(body)?;
    let outcome = time_query(client, url, key, &bytes, runs)
        .await
        .and_then(|(ms, answer)| match rollup {
            Some(r)
                if !answer["from_rollups"]
                    .as_array()
                    .is_some_and(|a| a.contains(&json!(r))) =>
            {
                bail!(
                    "not answered from the rollup of `{r}`: {}",
                    answer["from_rollups"]
                )
            }
            _ => Ok((ms, answer)),
        });
    let timing = match outcome {
        Ok((ms, answer)) => {
            let (rows, sum) = http::summarize(&answer);
            QueryTiming {
                name: name.to_owned(),
                min_ms: ms.iter().copied().reduce(f64::min),
                median_ms: median(&ms),
                rows: Some(rows),
                value_sum: Some(sum),
                error: None,
            }
        }
        Err(e) => QueryTiming {
            name: name.to_owned(),
            min_ms: None,
            median_ms: None,
            rows: None,
            value_sum: None,
            error: Some(format!("{e:#}")),
        },
    };
    eprintln!(
        "  {name}: median {} ms",
        timing
            .median_ms
            .map(|m| format!("{m:.1}"))
            .unwrap_or_else(|| "error".into())
    );
    Ok(timing)
}

/// Saves `rule` (replacing a rule of that name) and waits until its rollup is ready.
async fn save_rule(
    client: &reqwest::Client,
    url: &str,
    key: &reqwest::header::HeaderValue,
    rule: &Value,
) -> anyhow::Result<()> {
    use reqwest::header::AUTHORIZATION;
    let name = rule["name"].as_str().context("the rule has a name")?;
    let path = http::endpoint(url, &format!("/v1/rules/{name}"));
    client
        .delete(&path)
        .header(AUTHORIZATION, key.clone())
        .send()
        .await
        .context("DELETE /v1/rules")?;
    let resp = client
        .post(http::endpoint(url, "/v1/rules"))
        .header(AUTHORIZATION, key.clone())
        .json(rule)
        .send()
        .await
        .context("POST /v1/rules")?;
    if !resp.status().is_success() {
        bail!(
            "POST /v1/rules answered {}: {}",
            resp.status(),
            resp.text().await.unwrap_or_default()
        );
    }
    let started = std::time::Instant::now();
    loop {
        let v: Value = client
            .get(&path)
            .header(AUTHORIZATION, key.clone())
            .send()
            .await
            .context("GET /v1/rules/NAME")?
            .json()
            .await
            .context("the rule answer is not JSON")?;
        match v["rollup"]["state"].as_str() {
            Some("ready") => {
                eprintln!(
                    "  rule {name}: rollup ready after {:.1} s",
                    started.elapsed().as_secs_f64()
                );
                return Ok(());
            }
            Some("failed" | "unsupported") => bail!("the rollup of {name} failed: {v}"),
            _ if started.elapsed() > std::time::Duration::from_secs(600) => {
                bail!("the rollup of {name} was not ready after 10 minutes: {v}")
            }
            _ => tokio::time::sleep(std::time::Duration::from_millis(200)).await,
        }
    }
}

/// One warm-up, then `runs` timed runs: the times in ms and the last answer.
async fn time_query(
    client: &reqwest::Client,
    url: &str,
    key: &reqwest::header::HeaderValue,
    body: &[u8],
    runs: u32,
) -> anyhow::Result<(Vec<f64>, Value)> {
    let (_, mut last) = http::query(client, url, key, body).await?;
    let mut ms = Vec::with_capacity(runs as usize);
    for _ in 0..runs {
        let (elapsed, answer) = http::query(client, url, key, body).await?;
        ms.push(elapsed.as_secs_f64() * 1e3);
        last = answer;
    }
    Ok((ms, last))
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    /// What `AggregationRule` accepts (it denies unknown fields).
    const RULE_KEYS: &[&str] = &[
        "name", "event", "measure", "filters", "group_by", "interval", "limit",
    ];
    const OPS: &[&str] = &[
        "count",
        "unique_users",
        "sum",
        "avg",
        "min",
        "max",
        "p50",
        "p90",
        "p95",
        "p99",
    ];

    fn range() -> Range {
        Range::ending(END_RFC3339, 90).expect("range")
    }

    #[test]
    fn the_range_ends_at_the_generated_end() {
        let r = range();
        assert_eq!(rfc3339(r.from), "2026-08-22T00:00:00Z");
        assert_eq!(rfc3339(r.to), "2026-11-20T00:00:00Z");
        assert_eq!(rfc3339(r.last_days(30).from), "2026-10-21T00:00:00Z");
        let short = Range::ending(END_RFC3339, 7).expect("range");
        assert_eq!(short.last_days(30), short);
        assert!(Range::ending("yesterday", 7).is_err());
        assert!(Range::ending(END_RFC3339, 0).is_err());
    }

    #[test]
    fn every_query_is_a_valid_request() {
        let queries = suite(range(), "u_1");
        assert_eq!(queries.iter().map(|q| q.0).collect::<Vec<_>>(), SUITE);
        for (name, body) in &queries {
            let obj = body.as_object().expect("object");
            assert_eq!(obj.len(), 3, "{name}: time_range, rules and exact only");
            assert_eq!(body["exact"], true, "{name}: the suite reads the events");
            let tr = &body["time_range"];
            let from =
                DateTime::parse_from_rfc3339(tr["from"].as_str().expect("from")).expect("from");
            let to = DateTime::parse_from_rfc3339(tr["to"].as_str().expect("to")).expect("to");
            assert!(from < to, "{name}");
            let rules = body["rules"].as_array().expect("rules");
            assert!(!rules.is_empty());
            let mut names = HashSet::new();
            for rule in rules.iter().filter(|r| r.get("kind").is_none()) {
                for key in rule.as_object().expect("rule").keys() {
                    assert!(
                        RULE_KEYS.contains(&key.as_str()),
                        "{name}: unknown key {key}"
                    );
                }
                assert!(
                    names.insert(rule["name"].as_str().expect("name")),
                    "{name}: duplicate"
                );
                let op = rule["measure"]["op"].as_str().expect("op");
                assert!(OPS.contains(&op), "{name}: {op}");
                let needs_property = !matches!(op, "count" | "unique_users");
                assert_eq!(
                    rule["measure"]["property"].is_string(),
                    needs_property,
                    "{name}"
                );
                assert!(rule["group_by"].as_array().map_or(0, Vec::len) <= 5);
                if let Some(iv) = rule.get("interval") {
                    assert_eq!(iv, "day");
                }
                for f in rule["filters"].as_array().into_iter().flatten() {
                    let f = f.as_array().expect("a filter is a triple");
                    assert!(f.len() == 3 || (f.len() == 2 && f[1] == "exists"));
                }
            }
        }
    }

    #[test]
    fn the_suite_is_as_specified() {
        let q: std::collections::BTreeMap<&str, Value> =
            suite(range(), "u_top").into_iter().collect();
        assert_eq!(
            q["top_pages_30d"]["time_range"]["from"],
            "2026-10-21T00:00:00Z"
        );
        assert_eq!(q["top_pages_30d"]["rules"][0]["limit"], 10);
        assert_eq!(
            q["top_pages_30d"]["rules"][0]["group_by"],
            json!(["context.page.path"])
        );
        assert_eq!(
            q["uniques_by_browser_country"]["rules"][0]["group_by"],
            q["by_browser_country"]["rules"][0]["group_by"]
        );
        assert_eq!(
            q["purchase_p50_p95_per_day"]["rules"][1]["measure"]["op"],
            "p95"
        );
        assert_eq!(
            q["one_person"]["rules"][0]["filters"][0],
            json!(["user_id", "eq", "u_top"])
        );
        assert_eq!(
            q["revenue_pro"]["rules"][0]["filters"][0],
            json!(["properties.plan", "eq", "pro"])
        );
    }

    #[test]
    fn peers_compare_runs_the_same_queries() {
        let script = include_str!("../peers_compare.py");
        for name in SUITE {
            assert!(
                script.contains(&format!("\"{name}\"")),
                "peers_compare.py lacks {name}"
            );
        }
    }

    #[test]
    fn rollup_queries_are_suite_queries() {
        for (_, base) in ROLLUP_SUITE {
            assert!(SUITE.contains(&base));
        }
    }

    #[test]
    fn the_top_user_query_ignores_anonymous_events() {
        let q = top_user_query(range());
        assert_eq!(q["rules"][0]["filters"][0], json!(["user_id", "exists"]));
        assert_eq!(q["rules"][0]["limit"], 1);
    }
}
