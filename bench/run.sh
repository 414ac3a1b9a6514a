#!/usr/bin/env bash
# Runs the benchmarks and prints the figures; copy them into bench/RESULTS.md
# with the machine and the date. Usage: bench/run.sh [BUILD_DIR]
set -euo pipefail
build=${1:-build}
cd "$(dirname "$0")/.."
echo "== machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -r), $(date -u +%F)"
echo "== micro-benchmarks ($build/bench/af_bench)"
"$build/bench/af_bench" --benchmark_min_time=0.5

echo "== knowledge base: retrieval evaluation on the Python library reference ($build/bench/af_kb_eval)"
"$build/bench/af_kb_eval"
echo "== knowledge base at 100,000 chunks ($build/bench/af_kb_bench; load: $(cut -d' ' -f1-3 /proc/loadavg))"
"$build/bench/af_kb_bench"

if ! command -v wrk >/dev/null; then
  echo "wrk not installed (scripts/setup installs it); skipping the HTTP benchmark" >&2
  exit 1
fi
port=$((20000 + RANDOM % 20000))
dir=$(mktemp -d)
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$dir"' EXIT
AF_LOG=warn AF_PORT=$port AF_DATA_DIR=$dir "$build/agent-factory" serve >"$dir/out" 2>&1 &
pid=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/health/live" >/dev/null && break; sleep 0.1; done
echo "== GET /health, wrk -t2 -c64 -d10s (server: default 2 threads)"
wrk -t2 -c64 -d10s --latency "http://127.0.0.1:$port/health"
echo "== GET /health/live"
wrk -t2 -c64 -d5s "http://127.0.0.1:$port/health/live"
echo "== server RSS after load: $(ps -o rss= -p $pid) KiB"

bench/post_features.sh "$build"

echo "== agent-factory run examples/prp/shell-wordfreq.md (replay provider, fresh data dir each time)"
bin=$(cd "$build" && pwd)/agent-factory
for i in 1 2 3 4 5; do
  d=$(mktemp -d)
  start=$(date +%s%N)
  (cd "$d" && AF_LOG=warn "$bin" run "$OLDPWD/examples/prp/shell-wordfreq.md" --json >/dev/null)
  echo "run $i: $(( ($(date +%s%N) - start) / 1000000 )) ms"
  rm -rf "$d"
done

echo "== SSE: 1,000 clients on GET /api/v1/events, 200 events/s for 10 s (server in a child process)"
"$build/bench/af_sse_load" --clients 1000 --rate 200 --seconds 10 --client-threads 4 --in-process 1

echo "== 1,000 model calls in flight, fake provider answering after 1 s ($build/bench/af_llm_async_bench)"
"$build/bench/af_llm_async_bench" --calls 1000 --latency-ms 1000

# /health and /health/live against nginx serving a 200-byte file, in the same run.
bench/health_vs_nginx.sh "$build"

# The minimal feature at N = 1, 50, 500 at once: agent-factory beside LangGraph.js.
bench/feature_load.sh "$build"

# SQLite + the in-process bus beside PostgreSQL + Redis (its own servers on
# free ports): one round here, about 3 minutes; `make bench-scale` runs two.
REPEATS=${REPEATS:-1} bench/scale.sh "$build"
