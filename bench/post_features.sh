#!/usr/bin/env bash
# POST /api/v1/features throughput, with wrk and bench/post_features.lua.
# Usage: bench/post_features.sh [BUILD_DIR]; environment: DURATION (wrk -d, default 10s), LEVELS
# (connections:threads pairs, default "1:1 16:2"), DRAIN (seconds to let the pipeline work on the
# accepted features after wrk, default 30). Run by bench/run.sh. Other AF_* variables reach the
# server, e.g. AF_LIMITS_FEATURE_TIMEOUT=1 fails every feature after 1 s, which bounds how many are
# in flight.
#
# Each level gets a fresh server (free port, temp data dir, default replay provider) with the per-key
# rate limit raised out of the way, so the figures are the accept path, not 429s. Every accepted
# feature is persisted and starts in the pipeline (it fails in planning: the body matches no
# recording), so the figures are taken while the agents work. After wrk the script prints how many
# features are in which status, lets the pipeline work for up to DRAIN seconds (less if it finishes
# them all) and prints it again.
set -euo pipefail
build=${1:-build}
duration=${DURATION:-10s}
levels=${LEVELS:-"1:1 16:2"}
drain=${DRAIN:-30}
cd "$(dirname "$0")/.."
bin=$(cd "$build" && pwd)/agent-factory
for tool in wrk curl python3; do
  command -v $tool >/dev/null || { echo "$tool not installed (scripts/setup installs it)" >&2; exit 1; }
done

pid=
dir=
stop_server() {
  [ -n "$pid" ] || return 0
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  pid=
}
cleanup() {
  stop_server
  [ -z "$dir" ] || rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

statuses="queued planning implementing testing reviewing delivering completed failed cancelled"
active="queued planning implementing testing reviewing delivering"
# pagination.total of GET /api/v1/features?status=$1
count() {
  curl -sf -H "Authorization: Bearer $key" \
    "http://127.0.0.1:$port/api/v1/features?status=$1&limit=1" |
    grep -o '"total":[0-9]*' | cut -d: -f2
}
report_statuses() {
  local line="" n
  for s in $statuses; do
    n=$(count "$s")
    [ "$n" = 0 ] || line+=" $s=$n"
  done
  echo "features by status:${line:- none}"
}
active_count() {
  local total=0
  for s in $active; do total=$((total + $(count "$s"))); done
  echo $total
}
# Mappings and virtual size also count the stacks of threads that ended but were never joined.
proc_figures() {
  echo "server: RSS $(($(ps -o rss= -p "$pid") / 1024)) MB, virtual $(($(ps -o vsz= -p "$pid") / 1048576)) GB," \
    "$(ps -o nlwp= -p "$pid" | tr -d ' ') threads, $(wc -l <"/proc/$pid/maps") memory mappings"
}

for level in $levels; do
  c=${level%%:*}
  t=${level##*:}
  dir=$(mktemp -d)
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  AF_LOG=warn AF_PORT=$port AF_DATA_DIR=$dir AF_API_RATE_LIMIT_PER_MINUTE=10000000 \
    "$bin" serve >"$dir/out" 2>&1 &
  pid=$!
  for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$port/health/live" >/dev/null && break
    kill -0 "$pid" 2>/dev/null || { cat "$dir/out" >&2; exit 1; }
    sleep 0.1
  done
  key=$(cat "$dir/admin.key")

  echo "== POST /api/v1/features, wrk -t$t -c$c -d$duration (server: default 2 threads, replay provider,${AF_LIMITS_FEATURE_TIMEOUT:+ feature_timeout $AF_LIMITS_FEATURE_TIMEOUT s,}" \
    "load average $(cut -d' ' -f1-3 /proc/loadavg))"
  # --timeout 10s: wrk's default of 2 s would drop the slowest answers from the latency figures.
  AF_BENCH_KEY=$key wrk -t"$t" -c"$c" -d"$duration" --timeout 10s --latency -s bench/post_features.lua \
    "http://127.0.0.1:$port"
  echo "-- right after wrk"
  report_statuses
  proc_figures
  start=$(date +%s)
  left=$(active_count)
  while [ "$left" -gt 0 ] && [ $(($(date +%s) - start)) -lt "$drain" ]; do
    sleep 1
    left=$(active_count)
  done
  echo "-- $(($(date +%s) - start)) s later ($left still active)"
  report_statuses
  proc_figures
  echo "database: $(du -sh "$dir" | cut -f1) in $dir"
  start=$(date +%s%N)
  stop_server
  echo "server stop (SIGTERM until exit): $((($(date +%s%N) - start) / 1000000)) ms"
  rm -rf "$dir"
  dir=
done
