#!/usr/bin/env bash
# The scaled-out backends beside the single-machine ones, on this machine, in
# one run: starts its own PostgreSQL (initdb in a temp dir, as the `postgres`
# user when run as root, fsync and synchronous_commit on: the defaults) and
# redis-server (appendonly yes, appendfsync everysec, as docs/DEPLOYMENT.md
# advises) on free loopback ports, and stops them at the end.
#  1. build/bench/af_scale_bench: event appends through the Store from 1 and 4
#     threads (SQLite file vs PostgreSQL) and bus jobs sent, received and acked
#     (in-process vs Redis).
#  2. build/bench/af_feature_load: the minimal feature at N at once (50 ms
#     model) on (a) serve with SQLite + the in-process bus, (b) serve with
#     PostgreSQL + Redis, (c) serve --no-agents + WORKERS worker processes on
#     PostgreSQL + Redis. The database and Redis servers' CPU is reported beside.
# Every measurement runs REPEATS times, the configurations interleaved; then
# one Markdown table of each.
# Usage: bench/scale.sh [BUILD_DIR]; environment: FEATURES (default "1,50"),
# LATENCY_MS (50), WORKERS (2), REPEATS (2), SECONDS_EACH (5, per store/bus
# figure), ALONE_REPEATS (3), TIMEOUT_S (900), BINARY (agent-factory to
# run; default BUILD_DIR/agent-factory), PARTS ("store,features": either or
# both). Exit status 1 when a feature
# did not complete or a server did not start.
set -uo pipefail
build=${1:-build}
features=${FEATURES:-1,50}
latency=${LATENCY_MS:-50}
workers=${WORKERS:-2}
repeats=${REPEATS:-2}
seconds_each=${SECONDS_EACH:-5}
alone_repeats=${ALONE_REPEATS:-3}
timeout_s=${TIMEOUT_S:-900}
parts=${PARTS:-store,features}
cd "$(dirname "$0")/.."
bin=$(cd "$build" && pwd)/bench
for b in af_scale_bench af_feature_load; do
  [ -x "$bin/$b" ] || { echo "$bin/$b not built: cmake --build $build --target $b" >&2; exit 1; }
done
pg_bin=${PG_BINDIR:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)}
[ -x "$pg_bin/initdb" ] || { echo "PostgreSQL not installed (scripts/setup installs it)" >&2; exit 1; }
command -v redis-server >/dev/null || { echo "redis-server not installed (scripts/setup)" >&2; exit 1; }

dir=$(mktemp -d /tmp/af-scale.XXXXXX)
out="$dir/results"
as=()  # initdb and postgres refuse root: run them as `postgres`
if [ "$(id -u)" = 0 ]; then
  as=(runuser -u postgres --)
  chmod 711 "$dir"  # postgres must reach its directory inside
  mkdir -p "$dir/pg" && chown postgres: "$dir/pg"
fi
redis_pid=
pg_started=
cleanup() {
  [ -z "$redis_pid" ] || { kill "$redis_pid" 2>/dev/null; wait "$redis_pid" 2>/dev/null; }
  [ -z "$pg_started" ] || "${as[@]}" "$pg_bin/pg_ctl" -D "$dir/pg/data" -m fast -w stop >/dev/null 2>&1
  rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
load() { cut -d' ' -f1-3 /proc/loadavg; }

mkdir -p "$dir/pg" "$dir/redis"
pg_port=$(free_port)
if ! LC_ALL=C "${as[@]}" "$pg_bin/initdb" -D "$dir/pg/data" -U postgres -A trust -E UTF8 \
    --locale=C >"$dir/initdb.log" 2>&1; then
  cat "$dir/initdb.log" >&2; exit 1
fi
if ! "${as[@]}" "$pg_bin/pg_ctl" -D "$dir/pg/data" -l "$dir/pg/server.log" -w -t 60 \
    -o "-p $pg_port -h 127.0.0.1 -k $dir/pg -c max_connections=300" start >/dev/null; then
  cat "$dir/pg/server.log" >&2; exit 1
fi
pg_started=1
pg_pid=$(head -1 "$dir/pg/data/postmaster.pid")
redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$dir/redis" --save "" \
  --appendonly yes --appendfsync everysec --daemonize no >"$dir/redis.log" 2>&1 &
redis_pid=$!
for _ in $(seq 100); do redis-cli -p "$redis_port" ping 2>/dev/null | grep -q PONG && break; sleep 0.05; done
redis-cli -p "$redis_port" ping | grep -q PONG || { cat "$dir/redis.log" >&2; exit 1; }
pg_url="postgresql://postgres@127.0.0.1:$pg_port/postgres"
redis_url="redis://127.0.0.1:$redis_port"
status=0

echo "== machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -r), $(date -u '+%F %H:%M UTC')," \
  "load average $(load)"
echo "== PostgreSQL $("$pg_bin/postgres" --version | awk '{print $3}') on port $pg_port (pid $pg_pid)," \
  "redis-server $(redis-server --version | awk '{print $3}' | cut -d= -f2) on port $redis_port (pid $redis_pid)"
tag() {  # runs "$@", shows its output, keeps its RESULT lines tagged with $1=config
  local label=$1; shift
  "$@" | while IFS= read -r line; do
    printf '%s\n' "$line"
    [[ $line != RESULT\ * ]] || printf 'RESULT config=%s %s\n' "$label" "${line#RESULT }" >>"$out"
  done
  local rc=${PIPESTATUS[0]}
  [ "$rc" = 0 ] || { status=1; echo "!! exit status $rc: $*"; }
}

[[ ,$parts, == *,store,* ]] && for r in $(seq "$repeats"); do
  echo "== store and bus, round $r of $repeats (load average $(load))"
  tag round$r "$bin/af_scale_bench" --database-url "$pg_url" --redis-url "$redis_url" \
    --seconds "$seconds_each" 2>&1
done

common=(--latency-ms "$latency" --features "$features" --alone-repeats "$alone_repeats"
        --timeout-s "$timeout_s")
[ -z "${BINARY:-}" ] || common+=(--binary "$BINARY")
backends=(--database-url "$pg_url" --redis-url "$redis_url" --watch-pid "$pg_pid" --watch-pid "$redis_pid")
[[ ,$parts, == *,features,* ]] && for r in $(seq "$repeats"); do
  echo "== features, round $r of $repeats: (a) SQLite + in-process bus (load average $(load))"
  tag "a-sqlite-inproc" "$bin/af_feature_load" "${common[@]}" 2>&1
  echo "== features, round $r: (b) PostgreSQL + Redis, agents in serve (load average $(load))"
  tag "b-pg-redis" "$bin/af_feature_load" "${common[@]}" "${backends[@]}" 2>&1
  echo "== features, round $r: (c) PostgreSQL + Redis, serve --no-agents + $workers workers (load average $(load))"
  tag "c-pg-redis-${workers}workers" "$bin/af_feature_load" "${common[@]}" "${backends[@]}" \
    --workers "$workers" 2>&1
done

echo
echo "== tables (load average now $(load))"
python3 - "$out" <<'EOF'
import re, sys
rows = []
for line in open(sys.argv[1]):
    kv = dict(re.findall(r'(\w+)=("[^"]*"|\S+)', line))
    rows.append({k: v.strip('"') for k, v in kv.items()})
print("| store | threads | run | events/s | append p50 ms | p99 ms | max ms | load (1 min) |")
print("|---|---|---|---|---|---|---|---|")
for r in rows:
    if r.get("what") == "append":
        print(f"| {r['backend']} | {r['threads']} | {r['config']} | {r['events_per_s']} | "
              f"{r['p50_ms']} | {r['p99_ms']} | {r['max_ms']} | {r['load'].split()[0]} |")
print()
print("| bus | consumers | run | jobs/s (send+receive+ack) | one at a time p50 / p99 ms | load (1 min) |")
print("|---|---|---|---|---|---|")
trips = {(r["backend"], r["config"], r["consumers"]): r
         for r in rows if r.get("what") == "bus_round_trip"}
for r in rows:
    if r.get("what") == "bus":
        t = trips.get((r["backend"], r["config"], r["consumers"]))
        rt = f"{t['p50_ms']} / {t['p99_ms']}" if t else ""
        print(f"| {r['backend']} | {r['consumers']} | {r['config']} | {r['msgs_per_s']} | {rt} | "
              f"{r['load'].split()[0]} |")
print()
print("| setup | N | done | wall s | features/s | server CPU ms/feature (children) "
      "| PG+Redis CPU ms/feature | created→delivered p50/p99 ms | peak RSS MB | load (1 min) |")
print("|---|---|---|---|---|---|---|---|---|---|")
for r in rows:
    if r.get("impl") != "agent-factory":
        continue
    n, wall = int(r["n"]), float(r["wall_s"])
    flag = "" if r["ok"] == "1" else " !!"
    backend = r["backend_cpu_ms"] if r["config"] != "a-sqlite-inproc" else "-"
    print(f"| {r['config']} | {n} | {r['completed']}{flag} | {wall:.3f} | {n / wall:.2f} | "
          f"{r['cpu_ms']} ({r['children_cpu_ms']}) | {backend} | {r['p50_ms']} / {r['p99_ms']} | "
          f"{r['peak_rss_mb']} | {r['load']} |")
EOF
exit $status
