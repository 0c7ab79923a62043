//! What the HTTP subcommands share: the runtime, the client, `/health`, and `POST /v1/query`.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use serde_json::Value;

/// A Tokio runtime with `threads` workers: the client usually shares the machine with the
/// server, so it should take no more CPU than it needs.
pub(crate) fn runtime(threads: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()
        .context("starting the Tokio runtime")
}

/// An HTTP/1.1 client keeping up to `connections` connections alive.
pub(crate) fn client(connections: usize) -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .http1_only()
        .pool_max_idle_per_host(connections.max(1))
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(300))
        .build()
        .context("building the HTTP client")
}

/// `base` + `path`, without a doubled slash.
pub(crate) fn endpoint(base: &str, path: &str) -> String {
    format!("{}{path}", base.trim_end_matches('/'))
}

/// Fails with a clear message unless `GET /health` answers 200.
pub(crate) async fn check_health(client: &reqwest::Client, base: &str) -> anyhow::Result<()> {
    let url = endpoint(base, "/health");
    let resp = client
        .get(&url)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .with_context(|| format!("is a Tally server running? GET {url} failed"))?;
    if resp.status() != StatusCode::OK {
        bail!("GET {url} answered {}", resp.status());
    }
    Ok(())
}

/// `Authorization: Bearer KEY`.
pub(crate) fn bearer(key: &str) -> anyhow::Result<reqwest::header::HeaderValue> {
    reqwest::header::HeaderValue::from_str(&format!("Bearer {key}"))
        .context("the key is not a valid header value")
}

/// Runs one `POST /v1/query`; answers the time from sending to the last byte of the answer, and
/// the parsed answer. A status other than 200 is an error carrying the server's message.
pub(crate) async fn query(
    client: &reqwest::Client,
    base: &str,
    key: &reqwest::header::HeaderValue,
    body: &[u8],
) -> anyhow::Result<(Duration, Value)> {
    let started = Instant::now();
    let resp = client
        .post(endpoint(base, "/v1/query"))
        .header(AUTHORIZATION, key.clone())
        .header(CONTENT_TYPE, "application/json")
        .body(body.to_vec())
        .send()
        .await
        .context("POST /v1/query failed")?;
    let status = resp.status();
    let bytes = resp.bytes().await.context("reading the query answer")?;
    let elapsed = started.elapsed();
    if status != StatusCode::OK {
        bail!(
            "POST /v1/query answered {status}: {}",
            String::from_utf8_lossy(&bytes)
        );
    }
    let answer: Value = serde_json::from_slice(&bytes).context("the query answer is not JSON")?;
    Ok((elapsed, answer))
}

/// The rows of rule `name` in a query answer.
pub(crate) fn rows<'a>(answer: &'a Value, name: &str) -> Option<&'a Vec<Value>> {
    answer.get("results")?.get(name)?.get("rows")?.as_array()
}

/// Rows and the sum of the value column over every rule of an answer: `persons` where a result
/// has one (funnels, retention), else the last column; nulls are skipped.
pub(crate) fn summarize(answer: &Value) -> (u64, f64) {
    let mut rows = 0u64;
    let mut sum = 0.0;
    if let Some(results) = answer.get("results").and_then(Value::as_object) {
        for table in results.values() {
            let persons = table
                .get("columns")
                .and_then(Value::as_array)
                .and_then(|c| c.iter().position(|c| c == "persons"));
            for row in table
                .get("rows")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                rows += 1;
                let row = row.as_array();
                sum += row
                    .and_then(|r| match persons {
                        Some(i) => r.get(i),
                        None => r.last(),
                    })
                    .and_then(Value::as_f64)
                    .unwrap_or(0.0);
            }
        }
    }
    (rows, sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        assert_eq!(endpoint("http://h:1/", "/v1/query"), "http://h:1/v1/query");
        assert_eq!(endpoint("http://h:1", "/health"), "http://h:1/health");
    }

    #[test]
    fn summaries_cover_every_rule_and_skip_nulls() {
        let answer = serde_json::json!({"results": {
            "p50": {"columns": ["bucket", "value"], "rows": [["a", 1.5], ["b", null]]},
            "p95": {"columns": ["bucket", "value"], "rows": [["a", 2.5], ["b", 3]]}
        }});
        assert_eq!(summarize(&answer), (4, 7.0));
        assert_eq!(rows(&answer, "p50").map(Vec::len), Some(2));
        assert!(rows(&answer, "nope").is_none());
    }
}
