#!/usr/bin/env bash
# Tokens per feature: runs the three example PRPs on the replay provider (a
# fresh data directory each) and compares the input tokens the agents sent
# with the naive baseline of resending each conversation whole, uncondensed,
# on every turn. Both figures come from the same requests: every llm.call
# event carries the measured size of what was sent (input_tokens, estimated
# from the request by the replay provider) and of the same request before the
# optimizer condensed it (uncondensed_tokens). Goal: sent <= 0.5x baseline.
# "cached" prices the same requests as Anthropic's prompt cache would (each
# conversation's first request written at 1.25x, read back at 0.1x later),
# in input-token equivalents.
# Usage: bench/tokens.sh [BUILD_DIR]
set -euo pipefail
build=${1:-build}
cd "$(dirname "$0")/.."
bin=$(cd "$build" && pwd)/agent-factory
root=$(pwd)
echo "== machine: $(nproc) cores, $(uname -r), $(date -u '+%F %H:%M UTC'); command: bench/tokens.sh $build"
printf '%-22s %6s %9s %9s %9s %7s %9s %7s %s\n' feature calls sent_in baseline output ratio cached c_ratio status
for prp in examples/prp/*.md; do
  d=$(mktemp -d)
  status=$(cd "$d" && AF_LOG=warn AF_DATA_DIR="$d/data" "$bin" run "$root/$prp" --json 2>/dev/null |
    python3 -c 'import json,sys; print(json.load(sys.stdin).get("status","?"))' ||
    echo "error")
  python3 - "$d/data/agent-factory.db" "$(basename "$prp" .md)" "$status" <<'PY'
import json, sqlite3, sys
db, name, status = sys.argv[1:4]
calls = sent = base = out = 0
cached = 0.0
prefix = {}  # (role, task): the conversation's first request = its cacheable prefix
for (task, data) in sqlite3.connect(db).execute(
        "SELECT task_id, data FROM events WHERE type='llm.call' ORDER BY seq"):
    e = json.loads(data)
    n = e.get("input_tokens", 0)
    calls += 1
    sent += n
    base += e.get("uncondensed_tokens", 0) or n
    out += e.get("output_tokens", 0)
    # With Anthropic prompt caching: the first call writes the prefix (system,
    # tools, first message) at 1.25x, later calls read it at 0.1x.
    key = (e.get("role", ""), task)
    if key not in prefix:
        prefix[key] = n
        cached += 1.25 * n
    else:
        p = min(prefix[key], n)
        cached += (n - p) + 0.1 * p
ratio = sent / base if base else 0
print(f"{name:<22} {calls:>6} {sent:>9} {base:>9} {out:>9} {ratio:>6.2f}x {cached:>9.0f} {cached / base if base else 0:>6.2f}x {status}")
PY
  rm -rf "$d"
done
