#!/usr/bin/env bash
# GET /health and /health/live of `agent-factory serve` against nginx serving a
# static 200-byte file, in the same run on the same machine: wrk -t1 -c64 for
# DURATION (default 10s) on each, one after another, ROUNDS times (default 3)
# so that a burst of other load on the machine does not decide a ratio alone;
# prints the median requests/s of each and the ratios.
# Goals: /health >= 0.7x nginx, /health/live >= 0.9x.
# Usage: bench/health_vs_nginx.sh [BUILD_DIR]; environment: DURATION, ROUNDS, NGINX (default
# /usr/sbin/nginx), NGINX_WORKERS (default auto).
#
# nginx gets a temp config on a free loopback port with Debian's default
# `worker_processes auto` (one per core; NGINX_WORKERS overrides it), access
# log off, the file served from a temp root; agent-factory runs its default
# two HTTP threads.
set -euo pipefail
build=${1:-build}
duration=${DURATION:-10s}
nginx=${NGINX:-/usr/sbin/nginx}
workers=${NGINX_WORKERS:-auto}
rounds=${ROUNDS:-3}
cd "$(dirname "$0")/.."
bin=$(cd "$build" && pwd)/agent-factory
for tool in wrk curl python3 "$nginx"; do
  command -v "$tool" >/dev/null || { echo "$tool not installed (scripts/setup installs it)" >&2; exit 1; }
done

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
dir=$(mktemp -d)
af_pid=
cleanup() {
  [ -z "$af_pid" ] || { kill "$af_pid" 2>/dev/null || true; wait "$af_pid" 2>/dev/null || true; }
  [ ! -f "$dir/nginx.pid" ] || kill "$(cat "$dir/nginx.pid")" 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# nginx on a free port, serving 200 bytes.
mkdir -p "$dir/www" "$dir/nginx-tmp"
head -c 200 /dev/zero | tr '\0' 'x' >"$dir/www/200b.txt"
# nginx started by root runs its workers as nobody: they must be able to read the file.
chmod 755 "$dir" "$dir/www"
chmod 644 "$dir/www/200b.txt"
nginx_port=$(free_port)
cat >"$dir/nginx.conf" <<EOF
worker_processes $workers;
daemon on;
pid $dir/nginx.pid;
error_log $dir/nginx-error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $dir/nginx-tmp;
  proxy_temp_path $dir/nginx-tmp;
  fastcgi_temp_path $dir/nginx-tmp;
  uwsgi_temp_path $dir/nginx-tmp;
  scgi_temp_path $dir/nginx-tmp;
  server {
    listen 127.0.0.1:$nginx_port;
    root $dir/www;
  }
}
EOF
"$nginx" -c "$dir/nginx.conf" -p "$dir" -e "$dir/nginx-error.log"

af_port=$(free_port)
mkdir -p "$dir/af"
(cd "$dir/af" && AF_LOG=warn AF_PORT=$af_port AF_DATA_DIR="$dir/af" exec "$bin" serve >"$dir/af/out" 2>&1) &
af_pid=$!
for _ in $(seq 100); do
  curl -sf "http://127.0.0.1:$af_port/health/live" >/dev/null &&
    curl -sf "http://127.0.0.1:$nginx_port/200b.txt" >/dev/null && break
  kill -0 "$af_pid" 2>/dev/null || { cat "$dir/af/out" >&2; exit 1; }
  sleep 0.1
done
[ "$(curl -sf "http://127.0.0.1:$nginx_port/200b.txt" | wc -c)" = 200 ] ||
  { echo "nginx does not serve the 200-byte file" >&2; cat "$dir/nginx-error.log" >&2; exit 1; }

# Runs wrk on $2, prints its main figures and appends its requests/s to the array named $3.
run_wrk() {
  local out
  out=$(wrk -t1 -c64 -d"$duration" --latency "$2")
  echo "-- $1: $2"
  echo "$out" | grep -E 'Latency  |Requests/sec|Socket errors|Non-2xx|50%|99%'
  local -n into=$3
  into+=("$(echo "$out" | awk '/Requests\/sec/ {print $2}')")
}
echo "== /health vs nginx: $rounds rounds of wrk -t1 -c64 -d$duration on each, interleaved (agent-factory:" \
  "default 2 HTTP threads; nginx $("$nginx" -v 2>&1 | sed 's|.*/||') from Debian: worker_processes $workers;" \
  "load average $(cut -d' ' -f1-3 /proc/loadavg))"
nginx_rps=() health_rps=() live_rps=()
for round in $(seq "$rounds"); do
  echo "- round $round"
  run_wrk nginx "http://127.0.0.1:$nginx_port/200b.txt" nginx_rps
  run_wrk /health "http://127.0.0.1:$af_port/health" health_rps
  run_wrk /health/live "http://127.0.0.1:$af_port/health/live" live_rps
done
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }
ratio() { python3 -c "print(f'{$1 / $2:.2f}')"; }
n=$(median "${nginx_rps[@]}")
h=$(median "${health_rps[@]}")
l=$(median "${live_rps[@]}")
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-14s %14s %8s %6s   %s\n' target "requests/s*" ratio goal "each round"
printf '%-14s %14s %8s %6s   %s\n' nginx "$n" 1.00 - "${nginx_rps[*]}"
printf '%-14s %14s %8s %6s   %s\n' /health "$h" "$(ratio "$h" "$n")" ">=0.7" "${health_rps[*]}"
printf '%-14s %14s %8s %6s   %s\n' /health/live "$l" "$(ratio "$l" "$n")" ">=0.9" "${live_rps[*]}"
echo "(* the median of the rounds)"
echo "RESULT health nginx_rps=$n health_rps=$h live_rps=$l health_ratio=$(ratio "$h" "$n")" \
  "live_ratio=$(ratio "$l" "$n")"
