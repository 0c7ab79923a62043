#!/usr/bin/env python3
"""Runs Tally's benchmark query suite on DuckDB, for comparison.

    pip install duckdb
    python3 benchmarks/duckdb_compare.py --file events.ndjson.gz --runs 5 [--json duckdb.json]

Loads the NDJSON written by `tally-bench generate` into an in-memory DuckDB table with explicit
columns (what Tally derives at ingest is derived here with SQL: the person, the page path, the
browser family), reports the load time, then runs the SQL equivalent of each query of
`tally-bench queries` (same names, same time ranges) once as a warm-up and `--runs` times, and
prints the minimum and median milliseconds as a Markdown table. `rows` and `Σ value` are there to
check both engines give the same answers (DuckDB has no rows for empty buckets, Tally has).
With `--json FILE`, the result is saved in the shape `tally-bench report` merges.
"""

import argparse
import json
import re
import statistics
import sys
import time
from datetime import datetime, timedelta, timezone

try:
    import duckdb
except ImportError:
    sys.exit(
        "duckdb_compare.py needs the DuckDB Python package: pip install duckdb "
        f"(for {sys.executable})"
    )

# The end of every generated data set (tally-bench's END_RFC3339).
END = "2026-11-20T00:00:00Z"

# The browser family as uap-core (and so Tally) names it, for the user agents the generator
# writes: Edge before Chrome (Edge says Chrome too), Chrome before Safari (Chrome says Safari).
BROWSER = """
    CASE
        WHEN ua LIKE '%EdgA/%' OR ua LIKE '%EdgiOS/%' THEN 'Edge Mobile'
        WHEN ua LIKE '%Edg/%' THEN 'Edge'
        WHEN ua LIKE '%Firefox/%' AND (ua LIKE '%Mobile%' OR ua LIKE '%Android%') THEN 'Firefox Mobile'
        WHEN ua LIKE '%Firefox/%' THEN 'Firefox'
        WHEN ua LIKE '%Chrome/%' AND ua LIKE '%Mobile%' THEN 'Chrome Mobile'
        WHEN ua LIKE '%Chrome/%' THEN 'Chrome'
        WHEN ua LIKE '%Safari/%' AND ua LIKE '%Mobile/%' THEN 'Mobile Safari'
        WHEN ua LIKE '%Safari/%' THEN 'Safari'
        WHEN ua IS NULL THEN NULL
        ELSE 'Other'
    END
"""

CREATE = """
CREATE TABLE events (
    ts           TIMESTAMPTZ NOT NULL,
    event        VARCHAR NOT NULL,
    category     VARCHAR,
    action       VARCHAR,
    label        VARCHAR,
    value        DOUBLE,
    user_id      VARCHAR,
    anonymous_id VARCHAR,
    person       VARCHAR NOT NULL,
    message_id   VARCHAR,
    path         VARCHAR,
    browser      VARCHAR,
    country      VARCHAR,
    properties   JSON
)
"""

LOAD = f"""
INSERT INTO events
SELECT
    CAST("timestamp" AS TIMESTAMPTZ),
    coalesce(event, action),  -- the origin's shape: the action names the event
    category, action, label, value,
    user_id, anonymous_id,
    coalesce(user_id, anonymous_id),
    message_id,
    CASE WHEN url IS NOT NULL
         THEN coalesce(nullif(regexp_extract(url, '^[A-Za-z]+://[^/?#]*([^?#]*)', 1), ''), '/')
    END,
    {BROWSER},
    country,
    properties
FROM (
    SELECT *,
           context->>'$.page.url' AS url,
           context->>'$.user_agent' AS ua,
           context->>'$.country' AS country
    FROM read_json({{file}}, format = 'newline_delimited', columns = {{
        "timestamp": 'VARCHAR', event: 'VARCHAR', category: 'VARCHAR', action: 'VARCHAR',
        label: 'VARCHAR', value: 'DOUBLE', user_id: 'VARCHAR', anonymous_id: 'VARCHAR',
        message_id: 'VARCHAR', properties: 'JSON', context: 'JSON'
    }})
)
"""

# properties.value as a number.
VALUE = "TRY_CAST(properties->>'$.value' AS DOUBLE)"
IN_RANGE = "ts >= $from AND ts < $to"
# The day on the UTC calendar, as Tally's `"interval": "day"` with `"timezone": "UTC"` (the
# equivalent `date_trunc('day', ts)` under `SET TimeZone = 'UTC'` is twice as slow in DuckDB).
DAY = "date_trunc('day', ts AT TIME ZONE 'UTC')"


def suite():
    """(name, SQL, number of value columns at the end of each row), as `tally-bench queries`."""
    return [
        (
            "events_per_day",
            f"SELECT {DAY} AS bucket, count(*) AS value FROM events "
            f"WHERE {IN_RANGE} GROUP BY ALL ORDER BY bucket",
            1,
        ),
        (
            "uniques_per_day",
            f"SELECT {DAY} AS bucket, count(DISTINCT person) AS value FROM events "
            f"WHERE {IN_RANGE} GROUP BY ALL ORDER BY bucket",
            1,
        ),
        (
            "top_pages_30d",
            "SELECT path, count(*) AS value FROM events "
            "WHERE ts >= $from30 AND ts < $to AND event = 'pageview' "
            "GROUP BY ALL ORDER BY value DESC, path LIMIT 10",
            1,
        ),
        (
            "by_browser_country",
            f"SELECT browser, country, count(*) AS value FROM events "
            f"WHERE {IN_RANGE} GROUP BY ALL",
            1,
        ),
        (
            "uniques_by_browser_country",
            f"SELECT browser, country, count(DISTINCT person) AS value FROM events "
            f"WHERE {IN_RANGE} GROUP BY ALL",
            1,
        ),
        (
            "purchase_p50_p95_per_day",
            f"SELECT {DAY} AS bucket, quantile_cont({VALUE}, 0.5) AS p50, "
            f"quantile_cont({VALUE}, 0.95) AS p95 FROM events "
            f"WHERE {IN_RANGE} AND event = 'purchase' GROUP BY ALL ORDER BY bucket",
            2,
        ),
        (
            "revenue_pro",
            f"SELECT sum({VALUE}) AS value FROM events "
            f"WHERE {IN_RANGE} AND event = 'purchase' AND properties->>'$.plan' = 'pro'",
            1,
        ),
        (
            "one_person",
            f"SELECT event, count(*) AS value FROM events "
            f"WHERE {IN_RANGE} AND user_id = $user GROUP BY ALL",
            1,
        ),
    ]


TOP_USER = (
    f"SELECT user_id FROM events WHERE {IN_RANGE} AND user_id IS NOT NULL "
    "GROUP BY user_id ORDER BY count(*) DESC, user_id LIMIT 1"
)


def sql_string(text):
    """A SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def parse_time(text):
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(timezone.utc)


def rfc3339(t):
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def summarize(rows, value_columns):
    """Rows (one per rule, as Tally counts them) and the sum of the value columns, nulls skipped."""
    total = 0.0
    for row in rows:
        for v in row[len(row) - value_columns:]:
            if v is not None:
                total += float(v)
    return len(rows) * value_columns, total


def thousands(n):
    return f"{n:,}"


def number(v):
    if float(v).is_integer() and abs(v) < 1e15:
        return thousands(int(v))
    return f"{v:.2f}"


def ms(v):
    if v is None:
        return ""
    return f"{v:.0f}" if v >= 100 else f"{v:.1f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--file", required=True, help="NDJSON events (.gz is decompressed)")
    ap.add_argument("--runs", type=int, default=5, help="timed runs per query, after a warm-up")
    ap.add_argument("--days", type=int, default=90, help="days of data, as given to generate")
    ap.add_argument("--end", default=END, help="end of the data's range")
    ap.add_argument("--user", help="the user of one_person (default: the one with most events)")
    ap.add_argument("--threads", type=int, default=2, help="DuckDB threads (SET threads)")
    ap.add_argument("--json", help="also write the result as JSON here (for tally-bench report)")
    args = ap.parse_args()
    if args.runs < 1 or args.days < 1:
        sys.exit("--runs and --days must be at least 1")

    to = parse_time(args.end)
    start = to - timedelta(days=args.days)
    params = {
        "from": start,
        "to": to,
        "from30": max(start, to - timedelta(days=30)),
    }

    con = duckdb.connect(":memory:")
    con.execute(f"SET threads = {int(args.threads)}")
    con.execute("SET TimeZone = 'UTC'")
    con.execute(CREATE)
    t0 = time.perf_counter()
    con.execute(LOAD.replace("{file}", sql_string(args.file)))
    load_seconds = time.perf_counter() - t0
    (events,) = con.execute("SELECT count(*) FROM events").fetchone()
    print(f"loaded {events:,} events in {load_seconds:.2f} s", file=sys.stderr)
    (outside,) = con.execute(
        f"SELECT count(*) FROM events WHERE NOT ({IN_RANGE})", {"from": start, "to": to}
    ).fetchone()
    if outside:
        print(f"warning: {outside:,} events are outside the range: check --days", file=sys.stderr)

    user = args.user
    if user is None:
        row = con.execute(TOP_USER, {"from": start, "to": to}).fetchone()
        if row is None:
            sys.exit("no event has a user_id in the range: check --days")
        user = row[0]
    params["user"] = user
    print(f"one_person: user {user}", file=sys.stderr)

    results = []
    for name, sql, value_columns in suite():
        used = {k: params[k] for k in set(re.findall(r"\$(\w+)", sql))}
        try:
            con.execute(sql, used).fetchall()  # warm-up
            times = []
            for _ in range(args.runs):
                t0 = time.perf_counter()
                rows = con.execute(sql, used).fetchall()
                times.append((time.perf_counter() - t0) * 1e3)
            n_rows, total = summarize(rows, value_columns)
            results.append({
                "name": name, "min_ms": min(times), "median_ms": statistics.median(times),
                "rows": n_rows, "value_sum": total, "error": None,
            })
            print(f"  {name}: median {statistics.median(times):.1f} ms", file=sys.stderr)
        except duckdb.Error as e:
            results.append({
                "name": name, "min_ms": None, "median_ms": None, "rows": None,
                "value_sum": None, "error": str(e),
            })
            print(f"  {name}: error {e}", file=sys.stderr)

    outcome = {
        "kind": "queries",
        "engine": "duckdb",
        "source": args.file,
        "runs": args.runs,
        "from": rfc3339(start),
        "to": rfc3339(to),
        "user": user,
        "load_seconds": load_seconds,
        "events": events,
        "queries": results,
    }
    if args.json:
        with open(args.json, "w") as f:
            json.dump(outcome, f, indent=2)
            f.write("\n")

    print(f"#### Queries on DuckDB {duckdb.__version__} ({args.runs} runs after a warm-up, "
          f"{rfc3339(start)} to {rfc3339(to)}, {args.threads} threads)\n")
    print(f"Loaded {events:,} events in {load_seconds:.2f} s.\n")
    print("| query | min ms | median ms | rows | Σ value |")
    print("|---|---:|---:|---:|---:|")
    for r in results:
        if r["error"]:
            err = r["error"].replace("\n", " ").replace("|", " ")
            print(f"| `{r['name']}` | error: {err} | | | |")
        else:
            print(f"| `{r['name']}` | {ms(r['min_ms'])} | {ms(r['median_ms'])} | "
                  f"{thousands(r['rows'])} | {number(r['value_sum'])} |")
    print(f"\n`one_person` is user `{user}`.")


if __name__ == "__main__":
    main()
