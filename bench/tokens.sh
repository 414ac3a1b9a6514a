#!/usr/bin/env bash
# Tokens per feature: runs the three example PRPs on the replay provider (a
# fresh data directory each) and compares the input tokens the agents sent
# with the naive baseline of resending each conversation whole, uncondensed,
# on every turn. Both figures come from the same requests: every llm.call
# event carries the measured size of what was sent (input_tokens, estimated
# from the request by the replay provider) and of the same request before the
# optimizer condensed it (uncondensed_tokens). Goal: sent <= 0.5x baseline.
# Usage: bench/tokens.sh [BUILD_DIR]
set -euo pipefail
build=${1:-build}
cd "$(dirname "$0")/.."
bin=$(cd "$build" && pwd)/agent-factory
root=$(pwd)
echo "== machine: $(nproc) cores, $(uname -r), $(date -u '+%F %H:%M UTC'); command: bench/tokens.sh $build"
printf '%-22s %6s %9s %9s %9s %7s %s\n' feature calls sent_in baseline output ratio status
for prp in examples/prp/*.md; do
  d=$(mktemp -d)
  status=$(cd "$d" && AF_LOG=warn AF_DATA_DIR="$d/data" "$bin" run "$root/$prp" --json 2>/dev/null |
    python3 -c 'import json,sys; print(json.loads(sys.stdin.read().strip().splitlines()[-1]).get("status","?"))' ||
    echo "error")
  python3 - "$d/data/agent-factory.db" "$(basename "$prp" .md)" "$status" <<'PY'
import json, sqlite3, sys
db, name, status = sys.argv[1:4]
calls = sent = base = out = 0
for (data,) in sqlite3.connect(db).execute("SELECT data FROM events WHERE type='llm.call'"):
    e = json.loads(data)
    calls += 1
    sent += e.get("input_tokens", 0)
    base += e.get("uncondensed_tokens", 0) or e.get("input_tokens", 0)
    out += e.get("output_tokens", 0)
ratio = sent / base if base else 0
print(f"{name:<22} {calls:>6} {sent:>9} {base:>9} {out:>9} {ratio:>6.2f}x {status}")
PY
  rm -rf "$d"
done
