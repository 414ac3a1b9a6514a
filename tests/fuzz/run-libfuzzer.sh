#!/usr/bin/env bash
# Runs every libFuzzer target built by `make fuzz` for N seconds each, starting
# from the seed corpus; new interesting inputs go to BUILD/fuzz-corpus/<target>
# (never into the source tree). A crash leaves crash-* files in BUILD/ and
# fails the run.
set -euo pipefail
build=$(cd "${1:?usage: run-libfuzzer.sh BUILD_DIR SECONDS}" && pwd)
seconds=${2:-60}
src="$(cd "$(dirname "$0")/../.." && pwd)"
status=0
for bin in "$build"/tests/fuzz_*; do
  t=${bin##*/fuzz_}
  case $t in
    prp) seeds=$src/examples/prp ;;
    replay) seeds=$src/examples/replay ;;
    *) seeds=$src/tests/fuzz/corpus/$t ;;
  esac
  mkdir -p "$build/fuzz-corpus/$t"
  echo "fuzz: $t for ${seconds}s"
  if ! (cd "$build" && "$bin" -max_total_time="$seconds" -print_final_stats=1 \
          "fuzz-corpus/$t" "$seeds" 2>"fuzz-$t.log"); then
    echo "fuzz: $t FAILED; see $build/fuzz-$t.log and the crash-* file in $build" >&2
    tail -30 "$build/fuzz-$t.log" >&2
    status=1
  else
    grep -E "^stat::number_of_executed_units|^stat::new_units_added" "$build/fuzz-$t.log" | tr '\n' ' '
    echo
  fi
done
exit $status
