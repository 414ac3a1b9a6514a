#!/usr/bin/env bash
# The minimal feature (a plan with one task that writes one file, gate `true`,
# four model calls) on agent-factory (af_feature_load) and on LangGraph.js
# (bench/langgraph/feature_graph.mjs, the same scripted fake model over HTTP),
# with an instant model (N = 1) and with a 50 ms model for each N in FEATURES;
# prints each run and then one side-by-side Markdown table.
# Usage: bench/feature_load.sh [BUILD_DIR]; environment: FEATURES (default
# "1,50,500"), LATENCY_MS (default 50), TIMEOUT_S (per batch, default 900),
# ALONE_REPEATS (default 5). Exit status 1 when a feature did not complete.
set -uo pipefail
build=${1:-build}
features=${FEATURES:-1,50,500}
latency=${LATENCY_MS:-50}
timeout_s=${TIMEOUT_S:-900}
repeats=${ALONE_REPEATS:-5}
cd "$(dirname "$0")/.."
load=$(cd "$build" && pwd)/bench/af_feature_load
[ -x "$load" ] || { echo "$load not built: cmake --build $build --target af_feature_load" >&2; exit 1; }
command -v node >/dev/null || { echo "node not installed (scripts/setup installs it)" >&2; exit 1; }

# LangGraph.js exactly as bench/langgraph/package-lock.json pins it.
lg=bench/langgraph
if [[ ! -f $lg/node_modules/.package-lock.json || $lg/package-lock.json -nt $lg/node_modules/.package-lock.json ]]; then
  echo "== npm ci in $lg"
  (cd "$lg" && npm ci --no-audit --no-fund --loglevel=error) || exit 1
fi

out=$(mktemp)
fake_pid=
cleanup() {
  [ -z "$fake_pid" ] || { kill "$fake_pid" 2>/dev/null; wait "$fake_pid" 2>/dev/null; }
  rm -f "$out" "$out.fake"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
status=0

echo "== machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -r), $(date -u '+%F %H:%M UTC')," \
  "load average $(cut -d' ' -f1-3 /proc/loadavg)"
run() {  # runs "$@", shows its output, keeps its RESULT lines
  "$@" | tee -a "$out"
  local rc=${PIPESTATUS[0]}
  [ "$rc" = 0 ] || { status=1; echo "!! exit status $rc: $*"; }
}
langgraph() {  # latency features
  "$load" --fake-only --latency-ms "$1" >"$out.fake" &
  fake_pid=$!
  local url=
  for _ in $(seq 100); do
    url=$(awk '/^FAKE_URL/ {print $2}' "$out.fake")
    [ -n "$url" ] && break
    sleep 0.05
  done
  [ -n "$url" ] || { echo "!! the fake model did not start" >&2; status=1; return; }
  run node "$lg/feature_graph.mjs" --fake-url "$url" --latency-ms "$1" --features "$2" --alone-repeats "$repeats"
  kill "$fake_pid"
  wait "$fake_pid" 2>/dev/null
  fake_pid=
}

echo "== agent-factory, instant model, one feature alone"
run "$load" --latency-ms 0 --features 1 --alone-repeats "$repeats" --timeout-s "$timeout_s" --show-events
echo "== LangGraph.js, instant model, one feature alone"
langgraph 0 1
echo "== agent-factory, ${latency} ms model, N = $features"
run "$load" --latency-ms "$latency" --features "$features" --alone-repeats "$repeats" --timeout-s "$timeout_s"
echo "== LangGraph.js, ${latency} ms model, N = $features"
langgraph "$latency" "$features"

# The table: one row per (latency, N), agent-factory beside LangGraph.js.
echo
echo "== minimal feature: agent-factory vs LangGraph.js (load average now $(cut -d' ' -f1-3 /proc/loadavg))"
python3 - "$out" <<'EOF'
import sys
rows = {}
for line in open(sys.argv[1]):
    if not line.startswith("RESULT impl="):
        continue
    kv = dict(p.split("=", 1) for p in line.split()[1:])
    rows.setdefault((int(kv["latency_ms"]), int(kv["n"])), {})[kv["impl"]] = kv
def cells(kv, children):
    if kv is None:
        return ["not run"] * 6
    flag = "" if kv["ok"] == "1" else " !!"
    cpu = kv["cpu_ms"] + (f" ({kv['children_cpu_ms']})" if children else "")
    return [kv["completed"] + flag, kv["wall_s"], kv["efficiency"], cpu,
            f"{kv['p50_ms']} / {kv['p99_ms']}", kv["peak_rss_mb"]]
print("| model | N | AF done | AF wall s | AF eff. | AF server CPU ms/feature (children) "
      "| AF created→delivered p50/p99 ms | AF peak RSS MB | LG done | LG wall s | LG eff. "
      "| LG CPU ms/feature | LG p50/p99 ms | LG peak RSS MB |")
print("|" + "---|" * 14)
for (lat, n) in sorted(rows):
    r = rows[(lat, n)]
    print("| " + " | ".join([f"{lat} ms", str(n)] + cells(r.get("agent-factory"), True)
                            + cells(r.get("langgraph"), False)) + " |")
EOF
exit $status
