#!/usr/bin/env bash
# The whole benchmark in one go: builds release binaries, generates N events (default 10M),
# imports them, runs the query suite against Tally and DuckDB, measures HTTP ingest and
# acknowledgment-to-visible latency, and prints one Markdown report.
#
#   benchmarks/run.sh [EVENTS]          results in $BENCH_DIR/results (default /tmp/tally-bench)
#
# Needs python3 with duckdb and chdb (`pip install duckdb chdb`, done here when missing) and GNU
# time (`apt-get install time`). With REUSE=1, an existing events file and imported data dir in
# $BENCH_DIR are used as they are (no generate, no import); with SKIP_INGEST=1 the HTTP ingest
# and latency runs are left out.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-10000000}
DAYS=${DAYS:-90}
INGEST_EVENTS=${INGEST_EVENTS:-2000000}
WORK=${BENCH_DIR:-/tmp/tally-bench}
OUT=$WORK/results
PORT=${PORT:-18090}

cargo build --release -p tally -p tally-bench
T=$PWD/target/release/tally
B=$PWD/target/release/tally-bench
python3 -c "import duckdb" 2>/dev/null || pip install --quiet duckdb
python3 -c "import chdb" 2>/dev/null || pip install --quiet chdb
command -v /usr/bin/time >/dev/null || apt-get install -y -qq time >/dev/null

if [ "${REUSE:-0}" != 1 ]; then rm -rf "$WORK"; fi
mkdir -p "$OUT"
key() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$1" "$2"; }
wait_health() { for _ in $(seq 600); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && return; sleep 0.1; done; exit 1; }
peak_kib() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }

D=$WORK/data
if [ "${REUSE:-0}" != 1 ]; then
echo "== generate $N events over $DAYS days"
"$B" generate --events "$N" --days "$DAYS" --seed 42 --out "$WORK/events.ndjson.gz" --json "$OUT/generate.json"

echo "== tally import"
"$T" project create shop --json --data-dir "$D" > "$WORK/shop.json"
/usr/bin/time -f "%e %M" -o "$OUT/import.time" "$T" import "$WORK/events.ndjson.gz" --project shop --data-dir "$D" --quiet
read -r secs kib < "$OUT/import.time"
bytes=$(du -sb "$D/events" | cut -f1)
python3 - "$N" "$secs" "$kib" "$bytes" > "$OUT/import.md" <<'PY'
import sys
n, secs, kib, b = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
print("| bulk import | value |\n|---|---|")
print(f"| events | {n:,} |\n| wall time | {secs:.1f} s |\n| events/s | {n/secs:,.0f} |")
print(f"| peak memory (RSS) | {kib/1024:,.0f} MiB |\n| Parquet bytes on disk | {b:,} |\n| bytes per event | {b/n:.1f} |")
PY
cat "$OUT/import.md"
fi

echo "== queries over HTTP"
# Without the overview's rollups: the first start after an import would build them from all
# events while the suite runs (up to 3x slower queries). The suite asks with "exact": true and
# reads the events either way.
"$T" serve --listen "127.0.0.1:$PORT" --data-dir "$D" --ingest-rate-limit 0 --query-rate-limit 0 \
    --overview-rollups false 2>"$WORK/serve.log" & SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
wait_health
"$B" queries --url "http://127.0.0.1:$PORT" --key "$(key "$WORK/shop.json" read_key)" --days "$DAYS" --runs 5 --json "$OUT/queries.json"
echo "server peak memory after the queries: $(( $(peak_kib $SERVER) / 1024 )) MiB" | tee "$OUT/query-memory.txt"
kill $SERVER; wait $SERVER 2>/dev/null || true

for engine in duckdb chdb; do
  echo "== $engine"
  python3 benchmarks/peers_compare.py --engine "$engine" --file "$WORK/events.ndjson.gz" --days "$DAYS" \
      --runs 5 --threads 2 --json "$OUT/$engine.json"
done

if [ "${SKIP_INGEST:-0}" != 1 ]; then
echo "== HTTP ingest ($INGEST_EVENTS events, batches of 100) into a fresh data dir"
D2=$WORK/data-ingest
"$T" project create live --json --data-dir "$D2" > "$WORK/live.json"
"$T" serve --listen "127.0.0.1:$PORT" --data-dir "$D2" --ingest-rate-limit 0 --query-rate-limit 0 2>"$WORK/serve-ingest.log" & SERVER=$!
wait_health
"$B" ingest --url "http://127.0.0.1:$PORT" --key "$(key "$WORK/live.json" write_key)" --file "$WORK/events.ndjson.gz" \
    --limit "$INGEST_EVENTS" --batch 100 --concurrency 32 --json "$OUT/ingest.json"
echo "server peak memory during ingest: $(( $(peak_kib $SERVER) / 1024 )) MiB" | tee "$OUT/ingest-memory.txt"
"$B" latency --url "http://127.0.0.1:$PORT" --write-key "$(key "$WORK/live.json" write_key)" \
    --read-key "$(key "$WORK/live.json" read_key)" --samples 50 --json "$OUT/latency.json"
kill $SERVER; wait $SERVER 2>/dev/null || true
fi

echo "== report"
reports=()
for f in generate ingest latency queries duckdb chdb; do
  [ -f "$OUT/$f.json" ] && reports+=("$OUT/$f.json")
done
"$B" report "${reports[@]}" | tee "$OUT/report.md"
