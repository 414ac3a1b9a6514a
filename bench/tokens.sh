#!/usr/bin/env bash
# Tokens per feature: runs the three example PRPs on the replay provider (a
# fresh data directory each) and compares the input tokens the agents sent
# with the naive baseline of resending each conversation whole, uncondensed,
# on every turn. Both figures come from the same requests: every llm.call
# event carries the measured size of what was sent (input_tokens, estimated
# from the request by the replay provider) and of the same request before the
# optimizer condensed it (uncondensed_tokens). Goal: sent <= 0.5x baseline.
# "cached" prices the same requests as Anthropic's prompt cache would with
# the client's breakpoints (the last one on the request's last message): each
# turn reads the previous turn's whole request at 0.1x and writes what it adds
# at 1.25x; a conversation's first request is all written. In input-token
# equivalents. It assumes the previous request is a prefix of the next, which
# holds until condensing rewrites an older message (the examples never do).
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
last = {}  # (role, task): the size of the conversation's previous request
for (task, data) in sqlite3.connect(db).execute(
        "SELECT task_id, data FROM events WHERE type='llm.call' ORDER BY seq"):
    e = json.loads(data)
    n = e.get("input_tokens", 0)
    calls += 1
    sent += n
    base += e.get("uncondensed_tokens", 0) or n
    out += e.get("output_tokens", 0)
    # A request smaller than the previous one of the same role and task
    # starts a new conversation (a review round, a fix task).
    key = (e.get("role", ""), task)
    p = last.get(key, 0)
    if p == 0 or n < p:
        cached += 1.25 * n
    else:
        cached += 0.1 * p + 1.25 * (n - p)
    last[key] = n
ratio = sent / base if base else 0
print(f"{name:<22} {calls:>6} {sent:>9} {base:>9} {out:>9} {ratio:>6.2f}x {cached:>9.0f} {cached / base if base else 0:>6.2f}x {status}")
PY
  rm -rf "$d"
done
