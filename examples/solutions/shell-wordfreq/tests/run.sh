#!/usr/bin/env bash
# Checks bin/wordfreq; prints one line per check and exits 1 if any failed.
set -u
cd "$(dirname "$0")/.."
fails=0

check() {  # check NAME EXPECTED ACTUAL
  if [[ "$2" == "$3" ]]; then
    echo "ok   $1"
  else
    printf 'FAIL %s\nexpected:\n%s\ngot:\n%s\n' "$1" "$2" "$3"
    fails=$((fails + 1))
  fi
}

check "counts case-insensitively, ties A-Z" $'4 the\n2 end\n1 and' \
  "$(bash bin/wordfreq -n 3 tests/sample.txt)"
check "default top 10" $'4 the\n2 end\n1 and\n1 cat\n1 hat' "$(bash bin/wordfreq tests/sample.txt)"
check "sums across files" $'8 the\n4 end' "$(bash bin/wordfreq -n 2 tests/sample.txt tests/sample.txt)"
check "reads stdin" $'2 b\n1 a' "$(printf 'b a B' | bash bin/wordfreq)"
check "empty input prints nothing" "" "$(bash bin/wordfreq </dev/null)"
bash bin/wordfreq -n 0 tests/sample.txt 2>/dev/null
check "-n 0 exits 2" 2 "$?"
bash bin/wordfreq tests/no-such-file.txt 2>/dev/null
check "missing file exits 1" 1 "$?"

if ((fails > 0)); then
  echo "$fails check(s) failed"
  exit 1
fi
echo "all wordfreq checks passed"
