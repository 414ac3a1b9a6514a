#!/usr/bin/env bash
# The Debian package, as a user gets it: its control data and contents, then
# the program extracted from it (dpkg -x into a scratch root, as if installed)
# runs `--version` and an example PRP offline from a scratch directory, with
# the source tree hidden when bubblewrap can hide it: everything it needs at
# run time must be inside the binary.
# Usage: package_test.sh <build dir> <source dir>
set -euo pipefail
build=$1
src=$2

fail() {
  echo "FAIL: $*" >&2
  exit 1
}

debs=("$build"/agent-factory_*.deb)
[[ ${#debs[@]} -eq 1 && -f ${debs[0]} ]] ||
  fail "expected one $build/agent-factory_*.deb, found: ${debs[*]} (run: make package)"
deb=${debs[0]}
echo "package: $deb"

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

# Control data: the name, and the dependencies it runs with.
[[ $(dpkg-deb -f "$deb" Package) == agent-factory ]] || fail "package name"
depends=$(dpkg-deb -f "$deb" Depends)
echo "Depends: $depends"
for d in git bubblewrap adduser libc6 libcurl4 libsqlite3-0 libssl3; do
  grep -Eq "(^|, )$d( |,|$)" <<<"$depends" || fail "Depends lacks $d"
done
dpkg-deb -I "$deb" postinst | grep -q "adduser --system" || fail "postinst creates no user"

# Contents.
dpkg-deb -c "$deb" | awk '{print $6}' >"$scratch/contents"
for f in ./usr/bin/agent-factory ./usr/share/man/man1/agent-factory.1.gz \
  ./usr/share/bash-completion/completions/agent-factory \
  ./usr/lib/systemd/system/agent-factory.service \
  ./usr/share/doc/agent-factory/README.md ./usr/share/doc/agent-factory/docs/ARCHITECTURE.md; do
  grep -qx "$f" "$scratch/contents" || fail "$f is not in the package"
done

root=$scratch/root
dpkg -x "$deb" "$root"
bin=$root/usr/bin/agent-factory

# The unit runs the installed binary as its own user, state under /var/lib.
unit=$root/usr/lib/systemd/system/agent-factory.service
grep -qx "ExecStart=/usr/bin/agent-factory serve" "$unit" || fail "unit ExecStart"
grep -qx "User=agent-factory" "$unit" || fail "unit User"
grep -qx "StateDirectory=agent-factory" "$unit" || fail "unit StateDirectory"
grep -qx "Environment=AF_DATA_DIR=/var/lib/agent-factory" "$unit" || fail "unit AF_DATA_DIR"

# The man page documents every command; the completion completes them.
man=$(gzip -dc "$root/usr/share/man/man1/agent-factory.1.gz")
for c in "agent-factory run" "agent-factory serve" "agent-factory feature submit"; do
  grep -q "^\.SS \"$c\"" <<<"$man" || fail "man page lacks $c"
done
complete_words() {
  bash -c 'source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _agent_factory
           echo "${COMPREPLY[*]}"' _ "$root/usr/share/bash-completion/completions/agent-factory" "$@"
}
[[ $(complete_words agent-factory con) == config ]] || fail "completion of 'con'"
[[ $(complete_words agent-factory feature s) == "submit status" ]] ||
  fail "completion of 'feature s': $(complete_words agent-factory feature s)"
[[ $(complete_words agent-factory --data-dir x run --pr) == --project ]] ||
  fail "completion of 'run --pr'"

# The program, from the scratch root. It does not even know where its source
# tree was (debug info is stripped, and no run-time path points there).
if grep -aqF "$(realpath "$src")/" "$bin"; then
  fail "the packaged binary names the source tree $(realpath "$src")"
fi
version=$("$bin" --version)
[[ $version == "agent-factory $(dpkg-deb -f "$deb" Version)" ]] || fail "--version said: $version"

work=$scratch/work
mkdir -p "$work" "$scratch/home"
cp "$src/examples/prp/python-slugify.md" "$work/"
# A clean environment: no provider or key from the caller, so the recorded
# (replay) provider answers, from the recordings inside the binary. AF_LOG=info
# logs where the skills came from.
run=(env -i PATH=/usr/bin:/bin HOME="$scratch/home" AF_DATA_DIR="$work/data" AF_LOG=info
  "$bin" run python-slugify.md)
if bwrap --dev-bind / / --tmpfs "$src" -- true 2>/dev/null; then
  echo "source tree $src hidden from the run"
  hide=(--tmpfs "$src")
  [[ $(realpath "$build") == "$(realpath "$src")"/* ]] || hide+=(--tmpfs "$build")
  run=(bwrap --dev-bind / / "${hide[@]}" -- "${run[@]}")
else
  echo "note: bubblewrap cannot hide the source tree here; running with it visible"
fi
cd "$work"
if ! "${run[@]}" >"$scratch/run.out" 2>&1; then
  cat "$scratch/run.out" >&2
  fail "run python-slugify.md failed"
fi
tail -5 "$scratch/run.out"
grep -q "completed" "$scratch/run.out" || fail "the feature did not complete"
# The skills came from inside the binary (the source tree's skills/ is hidden).
grep -Eq "[1-9][0-9]* skills from the binary" "$work/data/logs/agent-factory.log" ||
  fail "no skills loaded from the binary: $(grep -i skills "$work/data/logs/agent-factory.log")"
echo "PASS"
