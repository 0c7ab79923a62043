#!/usr/bin/env python3
"""Runs Tally's benchmark query suite on DuckDB or chDB (ClickHouse's engine), for comparison.

    pip install duckdb chdb
    python3 benchmarks/peers_compare.py --engine duckdb --file events.ndjson.gz --runs 5 [--json duckdb.json]
    python3 benchmarks/peers_compare.py --engine chdb --file events.ndjson.gz --runs 5 [--json chdb.json]

Loads the NDJSON written by `tally-bench generate` into a table with explicit columns (what Tally
derives at ingest is derived here with SQL: the person, the page path, the browser family): an
in-memory DuckDB table, or a chDB MergeTree table ordered by (day, event, person). Reports the
load time, then runs the SQL equivalent of each query of `tally-bench queries` (same names, same
time ranges, same semantics: the funnel is ClickHouse's `windowFunnel`, on DuckDB written as the
earliest chain of each step-1 event) once as a warm-up and `--runs` times, and prints the minimum
and median milliseconds as a Markdown table. `rows` and `Σ value` are there to check the engines
give the same answers (the peers have no rows for empty buckets, Tally has). With `--json FILE`,
the result is saved in the shape `tally-bench report` merges.
"""

import argparse
import json
import re
import statistics
import sys
import time
from datetime import datetime, timedelta, timezone


# The end of every generated data set (tally-bench's END_RFC3339).
END = "2026-11-20T00:00:00Z"

# The browser family as uap-core (and so Tally) names it, for the user agents the generator
# writes: Edge before Chrome (Edge says Chrome too), Chrome before Safari (Chrome says Safari).
# Plain SQL that DuckDB and ClickHouse both run.
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

# The funnel and retention of the suite (as `tally-bench queries` asks them).
FUNNEL_STEPS = ("signup", "login", "purchase")
FUNNEL_WINDOW_DAYS = 7
RETENTION_WEEKS = 8
RETENTION_COHORT, RETENTION_RETURN = "signup", "pageview"
# Each person's first cohort event in the last 8 weeks: the same SQL on both engines.
RETENTION_FIRST = (
    f"SELECT person, min(ts) AS t0 FROM events "
    f"WHERE event = '{RETENTION_COHORT}' AND ts >= $from_weeks AND ts < $to GROUP BY person"
)


class DuckDB:
    name = "duckdb"

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
    # The day on the UTC calendar, as Tally's `"interval": "day"` with `"timezone": "UTC"` (the
    # equivalent `date_trunc('day', ts)` under `SET TimeZone = 'UTC'` is twice as slow).
    DAY = "date_trunc('day', ts AT TIME ZONE 'UTC')"
    WEEK = "date_trunc('week', {} AT TIME ZONE 'UTC')"

    def __init__(self, threads):
        import duckdb
        self.module = duckdb
        self.version = duckdb.__version__
        self.con = duckdb.connect(":memory:")
        self.con.execute(f"SET threads = {int(threads)}")
        self.con.execute("SET TimeZone = 'UTC'")
        self.con.execute(self.CREATE)

    def load(self, file):
        self.con.execute(self.LOAD.replace("{file}", sql_string(file)))

    def run(self, sql, params):
        used = {k: params[k] for k in set(re.findall(r"\$(\w+)", sql))}
        return self.con.execute(sql, used).fetchall()

    def suite(self):
        day, value = self.DAY, self.VALUE
        s1, s2, s3 = FUNNEL_STEPS
        week = self.WEEK
        return common_suite(day, value, "count(DISTINCT person)", "quantile_cont({v}, {p})",
                            "properties->>'$.plan'") + [
            (
                "funnel_3_steps_7d",
                # Per step-1 event the earliest chain (earliest step 2 after it, then the
                # earliest step 3 after that, all within the window): a person's level is the
                # best over their step-1 events, which is what windowFunnel computes.
                f"""
                WITH s AS (
                    SELECT person, ts, event FROM events
                    WHERE ts >= $from AND ts < $to_window AND event IN ('{s1}', '{s2}', '{s3}')
                ),
                c1 AS (SELECT person, ts AS t1 FROM s WHERE event = '{s1}' AND ts < $to),
                c2 AS (
                    SELECT c1.person, c1.t1, min(s.ts) AS t2 FROM c1
                    LEFT JOIN s ON s.person = c1.person AND s.event = '{s2}'
                        AND s.ts >= c1.t1 AND s.ts <= c1.t1 + INTERVAL {FUNNEL_WINDOW_DAYS} DAY
                    GROUP BY ALL
                ),
                c3 AS (
                    SELECT c2.person, c2.t1, c2.t2, min(s.ts) AS t3 FROM c2
                    LEFT JOIN s ON s.person = c2.person AND s.event = '{s3}' AND c2.t2 IS NOT NULL
                        AND s.ts >= c2.t2 AND s.ts <= c2.t1 + INTERVAL {FUNNEL_WINDOW_DAYS} DAY
                    GROUP BY ALL
                ),
                lv AS (
                    SELECT person, max(CASE WHEN t3 IS NOT NULL THEN 3
                                            WHEN t2 IS NOT NULL THEN 2 ELSE 1 END) AS level
                    FROM c3 GROUP BY person
                )
                SELECT step, count(*) FILTER (WHERE level >= step) AS persons
                FROM lv, range(1, 4) r(step) GROUP BY step ORDER BY step
                """,
                1,
            ),
            (
                "retention_8_weeks",
                f"""
                WITH c AS ({RETENTION_FIRST}),
                r AS (
                    SELECT DISTINCT c.person, {week.format('c.t0')} AS cohort,
                        CAST((epoch({week.format('e.ts')}) - epoch({week.format('c.t0')})) / 604800 AS INTEGER) AS k
                    FROM c JOIN events e ON e.person = c.person
                    WHERE e.event = '{RETENTION_RETURN}' AND e.ts >= c.t0
                )
                SELECT cohort, k, count(*) AS persons FROM r
                WHERE k < {RETENTION_WEEKS} GROUP BY ALL ORDER BY ALL
                """,
                1,
            ),
        ]


class ChDB:
    name = "chdb"

    CREATE = """
    CREATE TABLE events (
        ts           DateTime64(6, 'UTC'),
        event        LowCardinality(String),
        category     Nullable(String),
        action       Nullable(String),
        label        Nullable(String),
        value        Nullable(Float64),
        user_id      Nullable(String),
        anonymous_id Nullable(String),
        person       String,
        message_id   Nullable(String),
        path         Nullable(String),
        browser      LowCardinality(Nullable(String)),
        country      LowCardinality(Nullable(String)),
        properties   String
    ) ENGINE = MergeTree ORDER BY (toDate(ts), event, person)
    """

    LOAD = f"""
    INSERT INTO events
    SELECT
        parseDateTime64BestEffort(timestamp, 6, 'UTC'),
        coalesce(event, action),
        category, action, label, value,
        user_id, anonymous_id,
        coalesce(user_id, anonymous_id, ''),
        message_id,
        if(url IS NULL, NULL,
           coalesce(nullIf(extract(url, '^[A-Za-z]+://[^/?#]*([^?#]*)'), ''), '/')),
        {BROWSER},
        country,
        properties
    FROM (
        SELECT *,
               nullIf(JSONExtractString(context, 'page', 'url'), '') AS url,
               nullIf(JSONExtractString(context, 'user_agent'), '') AS ua,
               nullIf(JSONExtractString(context, 'country'), '') AS country
        FROM file({{file}}, 'JSONEachRow',
            'timestamp String, event Nullable(String), category Nullable(String),
             action Nullable(String), label Nullable(String), value Nullable(Float64),
             user_id Nullable(String), anonymous_id Nullable(String),
             message_id Nullable(String), properties String, context String')
        SETTINGS input_format_json_read_objects_as_strings = 1
    )
    """

    VALUE = "JSONExtract(properties, 'value', 'Nullable(Float64)')"
    DAY = "toStartOfDay(ts)"

    def __init__(self, threads):
        import chdb
        from chdb import session
        self.version = chdb.__version__
        self.session = session.Session()
        self.session.query(f"SET max_threads = {int(threads)}")
        self.session.query("CREATE DATABASE IF NOT EXISTS bench")
        self.session.query("USE bench")
        self.session.query("DROP TABLE IF EXISTS events")
        self.session.query(self.CREATE)

    def load(self, file):
        self.session.query(self.LOAD.replace("{file}", sql_string(file)))

    def run(self, sql, params):
        def literal(m):
            v = params[m.group(1)]
            if isinstance(v, datetime):
                return f"toDateTime64('{v.strftime('%Y-%m-%d %H:%M:%S')}', 6, 'UTC')"
            return sql_string(str(v))
        text = re.sub(r"\$(\w+)", literal, sql)
        result = self.session.query(text, "JSONCompact")
        return [tuple(row) for row in json.loads(result.bytes() or b'{"data": []}')["data"]]

    def suite(self):
        s1, s2, s3 = FUNNEL_STEPS
        window_us = FUNNEL_WINDOW_DAYS * 86_400_000_000
        return common_suite(self.DAY, self.VALUE, "uniqExact(person)",
                            "quantileExactInclusive({p})({v})",
                            "JSONExtractString(properties, 'plan')") + [
            (
                "funnel_3_steps_7d",
                f"""
                SELECT step, countIf(level >= step) AS persons FROM (
                    SELECT person, windowFunnel({window_us})(
                        toUInt64(toUnixTimestamp64Micro(ts)),
                        event = '{s1}' AND ts < $to, event = '{s2}', event = '{s3}') AS level
                    FROM events
                    WHERE ts >= $from AND ts < $to_window AND event IN ('{s1}', '{s2}', '{s3}')
                    GROUP BY person
                ) ARRAY JOIN [1, 2, 3] AS step
                GROUP BY step ORDER BY step
                """,
                1,
            ),
            (
                "retention_8_weeks",
                f"""
                WITH c AS ({RETENTION_FIRST})
                SELECT toMonday(c.t0) AS cohort,
                       intDiv(dateDiff('day', toMonday(c.t0), toMonday(e.ts)), 7) AS k,
                       uniqExact(c.person) AS persons
                FROM c INNER JOIN (
                    SELECT person, ts FROM events WHERE event = '{RETENTION_RETURN}'
                ) AS e ON e.person = c.person
                WHERE e.ts >= c.t0 AND k < {RETENTION_WEEKS}
                GROUP BY cohort, k ORDER BY cohort, k
                """,
                1,
            ),
        ]


IN_RANGE = "ts >= $from AND ts < $to"


def common_suite(day, value, distinct_persons, quantile, plan):
    """The queries both engines write alike: (name, SQL, number of value columns at the end of
    each row), as `tally-bench queries`."""
    q = lambda p: quantile.format(v=value, p=p)  # noqa: E731
    return [
        (
            "events_per_day",
            f"SELECT {day} AS bucket, count(*) AS value FROM events "
            f"WHERE {IN_RANGE} GROUP BY bucket ORDER BY bucket",
            1,
        ),
        (
            "uniques_per_day",
            f"SELECT {day} AS bucket, {distinct_persons} AS value FROM events "
            f"WHERE {IN_RANGE} GROUP BY bucket ORDER BY bucket",
            1,
        ),
        (
            "top_pages_30d",
            "SELECT path, count(*) AS value FROM events "
            "WHERE ts >= $from30 AND ts < $to AND event = 'pageview' "
            "GROUP BY path ORDER BY value DESC, path LIMIT 10",
            1,
        ),
        (
            "by_browser_country",
            f"SELECT browser, country, count(*) AS value FROM events "
            f"WHERE {IN_RANGE} GROUP BY browser, country",
            1,
        ),
        (
            "uniques_by_browser_country",
            f"SELECT browser, country, {distinct_persons} AS value FROM events "
            f"WHERE {IN_RANGE} GROUP BY browser, country",
            1,
        ),
        (
            "purchase_p50_p95_per_day",
            f"SELECT {day} AS bucket, {q(0.5)} AS p50, {q(0.95)} AS p95 FROM events "
            f"WHERE {IN_RANGE} AND event = 'purchase' GROUP BY bucket ORDER BY bucket",
            2,
        ),
        (
            "revenue_pro",
            f"SELECT sum({value}) AS value FROM events "
            f"WHERE {IN_RANGE} AND event = 'purchase' AND {plan} = 'pro'",
            1,
        ),
        (
            "one_person",
            f"SELECT event, count(*) AS value FROM events "
            f"WHERE {IN_RANGE} AND user_id = $user GROUP BY event",
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
    ap.add_argument("--engine", choices=["duckdb", "chdb"], default="duckdb")
    ap.add_argument("--file", required=True, help="NDJSON events (.gz is decompressed)")
    ap.add_argument("--runs", type=int, default=5, help="timed runs per query, after a warm-up")
    ap.add_argument("--days", type=int, default=90, help="days of data, as given to generate")
    ap.add_argument("--end", default=END, help="end of the data's range")
    ap.add_argument("--user", help="the user of one_person (default: the one with most events)")
    ap.add_argument("--threads", type=int, default=2, help="threads the engine may use")
    ap.add_argument("--json", help="also write the result as JSON here (for tally-bench report)")
    ap.add_argument("--only", action="append", default=[], help="run only this query (repeatable)")
    args = ap.parse_args()
    if args.runs < 1 or args.days < 1:
        sys.exit("--runs and --days must be at least 1")

    to = parse_time(args.end)
    start = to - timedelta(days=args.days)
    params = {
        "from": start,
        "to": to,
        "from30": max(start, to - timedelta(days=30)),
        "from_weeks": max(start, to - timedelta(weeks=RETENTION_WEEKS)),
        "to_window": to + timedelta(days=FUNNEL_WINDOW_DAYS),
    }

    try:
        engine = DuckDB(args.threads) if args.engine == "duckdb" else ChDB(args.threads)
    except ImportError:
        sys.exit(f"peers_compare.py needs the Python package: pip install {args.engine} "
                 f"(for {sys.executable})")
    t0 = time.perf_counter()
    engine.load(args.file)
    load_seconds = time.perf_counter() - t0
    ((events,),) = engine.run("SELECT count(*) FROM events", params)
    events = int(events)
    print(f"{engine.name}: loaded {events:,} events in {load_seconds:.2f} s", file=sys.stderr)
    ((outside,),) = engine.run(f"SELECT count(*) FROM events WHERE NOT ({IN_RANGE})", params)
    if int(outside):
        print(f"warning: {int(outside):,} events are outside the range: check --days",
              file=sys.stderr)

    user = args.user
    if user is None:
        rows = engine.run(TOP_USER, params)
        if not rows:
            sys.exit("no event has a user_id in the range: check --days")
        user = rows[0][0]
    params["user"] = user
    print(f"one_person: user {user}", file=sys.stderr)

    results = []
    for name, sql, value_columns in engine.suite():
        if args.only and name not in args.only:
            continue
        try:
            engine.run(sql, params)  # warm-up
            times = []
            for _ in range(args.runs):
                t0 = time.perf_counter()
                rows = engine.run(sql, params)
                times.append((time.perf_counter() - t0) * 1e3)
            n_rows, total = summarize(rows, value_columns)
            results.append({
                "name": name, "min_ms": min(times), "median_ms": statistics.median(times),
                "rows": n_rows, "value_sum": total, "error": None,
            })
            print(f"  {name}: median {statistics.median(times):.1f} ms", file=sys.stderr)
        except Exception as e:  # noqa: BLE001 - an engine error is reported, not fatal
            results.append({
                "name": name, "min_ms": None, "median_ms": None, "rows": None,
                "value_sum": None, "error": str(e),
            })
            print(f"  {name}: error {e}", file=sys.stderr)

    outcome = {
        "kind": "queries",
        "engine": engine.name,
        "version": engine.version,
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

    print(f"#### Queries on {engine.name} {engine.version} ({args.runs} runs after a warm-up, "
          f"{rfc3339(start)} to {rfc3339(to)}, {args.threads} threads)\n")
    print(f"Loaded {events:,} events in {load_seconds:.2f} s.\n")
    print("| query | min ms | median ms | rows | Σ value |")
    print("|---|---:|---:|---:|---:|")
    for r in results:
        if r["error"]:
            err = r["error"].replace("\n", " ").replace("|", " ")[:300]
            print(f"| `{r['name']}` | error: {err} | | | |")
        else:
            print(f"| `{r['name']}` | {ms(r['min_ms'])} | {ms(r['median_ms'])} | "
                  f"{thousands(r['rows'])} | {number(r['value_sum'])} |")
    print(f"\n`one_person` is user `{user}`.")


if __name__ == "__main__":
    main()
